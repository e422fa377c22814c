package metrics

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// fakeClock is an injected clock tests advance by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeSource is a Source over a member slice tests edit between refreshes.
type fakeSource struct {
	mu      sync.Mutex
	members []MemberCounters
	err     error
	calls   int
}

func (f *fakeSource) ForEachMember(fn func(*MemberCounters)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return f.err
	}
	for i := range f.members {
		fn(&f.members[i])
	}
	return nil
}

func (f *fakeSource) set(fn func(ms []MemberCounters) []MemberCounters) {
	f.mu.Lock()
	f.members = fn(f.members)
	f.mu.Unlock()
}

// nMembers returns n members labelled m0..m(n-1) with distinct keys.
func nMembers(n int) []MemberCounters {
	out := make([]MemberCounters, n)
	for i := range out {
		out[i] = MemberCounters{
			ID: uint32(i + 1), Label: fmt.Sprintf("m%d", i),
			PublicKey:  fmt.Sprintf("key%040d=", i),
			AllowedIPs: fmt.Sprintf("10.99.%d.%d/32", i/256, i%256),
		}
	}
	return out
}

type fakeSched struct {
	s  SchedStats
	ok bool
}

func (f fakeSched) SchedStats() (SchedStats, bool) { return f.s, f.ok }

type fakeNAT struct {
	drops    map[string]NATCounter
	present  bool
	err      error
	restored uint64
}

func (f fakeNAT) NATDrops() (map[string]NATCounter, error) { return f.drops, f.err }
func (f fakeNAT) NATPresent() (bool, error)                { return f.present, nil }
func (f fakeNAT) NATRestorations() uint64                  { return f.restored }

type fakeHost struct{ s HostStats }

func (f fakeHost) Read() (HostStats, error) { return f.s, nil }

type fakeKernel struct {
	p  KernelProfile
	ok bool
}

func (f fakeKernel) KernelProfile() (KernelProfile, bool) { return f.p, f.ok }

var errFake = errors.New("device gone")

// testBounds mirror the scheduler's: 32.8 µs doubling, last open.
func testBounds() []time.Duration {
	b := make([]time.Duration, SojournBuckets)
	for i := range b {
		b[i] = time.Duration(int64(1) << (15 + i))
	}
	b[SojournBuckets-1] = time.Duration(1<<63 - 1)
	return b
}
