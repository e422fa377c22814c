// Package storetest is the contract every members.Store meets, as tests
// of a members.Registry over it: allocation, uniqueness, quarantine,
// batches, durability, and for stores shared by several registries, live
// sync and cluster-wide uniqueness. Run it from a store's tests with a
// factory of fresh stores. It imports only exitd/members and exitd/keys.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"exitd/keys"
	"exitd/members"
)

// Backend is one fresh store for a test.
type Backend struct {
	// Open opens a registry over the store; opened again (after Close,
	// or, when Shared, meanwhile) it sees the same content.
	Open func(t *testing.T, opts members.Options) (*members.Registry, error)
	// Shared: several registries may use the store at once (a cluster).
	Shared bool
}

// Clock is a settable clock for Options.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at a fixed time.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)} }

// Now is the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock on.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Options are registry options for prefix p4 (and fd00:99::/64), an hour
// of quarantine, the clock and a key directory.
func Options(c *Clock, p4, keyDir string) members.Options {
	return members.Options{
		Prefix4: netip.MustParsePrefix(p4), Prefix6: netip.MustParsePrefix("fd00:99::/64"),
		Quarantine: time.Hour, Now: c.Now, KeyDir: keyDir,
	}
}

// MustOpen opens a registry and closes it at the end of the test.
func MustOpen(t *testing.T, b Backend, opts members.Options) *members.Registry {
	t.Helper()
	r, err := b.Open(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Key is a fresh public key.
func Key(t testing.TB) *keys.Key {
	t.Helper()
	k, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := k.Public()
	return &p
}

// Run runs the contract against fresh backends from newBackend.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	const all, private, shared = 0, 1, 2
	tests := []struct {
		name  string
		scope int
		run   func(t *testing.T, b Backend)
	}{
		{"AddAndList", all, testAddAndList},
		{"AddErrorsChangeNothing", all, testAddErrors},
		{"QuarantineKeptAcrossReopen", all, testQuarantine},
		{"BatchAllOrNothing", all, testBatchAllOrNothing},
		{"LargeBatchDurable", all, testLargeBatch},
		{"RemoveAndUpdateDurable", all, testRemoveUpdate},
		{"KeptKeysStayLocal", all, testKeptKeys},
		{"FollowIdleOnPrivateStore", private, testFollowPrivate},
		{"SharedLiveSync", shared, testSharedSync},
		{"SharedUniqueness", shared, testSharedUniqueness},
		{"SharedQuarantine", shared, testSharedQuarantine},
		{"SharedStaleUpdateConflicts", shared, testSharedConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			switch {
			case tc.scope == shared && !b.Shared:
				t.Skip("for stores several registries share")
			case tc.scope == private && b.Shared:
				t.Skip("for stores private to one registry")
			}
			tc.run(t, b)
		})
	}
}

