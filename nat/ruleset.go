package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names of the objects in the table. The counters are part of the API:
// Counters returns them by these names and docs/nat.md documents them.
const (
	CounterSpoofDrop           = "spoof_drop"
	CounterLeakDrop            = "leak_drop"
	CounterMemberIsolationDrop = "member_isolation_drop"
	CounterGatewayInputDrop    = "gw_input_drop"
	CounterForwardPolicyDrop   = "fwd_policy_drop"

	setBlocked4 = "blocked4"
	setBlocked6 = "blocked6"
	setAllowed4 = "allowed4"
	setAllowed6 = "allowed6"
)

// counterNames lists the named counters in the order they are created.
func counterNames() []string {
	return []string{CounterSpoofDrop, CounterLeakDrop, CounterMemberIsolationDrop,
		CounterGatewayInputDrop, CounterForwardPolicyDrop, CounterConnQuotaDrop, CounterConnRateDrop}
}

// Set IDs tie a lookup to a set created in the same batch. The library would
// draw them from a package-level counter; fixed values keep the messages
// reproducible.
const (
	setIDBlocked4 = 1
	setIDBlocked6 = 2
	setIDAllowed4 = 3
	setIDAllowed6 = 4
)

// queueRuleset queues the whole replacement transaction on c: AddTable,
// DelTable, AddTable of each table the layout uses (and AddTable, DelTable
// of the other layout's ip and ip6 tables, so nothing of a previous layout
// is left), then counters, sets, chains and rules. The caller Flushes once,
// so the kernel swaps the old tables for the new ones in a single
// transaction and no packet sees a half-built ruleset. cfg must be valid;
// layout is LayoutInet or LayoutSplit.
//
// The expressions are spelled the way nft 1.0.6 encodes the equivalent
// command (see nftCommands in the tests), so `nft list ruleset` prints the
// tables as if nft had made them.
func queueRuleset(c *nftables.Conn, cfg Config, layout Layout) error {
	tables := allTables(cfg.table())
	for i, ref := range tables {
		tbl := ref.table()
		c.AddTable(tbl)
		c.DelTable(tbl)
		if i == 0 || layout == LayoutSplit {
			c.AddTable(tbl)
		}
	}
	t := tables[0].table()

	for _, name := range counterNames() {
		c.AddObj(&nftables.CounterObj{Table: t, Name: name})
	}

	deny := cfg.DenySet()
	for _, set := range []struct {
		name    string
		id      uint32
		v4      bool
		allowed bool
	}{
		{setBlocked4, setIDBlocked4, true, false},
		{setBlocked6, setIDBlocked6, false, false},
		{setAllowed4, setIDAllowed4, true, true},
		{setAllowed6, setIDAllowed6, false, true},
	} {
		key := nftables.TypeIP6Addr
		if set.v4 {
			key = nftables.TypeIPAddr
		}
		rs := deny.ranges(set.v4)
		if set.allowed {
			rs = complement(rs, set.v4)
		}
		s := &nftables.Set{Table: t, ID: set.id, Name: set.name, Interval: true, KeyType: key}
		if err := c.AddSet(s, intervalElements(rs)); err != nil {
			return fmt.Errorf("set %s: %w", set.name, err)
		}
	}

	var qs [2]quotaSets // IPv4, IPv6
	nextID := uint32(setIDAllowed6 + 1)
	for i, v4 := range []bool{true, false} {
		if (v4 && !cfg.Member4.IsValid()) || (!v4 && !cfg.Member6.IsValid()) {
			continue
		}
		var err error
		if qs[i], err = queueQuotaSets(c, t, cfg.Limits, v4, &nextID); err != nil {
			return err
		}
	}

	// Every base chain accepts by policy and matches only exitd's traffic:
	// the forward hook is shared with Docker, libvirt and other VPNs, and
	// a drop policy here would drop their forwarding too. Member traffic
	// still fails closed through explicit drops (see forwardRules).
	accept := nftables.ChainPolicyAccept

	mangle := c.AddChain(&nftables.Chain{Name: "fwd_mangle", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	// Both ways: the member's SYN and the server's SYN-ACK.
	addRule(c, t, mangle, iifname(cfg.Tun), tcpSYN(), clampMSSToRoute())
	addRule(c, t, mangle, oifname(cfg.Tun), tcpSYN(), clampMSSToRoute())

	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, r := range forwardRules(cfg, qs) {
		addRule(c, t, fwd, r...)
	}

	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, r := range inputRules(cfg) {
		addRule(c, t, in, r...)
	}

	if layout == LayoutSplit {
		queueNATChains(c, tables[1].table(), cfg, []byte{unix.NFPROTO_IPV4}, false)
		queueNATChains(c, tables[2].table(), cfg, []byte{unix.NFPROTO_IPV6}, false)
	} else {
		queueNATChains(c, t, cfg, []byte{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6}, true)
	}
	return nil
}

// queueNATChains adds the NAT chains to t with the rules of the given
// families: both in the inet table (inet true: each ip/ip6 match needs its
// nfproto dependency), one in an ip or ip6 table (LayoutSplit).
func queueNATChains(c *nftables.Conn, t *nftables.Table, cfg Config, families []byte, inet bool) {
	accept := nftables.ChainPolicyAccept
	if cfg.CaptureDNS {
		pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
		for _, f := range families {
			for _, r := range captureRules(cfg, f, inet) {
				addRule(c, t, pre, r...)
			}
		}
	}
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	for _, f := range families {
		for _, r := range postroutingRules(cfg, f, inet) {
			addRule(c, t, post, r...)
		}
	}
}

// addRule appends a rule made of the concatenated expression groups.
func addRule(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, groups ...[]expr.Any) {
	var exprs []expr.Any
	for _, g := range groups {
		exprs = append(exprs, g...)
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
}

// rule is one rule as groups of expressions, joined by addRule.
type rule [][]expr.Any

// forwardRules filter what enters or leaves the TUN and nothing else. Each
// direction ends in an explicit, counted drop, so member traffic fails
// closed: from the TUN only new flows to the allow sets (or, without
// isolation, to other members) pass; to the TUN only established and
// related replies (and member-to-member traffic) pass.
func forwardRules(cfg Config, qs [2]quotaSets) []rule {
	from, to := iifname(cfg.Tun), oifname(cfg.Tun)
	rules := []rule{
		{from, ctState(ctEstablished | ctRelated), verdict(expr.VerdictAccept)},
		{to, ctState(ctEstablished | ctRelated), verdict(expr.VerdictAccept)},
		{from, ctState(ctInvalid), verdict(expr.VerdictDrop)},
		{to, ctState(ctInvalid), verdict(expr.VerdictDrop)},
	}
	// Spoof: a source outside the family's member prefix (or any source of a
	// disabled family) never leaves the tunnel.
	rules = append(rules, spoofRule(from, cfg.Member4, unix.NFPROTO_IPV4), spoofRule(from, cfg.Member6, unix.NFPROTO_IPV6))
	if cfg.Isolation {
		rules = append(rules, rule{from, to, counted(CounterMemberIsolationDrop), verdict(expr.VerdictDrop)})
	} else {
		// Members may talk to each other; without this the leak rule
		// (the member prefix is inside 10/8 or fc00::/7) would drop it.
		rules = append(rules, rule{from, to, verdict(expr.VerdictAccept)})
	}
	rules = append(rules,
		rule{from, nfproto(unix.NFPROTO_IPV4), lookupDaddr(setBlocked4, setIDBlocked4, true), counted(CounterLeakDrop), verdict(expr.VerdictDrop)},
		rule{from, nfproto(unix.NFPROTO_IPV6), lookupDaddr(setBlocked6, setIDBlocked6, false), counted(CounterLeakDrop), verdict(expr.VerdictDrop)},
	)
	// Fair state: a member's new flows beyond its rate or quota.
	if cfg.Member4.IsValid() {
		rules = append(rules, quotaRules(from, cfg.Limits, qs[0], true)...)
	}
	if cfg.Member6.IsValid() {
		rules = append(rules, quotaRules(from, cfg.Limits, qs[1], false)...)
	}
	rules = append(rules,
		// The way out, only to the complement of the deny set. The leak
		// rules above count; these make the exit fail closed: a set that
		// is new in a transaction can look empty to lookups while the
		// kernel commits it (seen on 6.18: ~1 in 10 runs of 50 re-applies
		// under a flood let a blocked packet through when this rule was a
		// plain accept). An empty allow set drops, an empty deny set would
		// not.
		rule{from, oifname(cfg.WAN), nfproto(unix.NFPROTO_IPV4), lookupDaddr(setAllowed4, setIDAllowed4, true), verdict(expr.VerdictAccept)},
		rule{from, oifname(cfg.WAN), nfproto(unix.NFPROTO_IPV6), lookupDaddr(setAllowed6, setIDAllowed6, false), verdict(expr.VerdictAccept)},
	)
	if cfg.PortForward {
		// Port forwards: the pf table DNATs them from the WAN to a member.
		rules = append(rules, rule{iifname(cfg.WAN), to, ctStatus(ctStatusDNAT), verdict(expr.VerdictAccept)})
	}
	rules = append(rules,
		// The rest of exitd's traffic: tunnel → other interfaces, new
		// flows towards the tunnel. Counted, then dropped explicitly: the
		// chain's policy is accept so that other forwarding on the host
		// is left alone, and while a replace commits a new chain's rules
		// may not be live yet (the old table still filters then).
		rule{from, counted(CounterForwardPolicyDrop), verdict(expr.VerdictDrop)},
		rule{to, counted(CounterForwardPolicyDrop), verdict(expr.VerdictDrop)},
	)
	return rules
}

func spoofRule(tun []expr.Any, member netip.Prefix, family byte) rule {
	if !member.IsValid() {
		return rule{tun, nfproto(family), counted(CounterSpoofDrop), verdict(expr.VerdictDrop)}
	}
	return rule{tun, nfproto(family), prefixMatch(saddrOffset(member), member, expr.CmpOpNeq),
		counted(CounterSpoofDrop), verdict(expr.VerdictDrop)}
}

func inputRules(cfg Config) []rule {
	tun := iifname(cfg.Tun)
	rules := []rule{{tun, ctState(ctEstablished | ctRelated), verdict(expr.VerdictAccept)}}
	if cfg.Gateway4.IsValid() {
		gw := rule{tun, nfproto(unix.NFPROTO_IPV4), addrMatch(16, cfg.Gateway4)}
		rules = append(rules,
			append(gw[:3:3], l4proto(unix.IPPROTO_UDP), dport(53), verdict(expr.VerdictAccept)),
			append(gw[:3:3], l4proto(unix.IPPROTO_TCP), dport(53), verdict(expr.VerdictAccept)),
			append(gw[:3:3], l4proto(unix.IPPROTO_ICMP), icmpType(8), verdict(expr.VerdictAccept)), // echo-request
		)
		rules = append(rules, serviceRules(gw, cfg)...)
	}
	if cfg.Gateway6.IsValid() {
		gw := rule{tun, nfproto(unix.NFPROTO_IPV6), addrMatch(24, cfg.Gateway6)}
		rules = append(rules,
			append(gw[:3:3], l4proto(unix.IPPROTO_UDP), dport(53), verdict(expr.VerdictAccept)),
			append(gw[:3:3], l4proto(unix.IPPROTO_TCP), dport(53), verdict(expr.VerdictAccept)),
			append(gw[:3:3], l4proto(unix.IPPROTO_ICMPV6), icmpType(128), verdict(expr.VerdictAccept)), // echo-request
		)
		rules = append(rules, serviceRules(gw, cfg)...)
	}
	if cfg.Member6.IsValid() {
		// Neighbour discovery (needed when the member link has a link layer)
		// and packet-too-big (PMTU for the gateway's own services).
		for _, typ := range []byte{2, 135, 136} {
			rules = append(rules, rule{tun, nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6), icmpType(typ), verdict(expr.VerdictAccept)})
		}
	}
	return append(rules, rule{tun, counted(CounterGatewayInputDrop), verdict(expr.VerdictDrop)})
}

// serviceRules accept the extra service ports on one gateway address (gw
// matches the TUN, the family and the address).
func serviceRules(gw rule, cfg Config) []rule {
	var rules []rule
	for _, p := range cfg.ServiceTCP {
		rules = append(rules, append(gw[:3:3], l4proto(unix.IPPROTO_TCP), dport(p), verdict(expr.VerdictAccept)))
	}
	for _, r := range cfg.ServiceUDP {
		rules = append(rules, append(gw[:3:3], l4proto(unix.IPPROTO_UDP), dportRange(r), verdict(expr.VerdictAccept)))
	}
	return rules
}

// captureRules DNAT members' port-53 traffic of one family to anything but
// the gateway to the gateway ("iifname tun ip daddr != gw meta l4proto
// {udp, tcp} th dport 53 dnat ip to gw").
func captureRules(cfg Config, family byte, inet bool) []rule {
	gw, offset := cfg.Gateway4, uint32(16)
	if family == unix.NFPROTO_IPV6 {
		gw, offset = cfg.Gateway6, 24
	}
	if !gw.IsValid() {
		return nil
	}
	tun := iifname(cfg.Tun)
	notGW := prefixMatch(offset, netip.PrefixFrom(gw, gw.BitLen()), expr.CmpOpNeq)
	var rules []rule
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		rules = append(rules, rule{tun, familyDep(family, inet), notGW, l4proto(proto), dport(53), dnat(gw, family)})
	}
	return rules
}

// postroutingRules source-NAT one family's members leaving by the WAN.
func postroutingRules(cfg Config, family byte, inet bool) []rule {
	wan := oifname(cfg.WAN)
	if family == unix.NFPROTO_IPV4 {
		p := cfg.Member4
		if !p.IsValid() {
			return nil
		}
		match := rule{wan, familyDep(family, inet), prefixMatch(12, p, expr.CmpOpEq)}
		if cfg.Mode == SNAT {
			return snatRules(match, cfg.Pool4, cfg.Ports, family)
		}
		return []rule{append(match, masquerade())}
	}
	p := cfg.Member6
	if !p.IsValid() {
		return nil
	}
	match := rule{wan, familyDep(family, inet), prefixMatch(8, p, expr.CmpOpEq)}
	if cfg.Mode == SNAT && cfg.Pool6[0].IsValid() {
		return snatRules(match, cfg.Pool6, cfg.Ports, family)
	}
	return []rule{append(match, masquerade())}
}

// familyDep is the nfproto dependency in an inet table, and nothing in an
// ip or ip6 table (the table's family already is the dependency).
func familyDep(family byte, inet bool) []expr.Any {
	if !inet {
		return nil
	}
	return nfproto(family)
}

// snatRules maps to the pool, persistent. A port range only applies to TCP
// and UDP (nft refuses it without a transport match), so those get their
// own rules ahead of the address-only one that catches ICMP and the rest.
func snatRules(match rule, pool [2]netip.Addr, ports [2]uint16, family byte) []rule {
	n := len(match)
	var rules []rule
	if ports[0] != 0 {
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			rules = append(rules, append(match[:n:n], l4proto(proto), snat(pool, ports, family)))
		}
	}
	return append(rules, append(match[:n:n], snat(pool, [2]uint16{}, family)))
}

