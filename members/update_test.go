package members

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestUpdatePolicy(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "m.db")
	r := open(t, path, c, "10.99.0.0/16", "fd00:99::/64")
	a, err := r.Add(AddRequest{Label: "alice", Weight: 2})
	if err != nil {
		t.Fatal(err)
	}
	before, after, err := r.Update("alice", Change{Weight: ptr(5), EgressLimit: ptr(uint64(20e6)), Disabled: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if before.Weight != 2 || before.Disabled || after.Weight != 5 || after.EgressLimit != 20e6 || after.IngressLimit != 0 || !after.Disabled {
		t.Fatalf("before %+v after %+v", before, after)
	}
	if after.IPv4 != a.IPv4 || after.PublicKey != a.PublicKey || after.Created != a.Created || after.PrivateKey == nil {
		t.Fatalf("update changed identity: %+v", after)
	}
	// Only the given fields change.
	_, after, err = r.Update(a.PublicKey.String(), Change{IngressLimit: ptr(uint64(1e6))})
	if err != nil || after.Weight != 5 || after.EgressLimit != 20e6 || after.IngressLimit != 1e6 || !after.Disabled {
		t.Fatalf("%+v %v", after, err)
	}
	r.Close()
	r2 := open(t, path, c, "10.99.0.0/16", "fd00:99::/64")
	got, err := r2.Get("alice")
	if err != nil || got.Weight != 5 || got.EgressLimit != 20e6 || got.IngressLimit != 1e6 || !got.Disabled || got.IPv4 != a.IPv4 {
		t.Fatalf("after reopen %+v %v", got, err)
	}
	// A disabled member keeps its address: nobody else gets it.
	b, err := r2.Add(AddRequest{Label: "bob"})
	if err != nil || b.IPv4 == a.IPv4 {
		t.Fatalf("bob %+v %v", b, err)
	}
}

func TestUpdateErrors(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "m.db"), newClock(), "10.99.0.0/16", "")
	if _, err := r.Add(AddRequest{Label: "alice"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ref  string
		c    Change
		want error
	}{
		{"unknown", "nobody", Change{Weight: ptr(1)}, ErrNotFound},
		{"weight high", "alice", Change{Weight: ptr(MaxWeight + 1)}, ErrInvalidPolicy},
		{"weight negative", "alice", Change{Weight: ptr(-1)}, ErrInvalidPolicy},
		{"egress huge", "alice", Change{EgressLimit: ptr(uint64(MaxLimit + 1))}, ErrInvalidPolicy},
		{"ingress huge", "alice", Change{IngressLimit: ptr(uint64(MaxLimit + 1))}, ErrInvalidPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := r.Update(tc.ref, tc.c); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if m, _ := r.Get("alice"); m.Weight != DefaultWeight || m.EgressLimit != 0 || m.IngressLimit != 0 {
				t.Fatalf("failed update changed the member: %+v", m)
			}
		})
	}
	for _, req := range []AddRequest{{Label: "w", Weight: MaxWeight + 1}, {Label: "e", EgressLimit: MaxLimit + 1}} {
		if _, err := r.Add(req); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("add %+v: %v", req, err)
		}
	}
}

