package nat

// Fair state: per-member connection quotas and new-connection rate limits.
//
// The scheduler shares bandwidth; these rules share the conntrack table.
// Every new flow from the TUN passes, per family:
//
//	ct state new update @rate4 { ip saddr limit rate over R/second burst B packets }
//	    update @rate_drops4 { ip saddr counter } counter name "conn_rate_drop" drop
//	ct state new ip saddr @quota_members4_0 add @quota4_0 { ip saddr ct count over N0 }
//	    update @quota_drops4 { ip saddr counter } counter name "conn_quota_drop" drop
//	...one rule per distinct override quota...
//	ct state new ip saddr != @quota_over4 add @quota4 { ip saddr ct count over N }
//	    update @quota_drops4 { ip saddr counter } counter name "conn_quota_drop" drop
//
// The quota sets hold one connlimit per member address: the kernel counts
// the member's tracked connections and forgets the element when it has
// none. The drop sets get an element (with a counter) only for members
// that were dropped, so reading them is cheap at 20,000 members. The
// dynamic sets start empty whenever the table is replaced (start, reload,
// restoration): the kernel then counts a member's new connections only.

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"exitd/bounds"
)

// Named counters of the fair-state rules (always present, 0 when off).
const (
	CounterConnQuotaDrop = "conn_quota_drop"
	CounterConnRateDrop  = "conn_rate_drop"
)

// Names of the fair-state sets; 4 or 6 is appended.
const (
	setQuota      = "quota"         // connlimit per member, default quota
	setQuotaOver  = "quota_over"    // addresses with an override
	setQuotaGroup = "quota_members" // + family + "_" + group: one override's members
	setQuotaDrops = "quota_drops"   // counter per member dropped at quota
	setRate       = "rate"          // token bucket per member
	setRateDrops  = "rate_drops"    // counter per member dropped by the rate limit
)

// quotaSetSize bounds each dynamic set: one element per member address
// that has open connections (or was dropped), far above 20,000 members.
const quotaSetSize = 262144

// rateTimeout is how long a member's token bucket outlives its last new
// connection; a new bucket starts full.
const rateTimeout = time.Minute

// MemberQuota is one member's own connection quota.
type MemberQuota struct {
	Addrs []netip.Addr // the member's inner addresses
	Max   int          // tracked connections per family
}

// ConnLimits are the fair-state limits. Zero values are off.
type ConnLimits struct {
	// Quota is each member's limit of tracked connections per family: a
	// new connection beyond it is dropped and counted.
	Quota int
	// Overrides are members with their own quota (applied even when Quota
	// is 0).
	Overrides []MemberQuota
	// Rate and Burst limit each member's new connections per second and
	// family; Burst 0 with a Rate means Burst = Rate.
	Rate, Burst int
}

func (l ConnLimits) on() bool { return l.Quota > 0 || len(l.Overrides) > 0 || l.Rate > 0 }

func (l ConnLimits) validate(member4, member6 netip.Prefix) error {
	if l.Quota != 0 && (l.Quota < bounds.MinConns || l.Quota > bounds.MaxConns) {
		return fmt.Errorf("connection quota %d: want %d-%d or 0 (off)", l.Quota, bounds.MinConns, bounds.MaxConns)
	}
	if l.Rate < 0 || l.Burst < 0 || l.Rate > 1_000_000 || l.Burst > 10_000_000 {
		return fmt.Errorf("new-connection rate %d/s burst %d: want 0-1000000 and 0-10000000", l.Rate, l.Burst)
	}
	seen := map[netip.Addr]bool{}
	for _, o := range l.Overrides {
		if o.Max < bounds.MinConns || o.Max > bounds.MaxConns {
			return fmt.Errorf("connection quota %d of %v: want %d-%d", o.Max, o.Addrs, bounds.MinConns, bounds.MaxConns)
		}
		for _, a := range o.Addrs {
			if !member4.Contains(a) && !member6.Contains(a) {
				return fmt.Errorf("connection quota for %s: not a member address", a)
			}
			if seen[a] {
				return fmt.Errorf("connection quota for %s given twice", a)
			}
			seen[a] = true
		}
	}
	return nil
}