// Expression groups, each spelled as nft 1.0.6 spells it.

func iifname(name string) []expr.Any { return metaCmp(expr.MetaKeyIIFNAME, ifnameBytes(name)) }
func oifname(name string) []expr.Any { return metaCmp(expr.MetaKeyOIFNAME, ifnameBytes(name)) }

// nfproto is the dependency nft adds before any ip/ip6 match in an inet
// table; the library does not add it.
func nfproto(family byte) []expr.Any { return metaCmp(expr.MetaKeyNFPROTO, []byte{family}) }
func l4proto(proto byte) []expr.Any  { return metaCmp(expr.MetaKeyL4PROTO, []byte{proto}) }

func metaCmp(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

// ifnameBytes is the interface name NUL-padded to IFNAMSIZ.
func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func saddrOffset(p netip.Prefix) uint32 {
	if p.Addr().Is4() {
		return 12
	}
	return 8
}

// prefixMatch compares the network-header field at offset with p the way nft
// does: a byte-aligned prefix loads only the bytes it covers; any other loads
// the whole address and masks it.
func prefixMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	addr := p.Masked().Addr().AsSlice()
	if p.Bits()%8 == 0 {
		n := uint32(p.Bits() / 8)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
			&expr.Cmp{Op: op, Register: 1, Data: addr[:n]},
		}
	}
	n := uint32(len(addr))
	mask := make([]byte, n)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: op, Register: 1, Data: addr},
	}
}

