package portforward

import (
	"errors"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests run on loopback: 127.0.0.1 is member "alice", 127.0.0.4 member
// "bob", every other source is foreign.

var (
	lo      = netip.MustParseAddr("127.0.0.1")
	loBob   = netip.MustParseAddr("127.0.0.4")
	foreign = netip.MustParseAddr("127.0.0.2")
	wan     = netip.MustParseAddr("203.0.113.1")
	inner   = netip.MustParseAddr("10.99.0.2") // alice's inner address in table tests
	innerB  = netip.MustParseAddr("10.99.0.3") // bob's
)

func identify(src netip.Addr) (string, bool) {
	switch src {
	case lo:
		return "alice", true
	case loBob:
		return "bob", true
	}
	return "", false
}

// epoch0 is the fake clock's start.
var epoch0 = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

// fakeClock is an injected clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: epoch0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeInstaller records every Apply and fails while fail is set.
type fakeInstaller struct {
	mu    sync.Mutex
	calls int
	last  []Mapping // last successfully applied set
	fail  error
}

var _ Installer = (*fakeInstaller)(nil)

func (f *fakeInstaller) Apply(all []Mapping) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		return f.fail
	}
	f.last = slices.Clone(all)
	return nil
}

func (f *fakeInstaller) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *fakeInstaller) state() (calls int, last []Mapping) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, slices.Clone(f.last)
}

// memStore is a Store in memory.
type memStore struct {
	mu      sync.Mutex
	saved   []Mapping
	saves   int
	loadErr error
	saveErr error
}

var _ Store = (*memStore)(nil)

func (s *memStore) Load() ([]Mapping, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.saved), s.loadErr
}

func (s *memStore) Save(all []Mapping) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saveErr != nil {
		return s.saveErr
	}
	s.saves++
	s.saved = slices.Clone(all)
	return nil
}

func (s *memStore) setSaveErr(err error) {
	s.mu.Lock()
	s.saveErr = err
	s.mu.Unlock()
}

func (s *memStore) state() (saves int, saved []Mapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saves, slices.Clone(s.saved)
}

var errBoom = errors.New("boom")

// fixture is a table with fakes around it.
type fixture struct {
	t     *Table
	clock *fakeClock
	inst  *fakeInstaller
	store *memStore
}

// testOptions: ports 40000–40009, 4 mappings per member, 1 h at most, a
// creation rate that never limits unless a test lowers it.
func testOptions() TableOptions {
	return TableOptions{
		FirstPort:    40000,
		LastPort:     40009,
		MaxPerMember: 4,
		MaxLifetime:  time.Hour,
		CreateRate:   1e9,
		CreateBurst:  1 << 20,
	}
}

func newFixture(tb testing.TB, opts TableOptions) *fixture {
	tb.Helper()
	f := &fixture{clock: newClock(), inst: &fakeInstaller{}, store: &memStore{}}
	opts.Now = f.clock.Now
	t, err := NewTable(opts, f.inst, f.store)
	if err != nil {
		tb.Fatal(err)
	}
	f.t = t
	return f
}

// mapOf is a request of alice (inner) unless member says otherwise.
type req struct {
	member    string
	proto     Proto
	port      uint16 // internal
	suggested uint16
	lifetime  uint32
}

func (f *fixture) do(r req) (ext uint16, granted uint32, res ResultCode) {
	addr := inner
	if r.member == "" {
		r.member = "alice"
	}
	if r.member != "alice" {
		addr = innerB
	}
	if r.proto == 0 {
		r.proto = TCP
	}
	ext, granted, res, _ = f.t.request(r.member, r.proto, netip.AddrPortFrom(addr, r.port), r.suggested, r.lifetime)
	return ext, granted, res
}

// mustMap creates a mapping and returns its external port.
func (f *fixture) mustMap(tb testing.TB, r req) uint16 {
	tb.Helper()
	if r.lifetime == 0 {
		r.lifetime = 600
	}
	ext, _, res := f.do(r)
	if res != ResultSuccess {
		tb.Fatalf("request %+v: %v", r, res)
	}
	return ext
}

// sameMappings compares mapping lists, times with Equal.
func sameMappings(a, b []Mapping) bool {
	return slices.EqualFunc(a, b, func(x, y Mapping) bool {
		return x.Member == y.Member && x.Proto == y.Proto && x.Internal == y.Internal &&
			x.External == y.External && x.Expires.Equal(y.Expires)
	})
}

// waitFor polls cond until it holds or 5 s pass (across goroutines that
// the test cannot join, e.g. the server's ticker).
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// checkNoGoroutines fails if a goroutine still runs code of the package's
// non-test files (it polls: goroutines finish after Close returns).
func checkNoGoroutines(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		leaked := ""
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, line := range strings.Split(g, "\n") {
				line = strings.TrimSpace(line)
				if strings.Contains(line, "/portforward/") && strings.Contains(line, ".go:") && !strings.Contains(line, "_test.go:") {
					leaked = g
				}
			}
		}
		if leaked == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("goroutine leaked:\n%s", leaked)
		}
		<-time.After(time.Millisecond) // poll, bounded by the deadline
	}
}