// quotaGroup is one distinct override quota and its members of a family.
type quotaGroup struct {
	max   int
	addrs []netip.Addr
}

// groups returns the override quotas of one family, ascending by quota,
// and every overridden address of that family.
func (l ConnLimits) groups(v4 bool) ([]quotaGroup, []netip.Addr) {
	by := map[int][]netip.Addr{}
	var all []netip.Addr
	for _, o := range l.Overrides {
		for _, a := range o.Addrs {
			if a.Is4() == v4 {
				by[o.Max] = append(by[o.Max], a)
				all = append(all, a)
			}
		}
	}
	var gs []quotaGroup
	for max, as := range by {
		slices.SortFunc(as, netip.Addr.Compare)
		gs = append(gs, quotaGroup{max, as})
	}
	slices.SortFunc(gs, func(a, b quotaGroup) int { return cmp.Compare(a.max, b.max) })
	slices.SortFunc(all, netip.Addr.Compare)
	return gs, all
}

type quotaSets struct {
	quota, over, drops, rate, rateDrops *nftables.Set
	groups                              []*nftables.Set // members, then connlimit, per group
}

// queueQuotaSets adds the fair-state sets of one family to t, numbering
// them from *id on (nft numbers the sets of a batch in creation order).
func queueQuotaSets(c *nftables.Conn, t *nftables.Table, l ConnLimits, v4 bool, id *uint32) (quotaSets, error) {
	fam, key := "6", nftables.TypeIP6Addr
	if v4 {
		fam, key = "4", nftables.TypeIPAddr
	}
	var add []*nftables.Set
	els := map[*nftables.Set][]nftables.SetElement{}
	set := func(name string, dynamic bool, timeout time.Duration, members []netip.Addr) *nftables.Set {
		s := &nftables.Set{Table: t, ID: *id, Name: name, KeyType: key}
		if dynamic {
			s.Dynamic, s.Size, s.HasTimeout, s.Timeout = true, quotaSetSize, timeout > 0, timeout
		}
		*id++
		els[s] = addrElements(members)
		add = append(add, s)
		return s
	}
	var s quotaSets
	if l.Rate > 0 {
		s.rate = set(setRate+fam, true, rateTimeout, nil)
		s.rateDrops = set(setRateDrops+fam, true, 0, nil)
	}
	groups, over := l.groups(v4)
	if l.Quota > 0 || len(groups) > 0 {
		s.drops = set(setQuotaDrops+fam, true, 0, nil)
	}
	for i, g := range groups {
		n := strconv.Itoa(i)
		s.groups = append(s.groups,
			set(setQuotaGroup+fam+"_"+n, false, 0, g.addrs), // quota_members4_0: one override's members
			set(setQuota+fam+"_"+n, true, 0, nil))           // quota4_0: their connlimits
	}
	if l.Quota > 0 {
		s.over = set(setQuotaOver+fam, false, 0, over)
		s.quota = set(setQuota+fam, true, 0, nil)
	}
	for _, set := range add {
		if err := c.AddSet(set, els[set]); err != nil {
			return quotaSets{}, fmt.Errorf("set %s: %w", set.Name, err)
		}
	}
	return s, nil
}

