package members

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"exitd/keys"
)

// keyStore keeps the private keys of members added with --keep-key, one
// file each (mode 0600, directory 0700) beside the database, never inside
// it: the registry, its exports and its backups carry no private key, and
// removing a member removes its file.
type keyStore struct{ dir string }

func (s keyStore) path(pub keys.Key) string {
	return filepath.Join(s.dir, hex.EncodeToString(pub[:])+".key")
}

// put writes priv durably (temp file, fsync, rename, directory fsync).
func (s keyStore) put(pub, priv keys.Key) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("members: key store: %w", err)
	}
	f, err := os.CreateTemp(s.dir, ".key-*")
	if err != nil {
		return fmt.Errorf("members: key store: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(priv.String() + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(pub))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("members: key store: %w", err)
	}
	return nil
}

// get reads a member's kept key; ok is false when none is kept.
func (s keyStore) get(pub keys.Key) (priv keys.Key, ok bool, err error) {
	b, err := os.ReadFile(s.path(pub))
	if errors.Is(err, fs.ErrNotExist) {
		return keys.Key{}, false, nil
	}
	if err != nil {
		return keys.Key{}, false, fmt.Errorf("members: key store: %w", err)
	}
	k, err := keys.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return keys.Key{}, false, fmt.Errorf("members: key store %s: %w", s.path(pub), err)
	}
	if k.Public() != pub {
		return keys.Key{}, false, fmt.Errorf("members: key store %s: key does not match its member", s.path(pub))
	}
	return k, true, nil
}

// remove deletes a member's kept key, if any.
func (s keyStore) remove(pub keys.Key) error {
	if err := os.Remove(s.path(pub)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("members: key store: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// encode is a member as stored in the database: without its private key.
func encode(m *Member) ([]byte, error) {
	c := *m
	c.PrivateKey = nil
	return json.Marshal(&c)
}
