package members

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/keys"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)} }
func pfx(s string) netip.Prefix      { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr       { return netip.MustParseAddr(s) }
func mustKey(t testing.TB) keys.Key {
	t.Helper()
	k, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func open(t *testing.T, path string, c *clock, p4, p6 string) *Registry {
	t.Helper()
	o := Options{Quarantine: time.Hour, Now: c.now}
	if p4 != "" {
		o.Prefix4 = pfx(p4)
	}
	if p6 != "" {
		o.Prefix6 = pfx(p6)
	}
	r, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestAddAllocatesPairedAddresses(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "m.db"), newClock(), "10.99.0.0/16", "fd00:99::/64")
	a, err := r.Add(AddRequest{Label: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if a.IPv4 != addr("10.99.0.2") || a.IPv6 != addr("fd00:99::2") {
		t.Fatalf("first member got %s %s", a.IPv4, a.IPv6)
	}
	if a.PrivateKey == nil || a.PrivateKey.Public() != a.PublicKey {
		t.Fatal("generated key pair not kept or inconsistent")
	}
	k := mustKey(t)
	b, err := r.Add(AddRequest{Label: "bob", PublicKey: &k})
	if err != nil {
		t.Fatal(err)
	}
	if b.IPv4 != addr("10.99.0.3") || b.IPv6 != addr("fd00:99::3") || b.PrivateKey != nil || b.PublicKey != k {
		t.Fatalf("bob = %+v", b)
	}
	if got := r.List(); len(got) != 2 || got[0].Label != "alice" || got[1].Label != "bob" {
		t.Fatalf("List = %+v", got)
	}
}

func TestAddErrors(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "m.db"), newClock(), "10.99.0.0/16", "")
	k := mustKey(t)
	if _, err := r.Add(AddRequest{Label: "alice", PublicKey: &k}); err != nil {
		t.Fatal(err)
	}
	k2 := mustKey(t)
	var zero keys.Key
	tests := []struct {
		name string
		req  AddRequest
		want error
	}{
		{"empty label", AddRequest{}, ErrInvalidLabel},
		{"label chars", AddRequest{Label: "a b"}, ErrInvalidLabel},
		{"label long", AddRequest{Label: strings.Repeat("x", 65)}, ErrInvalidLabel},
		{"dup label", AddRequest{Label: "alice", PublicKey: &k2}, ErrDuplicate},
		{"dup key", AddRequest{Label: "bob", PublicKey: &k}, ErrDuplicate},
		{"zero key", AddRequest{Label: "bob", PublicKey: &zero}, ErrInvalidKey},
		{"addr outside", AddRequest{Label: "bob", IPv4: addr("10.98.0.5")}, ErrExhausted},
		{"addr taken", AddRequest{Label: "bob", IPv4: addr("10.99.0.2")}, ErrDuplicate},
		{"gateway", AddRequest{Label: "bob", IPv4: addr("10.99.0.1")}, ErrExhausted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.Add(tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if r.Len() != 1 {
				t.Fatalf("failed add changed the registry: %d members", r.Len())
			}
		})
	}
	if _, err := r.Add(AddRequest{Label: "w", Weight: 101}); err == nil {
		t.Fatal("weight 101 accepted")
	}
}

func TestExhaustionAndQuarantine(t *testing.T) {
	c := newClock()
	r := open(t, filepath.Join(t.TempDir(), "m.db"), c, "10.99.0.0/29", "") // slots 2..6
	var ms []Member
	for i := 0; i < 5; i++ {
		m, err := r.Add(AddRequest{Label: "m" + string(rune('a'+i))})
		if err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		ms = append(ms, m)
	}
	if ms[4].IPv4 != addr("10.99.0.6") {
		t.Fatalf("last = %s (broadcast .7 must never be used)", ms[4].IPv4)
	}
	if _, err := r.Add(AddRequest{Label: "full"}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want ErrExhausted, got %v", err)
	}
	if _, err := r.Remove("mc"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(AddRequest{Label: "early"}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("quarantined address handed out: %v", err)
	}
	c.add(59 * time.Minute)
	if _, err := r.Add(AddRequest{Label: "early"}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("quarantined address handed out before expiry: %v", err)
	}
	c.add(2 * time.Minute)
	m, err := r.Add(AddRequest{Label: "late"})
	if err != nil || m.IPv4 != ms[2].IPv4 {
		t.Fatalf("after quarantine: %+v %v", m, err)
	}
}

func TestQuarantineSurvivesRestart(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "m.db")
	r := open(t, path, c, "10.99.0.0/30", "") // slot 2 only
	if _, err := r.Add(AddRequest{Label: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Remove("a"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r2 := open(t, path, c, "10.99.0.0/30", "")
	if _, err := r2.Add(AddRequest{Label: "b"}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("quarantine lost across restart: %v", err)
	}
}

func TestPersistence(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "m.db")
	r := open(t, path, c, "10.99.0.0/16", "fd00:99::/64")
	a, _ := r.Add(AddRequest{Label: "a"})
	b, _ := r.Add(AddRequest{Label: "b", Weight: 3})
	if _, err := r.Remove("a"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r2 := open(t, path, c, "10.99.0.0/16", "fd00:99::/64")
	got, err := r2.Get(b.PublicKey.String())
	if err != nil || got.Label != "b" || got.Weight != 3 || got.IPv6 != b.IPv6 || got.Created != b.Created {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if _, err := r2.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed member back: %v", err)
	}
	if _, err := r2.Get(a.PublicKey.String()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed member back by key: %v", err)
	}
	// Next allocation does not collide with b.
	c2, err := r2.Add(AddRequest{Label: "c"})
	if err != nil || c2.IPv4 == b.IPv4 || c2.IPv4 == a.IPv4 {
		t.Fatalf("c = %+v %v", c2, err)
	}
}

func TestLockedDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	open(t, path, newClock(), "10.99.0.0/16", "")
	_, err := Open(path, Options{Prefix4: pfx("10.99.0.0/16")})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second open: %v", err)
	}
}

func TestAddBatchAllOrNothing(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "m.db"), newClock(), "10.99.0.0/16", "")
	_, err := r.AddBatch([]AddRequest{{Label: "x"}, {Label: "y"}, {Label: "x"}})
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("want duplicate, got %v", err)
	}
	if r.Len() != 0 {
		t.Fatalf("partial batch stored: %d", r.Len())
	}
	ms, err := r.AddBatch([]AddRequest{{Label: "x"}, {Label: "y"}})
	if err != nil || len(ms) != 2 || ms[0].IPv4 != addr("10.99.0.2") {
		t.Fatalf("%+v %v", ms, err)
	}
}

