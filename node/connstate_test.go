package node

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"exitd/control"
	"exitd/dataplane"
	"exitd/keys"
	"exitd/members"
	"exitd/metrics"
	"exitd/nat"
)

// ctWalker stands in for the conntrack walk: it counts walks, remembers
// the prefixes asked for and answers with counts or err.
type ctWalker struct {
	mu       sync.Mutex
	walks    int
	prefixes []netip.Prefix
	counts   map[netip.Addr]int
	err      error
}

func (w *ctWalker) count(ps []netip.Prefix) (map[netip.Addr]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.walks++
	w.prefixes = slices.Clone(ps)
	if w.err != nil {
		return nil, w.err
	}
	return cloneMap(w.counts), nil
}

func (w *ctWalker) set(counts map[netip.Addr]int, err error) {
	w.mu.Lock()
	w.counts, w.err = counts, err
	w.mu.Unlock()
}

func (w *ctWalker) n() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.walks
}

// cloneMap copies m, so a cached view can be told from the walker's state.
func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// connNode is quotaNode with a conntrack walker and the clock set.
func connNode(t *testing.T) (*Node, *recNAT, *ctWalker, *manualClock) {
	t.Helper()
	n, f, _, clock := quotaNode(t)
	w := &ctWalker{}
	n.countCT = w.count
	clock.set(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	return n, f, w, clock
}

var (
	a4 = netip.MustParseAddr("10.99.0.2")
	a6 = netip.MustParseAddr("fd00:99::2")
	b4 = netip.MustParseAddr("10.99.0.3")
)

// TestConnViewWalksOncePerTTL: the table is walked on the first request
// and again only once connStateTTL has passed; requests in between, from
// any number of goroutines, get the cached figures.
func TestConnViewWalksOncePerTTL(t *testing.T) {
	n, f, w, clock := connNode(t)
	w.set(map[netip.Addr]int{a4: 3, a6: 4, b4: 10}, nil)
	f.set(func(f *recNAT) { f.drops = map[netip.Addr]nat.MemberDrops{a4: {Quota: 2, Rate: 1}} })

	counts, drops, total := n.connView()
	if counts[a4] != 3 || counts[b4] != 10 || total != 17 || drops[a4].Quota != 2 || drops[a4].Rate != 1 {
		t.Fatalf("first view: %v %v %d", counts, drops, total)
	}
	if w.n() != 1 || f.dropReads != 1 {
		t.Fatalf("%d walks, %d drop reads", w.n(), f.dropReads)
	}
	if want := n.config().Tunnel.Prefixes(); !slices.Equal(w.prefixes, want) {
		t.Fatalf("walked %v, want the member prefixes %v", w.prefixes, want)
	}

	// The table changes; within the TTL the cache answers.
	w.set(map[netip.Addr]int{a4: 50}, nil)
	f.set(func(f *recNAT) { f.drops = nil })
	clock.add(connStateTTL - time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, _, tot := n.connView(); c[a4] != 3 || tot != 17 {
				t.Errorf("cached view %v %d", c, tot)
			}
		}()
	}
	wg.Wait()
	if w.n() != 1 || f.dropReads != 1 {
		t.Fatalf("within the TTL: %d walks, %d drop reads", w.n(), f.dropReads)
	}

	clock.add(time.Millisecond)
	counts, drops, total = n.connView()
	if counts[a4] != 50 || total != 50 || len(drops) != 0 || w.n() != 2 {
		t.Fatalf("after the TTL: %v %v %d (%d walks)", counts, drops, total, w.n())
	}
}