// addrMatch compares the field at offset with one address.
func addrMatch(offset uint32, a netip.Addr) []expr.Any {
	return prefixMatch(offset, netip.PrefixFrom(a, a.BitLen()), expr.CmpOpEq)
}

func lookupDaddr(set string, id uint32, v4 bool) []expr.Any {
	offset, n := uint32(24), uint32(16)
	if v4 {
		offset, n = 16, 4
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set, SetID: id},
	}
}

func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// dportRange is "th dport first-last" (nft encodes it as two compares).
func dportRange(r [2]uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: binaryutil.BigEndian.PutUint16(r[0])},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: binaryutil.BigEndian.PutUint16(r[1])},
	}
}

// dnat rewrites the destination address to a (port kept).
func dnat(a netip.Addr, family byte) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(family), RegAddrMin: 1},
	}
}

func icmpType(typ byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
	}
}

// Conntrack state bits (NF_CT_STATE_*_BIT), host byte order in the register.
const (
	ctInvalid     = 1
	ctEstablished = 2
	ctRelated     = 4
)

// ctStatusDNAT is IPS_DST_NAT: the flow's destination was rewritten.
const ctStatusDNAT = 1 << 5

func ctStatus(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// tcpSYN matches TCP with the SYN flag set ("tcp flags syn").
func tcpSYN() []expr.Any {
	return append(l4proto(unix.IPPROTO_TCP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0}},
	)
}

