package node

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/nat"
)

// connStateTTL is how long a walk of the conntrack table serves requests:
// status, top and scrapes read the cache, so the table (up to millions of
// entries) is walked at most this often however often they ask.
const connStateTTL = 5 * time.Second

// connState is members' share of the conntrack table: tracked connections
// per member address (a cached walk of the table) and the fair-state
// rules' drops per address (the ruleset's drop sets, cheap to read).
type connState struct {
	mu     sync.Mutex
	at     time.Time
	counts map[netip.Addr]int
	drops  map[netip.Addr]nat.MemberDrops
	total  int // entries from members
}

// connView returns the cached per-address counts and drops, walking the
// table again when the cache is older than connStateTTL. Errors leave the
// figures empty: the view is for operators, never for decisions.
func (n *Node) connView() (counts map[netip.Addr]int, drops map[netip.Addr]nat.MemberDrops, total int) {
	cs := &n.conns
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if now := n.now(); cs.at.IsZero() || now.Sub(cs.at) >= connStateTTL {
		cs.at = now
		var err error
		if cs.counts, err = n.countCT(n.config().Tunnel.Prefixes()); err != nil {
			n.log.Debug("count member conntrack entries", "err", err)
		}
		cs.total = 0
		for _, c := range cs.counts {
			cs.total += c
		}
		if n.nat == nil {
			cs.drops = nil
		} else if cs.drops, err = n.nat.ConnDrops(); err != nil {
			n.log.Debug("read connection drops", "err", err)
		}
	}
	return cs.counts, cs.drops, cs.total
}

// memberConns are one member's tracked connections and fair-state drops,
// over its addresses.
func memberConns(m members.Member, counts map[netip.Addr]int, drops map[netip.Addr]nat.MemberDrops) (conns int, quota, rate uint64) {
	for _, a := range m.Addrs() {
		conns += counts[a]
		quota += drops[a].Quota
		rate += drops[a].Rate
	}
	return conns, quota, rate
}

// conntrackStatus is the status API's view of the table: its fill, the
// quota in force, and the members dropped at their quota or rate.
func (n *Node) conntrackStatus() *control.ConntrackStatus {
	counts, drops, total := n.connView()
	n.mu.Lock()
	quota := n.natApplied.Limits.Quota
	n.mu.Unlock()
	s := &control.ConntrackStatus{Members: total, Quota: quota}
	// Only dropped addresses are in drops (few), so look their members up
	// rather than walk every member (20,000 copied per status request).
	seen := map[keys.Key]bool{}
	for a := range drops {
		m, ok := n.reg.ByAddr(a)
		if !ok || seen[m.PublicKey] {
			continue
		}
		seen[m.PublicKey] = true
		if c, q, r := memberConns(m, counts, drops); q > 0 || r > 0 {
			s.AtLimit = append(s.AtLimit, control.MemberConns{Label: m.Label, Conns: c, QuotaDrops: q, RateDrops: r})
		}
	}
	slices.SortFunc(s.AtLimit, func(a, b control.MemberConns) int { // most dropped first
		if d := cmp.Compare(b.QuotaDrops+b.RateDrops, a.QuotaDrops+a.RateDrops); d != 0 {
			return d
		}
		return cmp.Compare(a.Label, b.Label)
	})
	return s
}