func TestIPv6Only(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "m.db"), newClock(), "", "fd00:99::/112")
	m, err := r.Add(AddRequest{Label: "v6"})
	if err != nil || m.IPv4.IsValid() || m.IPv6 != addr("fd00:99::2") {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestNoPrefixes(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "m.db"), newClock(), "", "")
	if _, err := r.Add(AddRequest{Label: "x"}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
}

func TestConcurrentAdds(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "m.db"), newClock(), "10.99.0.0/16", "")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := r.Add(AddRequest{Label: fmt.Sprintf("c%d", i)})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[netip.Addr]bool{}
	for _, m := range r.List() {
		if seen[m.IPv4] {
			t.Fatalf("address %s allocated twice", m.IPv4)
		}
		seen[m.IPv4] = true
	}
}

func TestPlanIndexOf(t *testing.T) {
	p := newPlan(pfx("10.99.0.0/24"), pfx("fd00:99::/64"))
	tests := []struct {
		a  string
		i  uint32
		ok bool
	}{
		{"10.99.0.2", 2, true}, {"10.99.0.254", 254, true}, {"10.99.0.255", 0, false},
		{"10.99.0.1", 0, false}, {"10.99.1.2", 0, false}, {"fd00:99::10", 16, true},
		{"fd00:99::1:0", 0, false}, {"fd00:98::2", 0, false},
	}
	for _, tc := range tests {
		i, ok := p.indexOf(addr(tc.a))
		if ok != tc.ok || i != tc.i {
			t.Errorf("indexOf(%s) = %d,%v want %d,%v", tc.a, i, ok, tc.i, tc.ok)
		}
	}
}

func TestCheckLabel(t *testing.T) {
	for _, ok := range []string{"a", "alice@example.org", "node-1_b.c"} {
		if err := CheckLabel(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "ä", "x\n", strings.Repeat("y", 65)} {
		if err := CheckLabel(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