func addrElements(as []netip.Addr) []nftables.SetElement {
	els := make([]nftables.SetElement, len(as))
	for i, a := range as {
		els[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	return els
}

// quotaRules are the fair-state rules of one family for the forward chain
// (from is the TUN match); s are the family's sets from queueQuotaSets.
func quotaRules(from []expr.Any, l ConnLimits, s quotaSets, v4 bool) []rule {
	family := byte(unix.NFPROTO_IPV6)
	if v4 {
		family = unix.NFPROTO_IPV4
	}
	saddr := saddrLoad(v4)
	newFlow := ctState(ctNew)
	var rules []rule
	if s.rate != nil {
		burst := l.Burst
		if burst == 0 {
			burst = l.Rate
		}
		rules = append(rules, rule{from, newFlow, nfproto(family), saddr,
			dynset(s.rate, unix.NFT_DYNSET_OP_UPDATE, &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(l.Rate),
				Over: true, Unit: expr.LimitTimeSecond, Burst: uint32(burst)}),
			saddr, dynset(s.rateDrops, unix.NFT_DYNSET_OP_UPDATE, &expr.Counter{}),
			counted(CounterConnRateDrop), verdict(expr.VerdictDrop)})
	}
	groups, _ := l.groups(v4)
	for i, g := range groups {
		members, counts := s.groups[2*i], s.groups[2*i+1]
		rules = append(rules, rule{from, newFlow, nfproto(family), saddr,
			{&expr.Lookup{SourceRegister: 1, SetName: members.Name, SetID: members.ID}},
			saddr, dynset(counts, unix.NFT_DYNSET_OP_ADD, &expr.Connlimit{Count: uint32(g.max), Flags: connlimitOver}),
			saddr, dynset(s.drops, unix.NFT_DYNSET_OP_UPDATE, &expr.Counter{}),
			counted(CounterConnQuotaDrop), verdict(expr.VerdictDrop)})
	}
	if s.quota != nil {
		rules = append(rules, rule{from, newFlow, nfproto(family), saddr,
			{&expr.Lookup{SourceRegister: 1, SetName: s.over.Name, SetID: s.over.ID, Invert: true}},
			saddr, dynset(s.quota, unix.NFT_DYNSET_OP_ADD, &expr.Connlimit{Count: uint32(l.Quota), Flags: connlimitOver}),
			saddr, dynset(s.drops, unix.NFT_DYNSET_OP_UPDATE, &expr.Counter{}),
			counted(CounterConnQuotaDrop), verdict(expr.VerdictDrop)})
	}
	return rules
}

// connlimitOver is NFT_CONNLIMIT_F_INV: "ct count over N".
const connlimitOver = 1

// ctNew is NF_CT_STATE_NEW_BIT.
const ctNew = 8

func saddrLoad(v4 bool) []expr.Any {
	offset, n := uint32(8), uint32(16)
	if v4 {
		offset, n = 12, 4
	}
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n}}
}

func dynset(s *nftables.Set, op uint32, e expr.Any) []expr.Any {
	return []expr.Any{&expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: op, Exprs: []expr.Any{e}}}
}

// ConnDrops returns, per member address, the new connections the
// fair-state rules dropped (packets counted by the drop sets): only
// addresses that were dropped since the table was last replaced appear.
func (m *Manager) ConnDrops() (map[netip.Addr]MemberDrops, error) {
	m.mu.Lock()
	table := m.table
	m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return nil, fmt.Errorf("nat: read connection drops: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("nat: read connection drops: %w", err)
	}
	out := map[netip.Addr]MemberDrops{}
	for _, s := range sets {
		quota := strings.HasPrefix(s.Name, setQuotaDrops)
		if !quota && !strings.HasPrefix(s.Name, setRateDrops) {
			continue
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("nat: read %s: %w", s.Name, err)
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok || e.Counter == nil {
				continue
			}
			d := out[a]
			if quota {
				d.Quota += e.Counter.Packets
			} else {
				d.Rate += e.Counter.Packets
			}
			out[a] = d
		}
	}
	return out, nil
}

// MemberDrops are one member address's dropped new connections.
type MemberDrops struct {
	Quota uint64 // over its connection quota
	Rate  uint64 // over its new-connection rate
}

// Bounds of the derived quota (AutoQuota).
const (
	AutoQuotaFloor   = 4096
	AutoQuotaCeiling = 65536
)

// AutoQuota derives each member's connection quota from the conntrack
// table size and the number of members: an equal share of three quarters
// of the table (a quarter stays for the node itself and for bursts), at
// least AutoQuotaFloor, so busy members keep working on a crowded node
// (the quota then protects the table from any one member, not from all
// of them together), and at most AutoQuotaCeiling.
func AutoQuota(ctMax, members int) int {
	share := ctMax / 4 * 3 / max(members, 1)
	return min(max(share, AutoQuotaFloor), AutoQuotaCeiling)
}
