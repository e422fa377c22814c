package nat

import (
	"net/netip"
	"testing"
	"time"

	"exitd/internal/testenv"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// udpFlows sends one datagram to each of n ports of dst from one socket in
// ns: n new conntrack entries (the target answers with port unreachable,
// which leaves each entry tracked until its timeout).
func udpFlows(t *testing.T, ns netns.NsHandle, dst netip.Addr, firstPort, n int) {
	t.Helper()
	var fd int
	testenv.Do(t, ns, func() {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
	})
	defer unix.Close(fd)
	for p := firstPort; p < firstPort+n; p++ {
		if err := unix.Sendto(fd, []byte("flow"), 0, &unix.SockaddrInet4{Addr: dst.As4(), Port: p}); err != nil {
			t.Fatalf("send to port %d: %v", p, err)
		}
	}
}

// waitDrops polls ConnDrops until a's drops reach want (or 5 s pass).
func waitDrops(t *testing.T, m *Manager, a netip.Addr, want func(MemberDrops) bool) MemberDrops {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ds, err := m.ConnDrops()
		if err != nil {
			t.Fatal(err)
		}
		if want(ds[a]) || time.Now().After(deadline) {
			return ds[a]
		}
		time.Sleep(20 * time.Millisecond) // polling the kernel's counters, not waiting for time to pass
	}
}

func TestLabConnQuota(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	cfg := l.cfg
	cfg.Limits = ConnLimits{Quota: 64}
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// 200 new flows: the first 64 are tracked, the other 136 dropped.
	udpFlows(t, l.member, labTarget, 20000, 200)
	d := waitDrops(t, l.m, labMember, func(d MemberDrops) bool { return d.Quota >= 136 })
	if d.Quota != 136 || d.Rate != 0 {
		t.Fatalf("drops %+v, want quota 136, rate 0", d)
	}
	if got := counter(t, l.m, CounterConnQuotaDrop); got != 136 {
		t.Errorf("counter %s = %d, want 136", CounterConnQuotaDrop, got)
	}
	// A 65th flow of another protocol is dropped too.
	member := newPinger(t, l.member, netip.Addr{})
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if d := waitDrops(t, l.m, labMember, func(d MemberDrops) bool { return d.Quota >= 137 }); d.Quota != 137 {
		t.Errorf("echo past the quota: drops %+v, want quota 137", d)
	}

	// An override lifts this member's quota above its 64 tracked flows.
	cfg.Limits.Overrides = []MemberQuota{{Addrs: []netip.Addr{labMember}, Max: 1000}}
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if !member.waitReply(labTarget) {
		t.Error("no echo reply under the member's own quota of 1000")
	}
	// Replacing the table starts the drop sets afresh.
	if ds, err := l.m.ConnDrops(); err != nil || ds[labMember] != (MemberDrops{}) {
		t.Errorf("drops after re-apply %+v, %v; want none", ds[labMember], err)
	}
}

func TestLabConnRate(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	cfg := l.cfg
	cfg.Limits = ConnLimits{Rate: 1, Burst: 10}
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	udpFlows(t, l.member, labTarget, 20000, 100)
	// 10 pass at once, then one per second at most.
	allowed := 10 + int(time.Since(start)/time.Second) + 1
	d := waitDrops(t, l.m, labMember, func(d MemberDrops) bool { return d.Rate >= uint64(100-allowed) })
	if d.Rate < uint64(100-allowed) || d.Rate > 90 || d.Quota != 0 {
		t.Fatalf("drops %+v, want rate %d-90, quota 0", d, 100-allowed)
	}
	if got := counter(t, l.m, CounterConnRateDrop); got != d.Rate {
		t.Errorf("counter %s = %d, per-member %d", CounterConnRateDrop, got, d.Rate)
	}
}

// TestLabWatchIgnoresDynamicSets: the packet path fills the fair-state
// rules' dynamic sets (a rate bucket and a connection count per member,
// the drop sets); that is no edit, so Watch's check must not see a
// difference — it re-applied the table (emptying every member's counts
// and buckets) at its next check, and dumped every element each time.
func TestLabWatchIgnoresDynamicSets(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	cfg := l.cfg
	cfg.Limits = ConnLimits{Quota: 64, Rate: 1000, Burst: 1000}
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	udpFlows(t, l.member, labTarget, 20000, 100) // 36 quota drops: every dynamic set gets an element
	waitDrops(t, l.m, labMember, func(d MemberDrops) bool { return d.Quota >= 36 })
	l.m.mu.Lock()
	what, err := l.m.differenceLocked()
	l.m.mu.Unlock()
	if err != nil || what != "" {
		t.Fatalf("check after traffic: %q, %v; want no difference", what, err)
	}
	before := l.m.restorations.Load()
	l.m.check(nil)
	if got := l.m.restorations.Load(); got != before {
		t.Fatalf("check re-applied the table (%d restorations)", got-before)
	}
	if ds, _ := l.m.ConnDrops(); ds[labMember].Quota < 36 {
		t.Fatalf("drops after the check %+v: the member's sets were reset", ds[labMember])
	}
}