// clampMSSToRoute is "tcp option maxseg size set rt mtu": the kernel
// computes min(route MTU, reverse route MTU) minus headers and never raises
// the MSS.
func clampMSSToRoute() []expr.Any {
	return []expr.Any{
		&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 2, Size: 2},
		&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
	}
}

func counted(name string) []expr.Any {
	return []expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name}}
}

func verdict(kind expr.VerdictKind) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: kind}}
}

func masquerade() []expr.Any { return []expr.Any{&expr.Masq{FullyRandom: true}} }

func snat(pool [2]netip.Addr, ports [2]uint16, family byte) []expr.Any {
	exprs := []expr.Any{&expr.Immediate{Register: 1, Data: pool[0].AsSlice()}}
	nat := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: uint32(family), RegAddrMin: 1, Persistent: true}
	if pool[1] != pool[0] {
		exprs = append(exprs, &expr.Immediate{Register: 2, Data: pool[1].AsSlice()})
		nat.RegAddrMax = 2
	}
	if ports[0] != 0 {
		exprs = append(exprs,
			&expr.Immediate{Register: 3, Data: binaryutil.BigEndian.PutUint16(ports[0])},
			&expr.Immediate{Register: 4, Data: binaryutil.BigEndian.PutUint16(ports[1])})
		nat.RegProtoMin, nat.RegProtoMax, nat.Specified = 3, 4, true
	}
	return append(exprs, nat)
}

// intervalElements encodes ranges the way nft sends an interval set: a start
// element per range and an interval-end element at last+1, omitted when
// the range runs to the top of the address space.
func intervalElements(rs []addrRange) []nftables.SetElement {
	var els []nftables.SetElement
	for _, r := range rs {
		els = append(els, nftables.SetElement{Key: r.first.AsSlice()})
		if next := r.last.Next(); next.IsValid() {
			els = append(els, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return els
}
