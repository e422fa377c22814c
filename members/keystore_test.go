package members

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"exitd/keys"
)

// TestKeptKeysLiveOutsideTheDatabase: a node-generated private key is in
// its own 0600 file, never in members.db; it survives a reopen and goes
// with its member.
func TestKeptKeysLiveOutsideTheDatabase(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "members.db")
	opts := Options{Prefix4: netip.MustParsePrefix("10.99.0.0/24")}
	r, err := Open(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := r.AddBatch([]AddRequest{{Label: "kept"}, {Label: "own", PublicKey: ptrKey(t)}})
	if err != nil {
		t.Fatal(err)
	}
	priv := ms[0].PrivateKey
	if priv == nil || ms[1].PrivateKey != nil {
		t.Fatalf("private keys %v %v", ms[0].PrivateKey, ms[1].PrivateKey)
	}
	st, err := os.Stat(r.keys.path(ms[0].PublicKey))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	if dst, _ := os.Stat(r.keys.dir); dst.Mode().Perm() != 0o700 {
		t.Fatalf("key dir mode %v", dst.Mode())
	}
	r.Close()
	raw, _ := os.ReadFile(db)
	if bytes.Contains(raw, []byte(priv.String())) || bytes.Contains(raw, priv[:]) {
		t.Fatal("members.db holds a private key")
	}
	r, err = Open(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Get("kept")
	if err != nil || got.PrivateKey == nil || *got.PrivateKey != *priv {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if _, err := r.RemoveBatch([]string{"kept"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.keys.path(ms[0].PublicKey)); !os.IsNotExist(err) {
		t.Fatalf("removed member's key file: %v", err)
	}
}

// TestLegacyKeyMigrated: an entry written before the key store (private
// key inside the JSON) is moved out on open.
func TestLegacyKeyMigrated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "members.db")
	priv, _ := keys.Generate(nil)
	m := Member{ID: 2, Label: "old", PublicKey: priv.Public(), PrivateKey: &priv, IPv4: netip.MustParseAddr("10.99.0.2"), Index: 2, Weight: 1}
	v, _ := json.Marshal(&m)
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketMembers)
		if err != nil {
			return err
		}
		return b.Put(m.PublicKey[:], v)
	}); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	r, err := Open(path, Options{Prefix4: netip.MustParsePrefix("10.99.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.Get("old")
	r.Close()
	if got.PrivateKey == nil || *got.PrivateKey != priv {
		t.Fatal("migrated key lost")
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte(priv.String())) {
		t.Fatal("legacy key still in members.db after migration")
	}
}

func ptrKey(t *testing.T) *keys.Key {
	t.Helper()
	k, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := k.Public()
	return &p
}