// TestConnViewErrorsLeaveEmptyFigures: a failed walk or drop read gives
// empty figures — never the previous ones — and is cached like a success.
func TestConnViewErrorsLeaveEmptyFigures(t *testing.T) {
	n, f, w, clock := connNode(t)
	w.set(map[netip.Addr]int{a4: 3}, nil)
	f.set(func(f *recNAT) { f.drops = map[netip.Addr]nat.MemberDrops{a4: {Quota: 9}} })
	if _, _, total := n.connView(); total != 3 {
		t.Fatal("no baseline")
	}
	clock.add(connStateTTL)
	w.set(nil, errors.New("injected: netlink dump interrupted"))
	f.set(func(f *recNAT) { f.dropsErr = errors.New("injected: no such set") })
	counts, drops, total := n.connView()
	if len(counts) != 0 || len(drops) != 0 || total != 0 {
		t.Fatalf("after errors: %v %v %d, want empty figures", counts, drops, total)
	}
	clock.add(time.Second)
	n.connView()
	if w.n() != 2 {
		t.Fatalf("a failed walk was retried within the TTL (%d walks)", w.n())
	}
	// The figures come back with the next successful walk.
	clock.add(connStateTTL)
	w.set(map[netip.Addr]int{a4: 8}, nil)
	f.set(func(f *recNAT) { f.dropsErr = nil })
	if counts, drops, total := n.connView(); counts[a4] != 8 || total != 8 || drops[a4].Quota != 9 {
		t.Fatalf("after recovery: %v %v %d", counts, drops, total)
	}

	// Without an nftables table there are no drops to read.
	n2, _, w2, _ := connNode(t)
	n2.nat = nil
	w2.set(map[netip.Addr]int{a4: 1}, nil)
	if counts, drops, total := n2.connView(); drops != nil || counts[a4] != 1 || total != 1 {
		t.Fatalf("no table: %v %v %d", counts, drops, total)
	}
}

func TestMemberConns(t *testing.T) {
	counts := map[netip.Addr]int{a4: 3, a6: 4, b4: 10}
	drops := map[netip.Addr]nat.MemberDrops{a4: {Quota: 2, Rate: 1}, a6: {Quota: 5}, b4: {Rate: 7}}
	for _, tc := range []struct {
		name              string
		m                 members.Member
		conns             int
		quota, rate       uint64
		nilCounts, noDrop bool
	}{
		{name: "both families add up", m: members.Member{IPv4: a4, IPv6: a6}, conns: 7, quota: 7, rate: 1},
		{name: "IPv4 only", m: members.Member{IPv4: a4}, conns: 3, quota: 2, rate: 1},
		{name: "IPv6 only", m: members.Member{IPv6: a6}, conns: 4, quota: 5},
		{name: "rate drops only", m: members.Member{IPv4: b4}, conns: 10, rate: 7},
		{name: "untracked", m: members.Member{IPv4: netip.MustParseAddr("10.99.0.77")}},
		{name: "no figures", m: members.Member{IPv4: a4, IPv6: a6}, nilCounts: true, noDrop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, d := counts, drops
			if tc.nilCounts {
				c = nil
			}
			if tc.noDrop {
				d = nil
			}
			conns, quota, rate := memberConns(tc.m, c, d)
			if conns != tc.conns || quota != tc.quota || rate != tc.rate {
				t.Fatalf("got %d conns, %d/%d drops; want %d, %d/%d", conns, quota, rate, tc.conns, tc.quota, tc.rate)
			}
		})
	}
}

// conntrackFixture adds alice, bob, carol and dave and gives them a
// conntrack table: alice both families and both kinds of drops, bob most
// drops, carol connections only, dave one drop; 7 entries from an
// address no member holds.
func conntrackFixture(t *testing.T, n *Node, f *recNAT, w *ctWalker) []control.Member {
	t.Helper()
	ms := addLabels(t, n, "alice", "bob", "carol", "dave")
	w.set(map[netip.Addr]int{
		ms[0].IPv4: 10, ms[0].IPv6: 5, ms[1].IPv4: 20, ms[2].IPv4: 1,
		netip.MustParseAddr("10.99.200.9"): 7,
	}, nil)
	f.set(func(f *recNAT) {
		f.drops = map[netip.Addr]nat.MemberDrops{
			ms[0].IPv4: {Quota: 3}, ms[0].IPv6: {Rate: 1},
			ms[1].IPv4: {Rate: 10},
			ms[3].IPv6: {Quota: 1},
		}
	})
	return ms
}