func testAddAndList(t *testing.T, b Backend) {
	r := MustOpen(t, b, Options(NewClock(), "10.99.0.0/16", t.TempDir()))
	a, err := r.Add(members.AddRequest{Label: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if a.IPv4 != netip.MustParseAddr("10.99.0.2") || a.IPv6 != netip.MustParseAddr("fd00:99::2") || a.ReusedAddress {
		t.Fatalf("first member: %+v", a)
	}
	k := Key(t)
	bob, err := r.Add(members.AddRequest{Label: "bob", PublicKey: k, Weight: 3, MaxConns: 5000})
	if err != nil || bob.IPv4 != netip.MustParseAddr("10.99.0.3") || bob.PublicKey != *k || bob.MaxConns != 5000 {
		t.Fatalf("bob: %+v %v", bob, err)
	}
	if l := r.List(); len(l) != 2 || l[0].Label != "alice" || l[1].Label != "bob" || r.Len() != 2 {
		t.Fatalf("List = %+v", l)
	}
	if m, ok := r.ByAddr(bob.IPv6); !ok || m.Label != "bob" {
		t.Fatalf("ByAddr = %+v %v", m, ok)
	}
}

func testAddErrors(t *testing.T, b Backend) {
	r := MustOpen(t, b, Options(NewClock(), "10.99.0.0/16", t.TempDir()))
	k := Key(t)
	if _, err := r.Add(members.AddRequest{Label: "alice", PublicKey: k}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  members.AddRequest
		want error
	}{
		{"label taken", members.AddRequest{Label: "alice"}, members.ErrDuplicate},
		{"key taken", members.AddRequest{Label: "bob", PublicKey: k}, members.ErrDuplicate},
		{"address taken", members.AddRequest{Label: "bob", IPv4: netip.MustParseAddr("10.99.0.2")}, members.ErrDuplicate},
		{"address outside", members.AddRequest{Label: "bob", IPv4: netip.MustParseAddr("10.98.0.2")}, members.ErrExhausted},
		{"bad label", members.AddRequest{Label: "a b"}, members.ErrInvalidLabel},
	} {
		if _, err := r.Add(tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if r.Len() != 1 {
		t.Fatalf("failed adds changed the registry: %d members", r.Len())
	}
	if m, err := r.Add(members.AddRequest{Label: "bob"}); err != nil || m.IPv4 != netip.MustParseAddr("10.99.0.3") {
		t.Fatalf("add after failures: %+v %v", m, err)
	}
}

func testQuarantine(t *testing.T, b Backend) {
	c := NewClock()
	opts := Options(c, "10.99.0.0/29", t.TempDir()) // slots 2..6
	r := MustOpen(t, b, opts)
	for i := range 5 {
		if _, err := r.Add(members.AddRequest{Label: fmt.Sprintf("m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Add(members.AddRequest{Label: "full"}); !errors.Is(err, members.ErrExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
	gone, err := r.Remove("m2")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = MustOpen(t, b, opts)
	if _, err := r.Add(members.AddRequest{Label: "early"}); !errors.Is(err, members.ErrExhausted) {
		t.Fatalf("quarantined address handed out after reopen: %v", err)
	}
	if _, err := r.Add(members.AddRequest{Label: "early", IPv4: gone.IPv4}); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("quarantined address claimed: %v", err)
	}
	c.Add(61 * time.Minute)
	m, err := r.Add(members.AddRequest{Label: "late"})
	if err != nil || m.IPv4 != gone.IPv4 || !m.ReusedAddress {
		t.Fatalf("after the quarantine: %+v %v", m, err)
	}
}

func testBatchAllOrNothing(t *testing.T, b Backend) {
	r := MustOpen(t, b, Options(NewClock(), "10.99.0.0/16", t.TempDir()))
	if _, err := r.Add(members.AddRequest{Label: "taken"}); err != nil {
		t.Fatal(err)
	}
	for _, reqs := range [][]members.AddRequest{
		{{Label: "x"}, {Label: "y"}, {Label: "x"}},
		{{Label: "x"}, {Label: "y"}, {Label: "taken"}},
	} {
		if _, err := r.AddBatch(reqs); !errors.Is(err, members.ErrDuplicate) {
			t.Fatalf("want duplicate, got %v", err)
		}
		if r.Len() != 1 {
			t.Fatalf("partial batch stored: %d members", r.Len())
		}
	}
	ms, err := r.AddBatch([]members.AddRequest{{Label: "x"}, {Label: "y"}})
	if err != nil || len(ms) != 2 || ms[0].IPv4 != netip.MustParseAddr("10.99.0.3") {
		t.Fatalf("%+v %v", ms, err)
	}
	if _, err := r.RemoveBatch([]string{"x", "nobody"}); !errors.Is(err, members.ErrNotFound) {
		t.Fatalf("remove with an unknown ref: %v", err)
	}
	if r.Len() != 3 {
		t.Fatalf("failed removal removed members: %d left", r.Len())
	}
}

// testLargeBatch: a batch larger than one etcd transaction.
func testLargeBatch(t *testing.T, b Backend) {
	opts := Options(NewClock(), "10.99.0.0/16", t.TempDir())
	r := MustOpen(t, b, opts)
	reqs := make([]members.AddRequest, 150)
	for i := range reqs {
		reqs[i] = members.AddRequest{Label: fmt.Sprintf("bulk%03d", i), PublicKey: Key(t), Weight: 1 + i%4}
	}
	ms, err := r.AddBatch(reqs)
	if err != nil || len(ms) != len(reqs) {
		t.Fatalf("%d members, %v", len(ms), err)
	}
	r.Close()
	r = MustOpen(t, b, opts)
	got := r.List()
	if len(got) != len(reqs) {
		t.Fatalf("after reopen: %d members", len(got))
	}
	for i, m := range got {
		if m.Label != reqs[i].Label || m.PublicKey != *reqs[i].PublicKey || m.Weight != reqs[i].Weight || m.IPv4 != ms[i].IPv4 {
			t.Fatalf("member %d after reopen: %+v, added %+v", i, m, ms[i])
		}
	}
}

func testRemoveUpdate(t *testing.T, b Backend) {
	opts := Options(NewClock(), "10.99.0.0/16", t.TempDir())
	r := MustOpen(t, b, opts)
	if _, err := r.AddBatch([]members.AddRequest{{Label: "a"}, {Label: "b"}, {Label: "c"}}); err != nil {
		t.Fatal(err)
	}
	w, caps, quota, off := 7, uint64(20e6), 2000, true
	before, after, err := r.Update("b", members.Change{Weight: &w, EgressLimit: &caps, MaxConns: &quota, Disabled: &off})
	if err != nil || before.Weight != 1 || after.Weight != 7 || after.EgressLimit != 20e6 || after.MaxConns != 2000 || !after.Disabled {
		t.Fatalf("update: %+v %+v %v", before, after, err)
	}
	if _, err := r.RemoveBatch([]string{"a", "c"}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = MustOpen(t, b, opts)
	got := r.List()
	if len(got) != 1 || got[0].Label != "b" || got[0].Weight != 7 || got[0].MaxConns != 2000 || !got[0].Disabled || got[0].EgressLimit != 20e6 {
		t.Fatalf("after reopen: %+v", got)
	}
	m, err := r.Add(members.AddRequest{Label: "d"})
	if err != nil || m.IPv4 == netip.MustParseAddr("10.99.0.2") || m.IPv4 == netip.MustParseAddr("10.99.0.4") {
		t.Fatalf("add after removals reused a quarantined address: %+v %v", m, err)
	}
}

func testKeptKeys(t *testing.T, b Backend) {
	opts := Options(NewClock(), "10.99.0.0/16", t.TempDir())
	r := MustOpen(t, b, opts)
	m, err := r.Add(members.AddRequest{Label: "kept"})
	if err != nil || m.PrivateKey == nil || m.PrivateKey.Public() != m.PublicKey {
		t.Fatalf("%+v %v", m, err)
	}
	r.Close()
	r = MustOpen(t, b, opts)
	got, err := r.Get("kept")
	if err != nil || got.PrivateKey == nil || *got.PrivateKey != *m.PrivateKey {
		t.Fatalf("kept key after reopen: %+v %v", got, err)
	}
}

func testFollowPrivate(t *testing.T, b Backend) {
	r := MustOpen(t, b, Options(NewClock(), "10.99.0.0/16", t.TempDir()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Follow(ctx, func([]members.Event) { t.Error("event on a private store") }) }()
	if _, err := r.Add(members.AddRequest{Label: "own"}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Follower runs Follow on a registry and records its events.
type Follower struct {
	mu     sync.Mutex
	events []members.Event
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Follow starts Follow on r until Stop or the end of the test.
func Follow(t *testing.T, r *members.Registry) *Follower {
	f := &Follower{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		f.done <- r.Follow(ctx, func(evs []members.Event) {
			f.mu.Lock()
			f.events = append(f.events, evs...)
			f.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Errorf("Follow: %v", err)
		}
	})
	return f
}

// Stop ends Follow and returns its error.
func (f *Follower) Stop() error {
	f.once.Do(func() {
		f.cancel()
		f.err = <-f.done
	})
	return f.err
}

// Events returns the events so far.
func (f *Follower) Events() []members.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]members.Event(nil), f.events...)
}

// Eventually polls cond until it holds or d has passed.
func Eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		waitTick()
	}
}

// waitTick waits a millisecond for another goroutine or process to move
// on, with a timer (polling with a deadline, not a sleep to order events).
func waitTick() { <-time.After(time.Millisecond) }

func testSharedSync(t *testing.T, b Backend) {
	c := NewClock()
	ra := MustOpen(t, b, Options(c, "10.99.0.0/16", t.TempDir()))
	rb := MustOpen(t, b, Options(c, "10.99.0.0/16", t.TempDir()))
	fa, fb := Follow(t, ra), Follow(t, rb)
	m, err := ra.Add(members.AddRequest{Label: "alice", PublicKey: Key(t)})
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Second, "b sees alice", func() bool { _, err := rb.Get("alice"); return err == nil })
	w := 9
	if _, _, err := rb.Update("alice", members.Change{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Second, "a sees the new weight", func() bool { got, _ := ra.Get("alice"); return got.Weight == 9 })
	start := time.Now()
	if _, err := ra.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Second, "b sees the removal", func() bool { _, err := rb.Get("alice"); return errors.Is(err, members.ErrNotFound) })
	t.Logf("removal reached the other registry in %v", time.Since(start))
	// Each registry hears of the other's changes once, and of its own never.
	evb := fb.Events()
	if len(evb) != 2 || !evb[0].Added() || evb[0].After.PublicKey != m.PublicKey || !evb[1].Removed() || evb[1].Before.Label != "alice" {
		t.Fatalf("b's events: %+v", evb)
	}
	Eventually(t, time.Second, "a's event", func() bool { return len(fa.Events()) >= 1 })
	eva := fa.Events()
	if len(eva) != 1 || eva[0].Before.Weight != 1 || eva[0].After.Weight != 9 {
		t.Fatalf("a's events: %+v", eva)
	}
	// What one registry added, another one finds by address.
	if _, ok := rb.ByAddr(m.IPv4); ok {
		t.Fatal("removed member found by address")
	}
}

func testSharedUniqueness(t *testing.T, b Backend) {
	c := NewClock()
	ra := MustOpen(t, b, Options(c, "10.99.0.0/16", t.TempDir()))
	rb := MustOpen(t, b, Options(c, "10.99.0.0/16", t.TempDir()))
	// b does not follow: it does not know of a's members and must be
	// stopped by the store, not by its index.
	k := Key(t)
	a1, err := ra.Add(members.AddRequest{Label: "alice", PublicKey: k})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Add(members.AddRequest{Label: "alice"}); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("label taken on a: %v", err)
	}
	if _, err := rb.Add(members.AddRequest{Label: "other", PublicKey: k}); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("key taken on a: %v", err)
	}
	if _, err := rb.Add(members.AddRequest{Label: "other", IPv4: a1.IPv4}); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("address taken on a: %v", err)
	}
	b1, err := rb.Add(members.AddRequest{Label: "bob"})
	if err != nil || b1.IPv4 == a1.IPv4 {
		t.Fatalf("b's add: %+v %v (a has %s)", b1, err, a1.IPv4)
	}
	if rb.Len() != 1 {
		t.Fatalf("b holds %d members", rb.Len())
	}
}

func testSharedQuarantine(t *testing.T, b Backend) {
	c := NewClock()
	ra := MustOpen(t, b, Options(c, "10.99.0.0/30", t.TempDir())) // slot 2 only
	rb := MustOpen(t, b, Options(c, "10.99.0.0/30", t.TempDir()))
	Follow(t, rb)
	if _, err := ra.Add(members.AddRequest{Label: "a"}); err != nil {
		t.Fatal(err)
	}
	// b must have seen a before the removal: a Get that finds nothing
	// proves nothing while the add itself is still on its way.
	Eventually(t, time.Second, "b sees the add", func() bool {
		_, err := rb.Get("a")
		return err == nil
	})
	if _, err := ra.Remove("a"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Second, "b sees the removal", func() bool {
		_, err := rb.Get("a")
		return errors.Is(err, members.ErrNotFound)
	})
	if _, err := rb.Add(members.AddRequest{Label: "b"}); !errors.Is(err, members.ErrExhausted) {
		t.Fatalf("address quarantined on a handed out by b: %v", err)
	}
	c.Add(2 * time.Hour)
	m, err := rb.Add(members.AddRequest{Label: "b"})
	if err != nil || !m.ReusedAddress {
		t.Fatalf("after the quarantine: %+v %v", m, err)
	}
	if _, err := ra.Add(members.AddRequest{Label: "c"}); !errors.Is(err, members.ErrExhausted) {
		t.Fatalf("a handed out b's address: %v", err)
	}
}

func testSharedConflict(t *testing.T, b Backend) {
	c := NewClock()
	ra := MustOpen(t, b, Options(c, "10.99.0.0/16", t.TempDir()))
	if _, err := ra.Add(members.AddRequest{Label: "alice"}); err != nil {
		t.Fatal(err)
	}
	rb := MustOpen(t, b, Options(c, "10.99.0.0/16", t.TempDir()))
	w := 5
	if _, _, err := ra.Update("alice", members.Change{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	// b has not seen the update: its change would overwrite it.
	off := true
	if _, _, err := rb.Update("alice", members.Change{Disabled: &off}); !errors.Is(err, members.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := rb.Remove("alice"); !errors.Is(err, members.ErrConflict) {
		t.Fatalf("stale remove: %v", err)
	}
	Follow(t, rb)
	Eventually(t, time.Second, "b sees the update", func() bool { m, _ := rb.Get("alice"); return m.Weight == 5 })
	if _, after, err := rb.Update("alice", members.Change{Disabled: &off}); err != nil || after.Weight != 5 || !after.Disabled {
		t.Fatalf("update after sync: %+v %v", after, err)
	}
}