func TestRemoveBatch(t *testing.T) {
	c := newClock()
	r := open(t, filepath.Join(t.TempDir(), "m.db"), c, "10.99.0.0/16", "")
	var reqs []AddRequest
	for i := range 10 {
		reqs = append(reqs, AddRequest{Label: fmt.Sprintf("m%d", i)})
	}
	ms, err := r.AddBatch(reqs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RemoveBatch([]string{"m1", "nobody"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown ref: %v", err)
	}
	if _, err := r.RemoveBatch([]string{"m1", ms[1].PublicKey.String()}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("repeated member: %v", err)
	}
	if r.Len() != 10 {
		t.Fatalf("failed batch removed members: %d left", r.Len())
	}
	got, err := r.RemoveBatch([]string{"m1", "m3", ms[5].PublicKey.String()})
	if err != nil || len(got) != 3 || got[2].Label != "m5" || r.Len() != 7 {
		t.Fatalf("%+v %v (len %d)", got, err, r.Len())
	}
	// Their addresses are quarantined: new members get fresh ones.
	for i := range 3 {
		m, err := r.Add(AddRequest{Label: fmt.Sprintf("n%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		for _, old := range got {
			if m.IPv4 == old.IPv4 {
				t.Fatalf("%s reused %s within the quarantine", m.Label, m.IPv4)
			}
		}
	}
}

func TestRequestedAddresses(t *testing.T) {
	c := newClock()
	r := open(t, filepath.Join(t.TempDir(), "m.db"), c, "10.99.0.0/24", "fd00:99::/64")
	tests := []struct {
		name     string
		req      AddRequest
		want4    string
		want6    string
		wantErr  error
		fallback bool
	}{
		{name: "v4 kept", req: AddRequest{Label: "a", IPv4: addr("10.99.0.50")}, want4: "10.99.0.50", want6: "fd00:99::32"},
		{name: "v6 kept", req: AddRequest{Label: "b", IPv6: addr("fd00:99::40")}, want4: "10.99.0.64", want6: "fd00:99::40"},
		{name: "v4 wins over v6", req: AddRequest{Label: "c", IPv4: addr("10.99.0.70"), IPv6: addr("fd00:99::99")}, want4: "10.99.0.70", want6: "fd00:99::46"},
		{name: "v4 taken, v6 free", req: AddRequest{Label: "d", IPv4: addr("10.99.0.50"), IPv6: addr("fd00:99::10")}, want4: "10.99.0.16", want6: "fd00:99::10"},
		{name: "taken", req: AddRequest{Label: "e", IPv4: addr("10.99.0.50")}, wantErr: ErrDuplicate},
		{name: "outside", req: AddRequest{Label: "e", IPv4: addr("192.168.1.5")}, wantErr: ErrExhausted},
		{name: "v6 outside the v4 range", req: AddRequest{Label: "e", IPv6: addr("fd00:99::1:0")}, wantErr: ErrExhausted},
		{name: "taken with fallback", req: AddRequest{Label: "f", IPv4: addr("10.99.0.50"), Fallback: true}, want4: "10.99.0.2", want6: "fd00:99::2"},
		{name: "outside with fallback", req: AddRequest{Label: "g", IPv4: addr("192.168.1.5"), Fallback: true}, want4: "10.99.0.3", want6: "fd00:99::3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := r.Add(tc.req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || m.IPv4 != addr(tc.want4) || m.IPv6 != addr(tc.want6) {
				t.Fatalf("got %s %s %v, want %s %s", m.IPv4, m.IPv6, err, tc.want4, tc.want6)
			}
		})
	}
	// A quarantined address cannot be requested, even by an import.
	if _, err := r.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(AddRequest{Label: "back", IPv4: addr("10.99.0.50")}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("quarantined address claimed: %v", err)
	}
	c.add(2 * time.Hour)
	if m, err := r.Add(AddRequest{Label: "back", IPv4: addr("10.99.0.50")}); err != nil || m.IPv4 != addr("10.99.0.50") {
		t.Fatalf("after quarantine: %+v %v", m, err)
	}
}

func TestAddBatchKeepsFieldsDurable(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "m.db")
	r := open(t, path, c, "10.99.0.0/16", "fd00:99::/64")
	k := mustKey(t)
	if _, err := r.AddBatch([]AddRequest{
		{Label: "x", PublicKey: &k, Weight: 3, EgressLimit: 5e6, IngressLimit: 1e6, Disabled: true},
		{Label: "y"},
	}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r2 := open(t, path, c, "10.99.0.0/16", "fd00:99::/64")
	x, err := r2.Get("x")
	if err != nil || x.PublicKey != k || x.Weight != 3 || x.EgressLimit != 5e6 || x.IngressLimit != 1e6 || !x.Disabled || x.PrivateKey != nil {
		t.Fatalf("%+v %v", x, err)
	}
	y, err := r2.Get("y")
	if err != nil || y.PrivateKey == nil || y.PrivateKey.Public() != y.PublicKey {
		t.Fatalf("%+v %v", y, err)
	}
}

func BenchmarkAddBatch20k(b *testing.B) {
	for range b.N {
		b.StopTimer()
		r, err := Open(filepath.Join(b.TempDir(), "m.db"), Options{Prefix4: pfx("10.96.0.0/12"), Prefix6: pfx("fd00:99::/64"), Quarantine: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		reqs := make([]AddRequest, 20000)
		for i := range reqs {
			k := mustKey(b)
			reqs[i] = AddRequest{Label: fmt.Sprintf("m%05d", i), PublicKey: &k}
		}
		b.StartTimer()
		for i := 0; i < len(reqs); i += 1000 {
			if _, err := r.AddBatch(reqs[i : i+1000]); err != nil {
				b.Fatal(err)
			}
		}
		if len(r.List()) != 20000 {
			b.Fatal("lost members")
		}
		b.StopTimer()
		r.Close()
	}
}

func TestUpdateMaxConns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	c := newClock()
	r := open(t, path, c, "10.99.0.0/16", "")
	if _, err := r.Add(AddRequest{Label: "alice", MaxConns: 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(AddRequest{Label: "bob", MaxConns: 10}); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("add with quota 10: %v, want ErrInvalidPolicy", err)
	}
	for _, bad := range []int{-1, 63, 1_000_001} {
		if _, _, err := r.Update("alice", Change{MaxConns: ptr(bad)}); !errors.Is(err, ErrInvalidPolicy) {
			t.Fatalf("quota %d: %v, want ErrInvalidPolicy", bad, err)
		}
	}
	before, after, err := r.Update("alice", Change{MaxConns: ptr(50_000)})
	if err != nil || before.MaxConns != 2000 || after.MaxConns != 50_000 {
		t.Fatalf("before %+v after %+v err %v", before, after, err)
	}
	// Other changes keep it; 0 returns to the node's default.
	if _, after, err = r.Update("alice", Change{Weight: ptr(3)}); err != nil || after.MaxConns != 50_000 {
		t.Fatalf("%+v %v", after, err)
	}
	r.Close()
	r2 := open(t, path, c, "10.99.0.0/16", "")
	if got, err := r2.Get("alice"); err != nil || got.MaxConns != 50_000 {
		t.Fatalf("after reopen %+v %v", got, err)
	}
	if _, after, err = r2.Update("alice", Change{MaxConns: ptr(0)}); err != nil || after.MaxConns != 0 {
		t.Fatalf("%+v %v", after, err)
	}
}