// TestConntrackStatus: the status shows the table's member entries, the
// quota in force and the members dropped, most dropped first.
func TestConntrackStatus(t *testing.T) {
	n, f, w, _ := connNode(t)
	conntrackFixture(t, n, f, w)
	s := n.conntrackStatus()
	if s.Members != 43 {
		t.Fatalf("members' entries %d, want 43", s.Members)
	}
	if want := n.natApplied.Limits.Quota; s.Quota != want || want == 0 {
		t.Fatalf("quota %d, want the one in force (%d)", s.Quota, want)
	}
	want := []control.MemberConns{
		{Label: "bob", Conns: 20, RateDrops: 10},
		{Label: "alice", Conns: 15, QuotaDrops: 3, RateDrops: 1},
		{Label: "dave", QuotaDrops: 1},
	}
	if !slices.Equal(s.AtLimit, want) {
		t.Fatalf("at limit %+v, want %+v", s.AtLimit, want)
	}
	// Status carries it; a quota re-applied shows at once.
	nc := n.natApplied
	nc.Limits.Quota = 1234
	n.setNATApplied(nc)
	st, err := backend{n}.Status(context.Background())
	if err != nil || st.Conntrack == nil || st.Conntrack.Quota != 1234 || len(st.Conntrack.AtLimit) != 3 {
		t.Fatalf("%+v %v", st.Conntrack, err)
	}
	// Quota off: 0.
	nc.Limits.Quota = 0
	n.setNATApplied(nc)
	if s := n.conntrackStatus(); s.Quota != 0 {
		t.Fatalf("quota off shows %d", s.Quota)
	}
}

// TestConntrackSource: the metrics see every member with connections or
// drops, and the quota in force; without a table, nothing.
func TestConntrackSource(t *testing.T) {
	n, f, w, _ := connNode(t)
	ms := conntrackFixture(t, n, f, w)
	got, quota := (conntrackSource{n}).MemberConns()
	if quota != n.natApplied.Limits.Quota {
		t.Fatalf("quota %d", quota)
	}
	byLabel := map[string]metrics.MemberConns{}
	for _, c := range got {
		byLabel[c.Label] = c
	}
	if len(got) != 4 || byLabel["carol"].Conns != 1 || byLabel["dave"].QuotaDrops != 1 ||
		byLabel["alice"].Conns != 15 || byLabel["alice"].QuotaDrops != 3 || byLabel["alice"].RateDrops != 1 ||
		byLabel["bob"].PublicKey != ms[1].PublicKey {
		t.Fatalf("%+v", got)
	}
	n.nat = nil
	if got, quota := (conntrackSource{n}).MemberConns(); got != nil || quota != 0 {
		t.Fatalf("without a table: %v %d", got, quota)
	}
}

// TestTopCarriesConns: top adds each member's tracked connections and its
// drops at quota or rate (summed) to the busiest members.
func TestTopCarriesConns(t *testing.T) {
	n, ms, peers, now := observedNode(t)
	f := newRecNAT()
	n.nat = f
	w := &ctWalker{}
	n.countCT = w.count
	w.set(map[netip.Addr]int{ms[0].IPv4: 30, ms[0].IPv6: 2, ms[1].IPv4: 4}, nil)
	f.set(func(f *recNAT) {
		f.drops = map[netip.Addr]nat.MemberDrops{ms[0].IPv4: {Quota: 6, Rate: 2}}
	})
	n.obs.Sample(*now)
	*now = now.Add(2 * time.Second)
	peers[ms[0].PublicKey] = peerStats(ms[0].PublicKey, 2_000_000, *now)
	peers[ms[1].PublicKey] = peerStats(ms[1].PublicKey, 100_000, *now)
	n.obs.Sample(*now)
	top, err := backend{n}.Top(context.Background(), 3, control.SortRate)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]uint64{}
	for _, m := range top.Members {
		got[m.Label] = [2]uint64{uint64(m.Conns), m.ConnDrops}
	}
	if got[ms[0].Label] != [2]uint64{32, 8} || got[ms[1].Label] != [2]uint64{4, 0} || got[ms[2].Label] != [2]uint64{0, 0} {
		t.Fatalf("conns and drops by member: %v", got)
	}
	if w.n() != 1 {
		t.Fatalf("one top walked the table %d times", w.n())
	}
}

// peerStats is a device dump entry with bytes sent to the member.
func peerStats(k keys.Key, tx uint64, hs time.Time) dataplane.PeerStats {
	return dataplane.PeerStats{PublicKey: k, TxBytes: tx, LastHandshake: hs}
}
