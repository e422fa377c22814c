package members_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"exitd/members"
	"exitd/members/storetest"
)

// TestBoltContract runs the store contract against the embedded store.
func TestBoltContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		path := filepath.Join(t.TempDir(), "members.db")
		return storetest.Backend{Open: func(t *testing.T, opts members.Options) (*members.Registry, error) {
			return members.Open(path, opts)
		}}
	})
}

// TestMemContract runs the contract against the in-memory shared store,
// the reference model of a cluster's store.
func TestMemContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		s := storetest.NewMemStore()
		return storetest.Backend{Shared: true, Open: func(t *testing.T, opts members.Options) (*members.Registry, error) {
			return members.OpenStore(s.Open(), opts)
		}}
	})
}

// TestFollowResyncsAfterCompaction: history lost while a registry did not
// follow is made up by a full read, reported as the differences.
func TestFollowResyncsAfterCompaction(t *testing.T) {
	s := storetest.NewMemStore()
	c := storetest.NewClock()
	open := func() *members.Registry {
		r, err := members.OpenStore(s.Open(), storetest.Options(c, "10.99.0.0/24", t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	ra, rb := open(), open()
	ms, err := rb.AddBatch([]members.AddRequest{{Label: "keep"}, {Label: "gone"}, {Label: "moved"}})
	if err != nil {
		t.Fatal(err)
	}
	f := storetest.Follow(t, ra)
	storetest.Eventually(t, time.Second, "a has b's members", func() bool { return ra.Len() == 3 })
	f.Stop()
	// Removed, quarantine over, its address given to another member;
	// and a label moved to a new key and slot.
	if _, err := rb.RemoveBatch([]string{"gone", "moved"}); err != nil {
		t.Fatal(err)
	}
	c.Add(2 * time.Hour)
	if _, err := rb.Add(members.AddRequest{Label: "heir", IPv4: ms[1].IPv4}); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Add(members.AddRequest{Label: "moved"}); err != nil {
		t.Fatal(err)
	}
	s.Compact()
	f = storetest.Follow(t, ra)
	storetest.Eventually(t, time.Second, "a resynced", func() bool { return len(f.Events()) == 4 })
	var removed, added []string
	for _, ev := range f.Events() {
		switch {
		case ev.Removed():
			removed = append(removed, ev.Before.Label)
		case ev.Added():
			added = append(added, ev.After.Label)
			if ev.After.Label == "heir" && !ev.After.ReusedAddress {
				t.Errorf("heir's address had an owner: %+v", ev.After)
			}
		default:
			t.Errorf("update %+v", ev)
		}
	}
	if len(removed) != 2 || len(added) != 2 {
		t.Fatalf("removed %v, added %v", removed, added)
	}
	if got, err := ra.Get("moved"); err != nil || got.PublicKey == ms[2].PublicKey {
		t.Fatalf("moved: %+v %v", got, err)
	}
	if ra.Len() != 3 || rb.Len() != 3 {
		t.Fatalf("a has %d members", ra.Len())
	}
}

// TestStoreDown: an unreachable store refuses changes and keeps serving
// reads; Follow waits it out.
func TestStoreDown(t *testing.T) {
	s := storetest.NewMemStore()
	c := storetest.NewClock()
	ra, err := members.OpenStore(s.Open(), storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := members.OpenStore(s.Open(), storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	f := storetest.Follow(t, rb)
	if _, err := ra.Add(members.AddRequest{Label: "a"}); err != nil {
		t.Fatal(err)
	}
	s.SetDown(true)
	if _, err := ra.Add(members.AddRequest{Label: "b"}); !errors.Is(err, members.ErrStoreUnavailable) {
		t.Fatalf("add while down: %v", err)
	}
	if _, err := ra.Get("a"); err != nil {
		t.Fatalf("read while down: %v", err)
	}
	s.SetDown(false)
	if _, err := ra.Add(members.AddRequest{Label: "b"}); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, time.Second, "b follows", func() bool { return rb.Len() == 2 })
	if evs := f.Events(); len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
}
