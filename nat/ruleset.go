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
		CounterGatewayInputDrop, CounterForwardPolicyDrop}
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
// DelTable, AddTable, then counters, sets, chains and rules. The caller
// Flushes once, so the kernel swaps the old table for the new one in a single
// transaction and no packet sees a half-built ruleset. cfg must be valid.
//
// The expressions are spelled the way nft 1.0.6 encodes the equivalent
// command (see nftCommands in the tests), so `nft list ruleset` prints the
// table as if nft had made it.
func queueRuleset(c *nftables.Conn, cfg Config) error {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: cfg.table()}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	for _, name := range counterNames() {
		c.AddObj(&nftables.CounterObj{Table: t, Name: name})
	}

	b4 := &nftables.Set{Table: t, ID: setIDBlocked4, Name: setBlocked4, Interval: true, KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(b4, intervalElements(blockRanges(cfg.Block, true))); err != nil {
		return fmt.Errorf("set %s: %w", setBlocked4, err)
	}
	b6 := &nftables.Set{Table: t, ID: setIDBlocked6, Name: setBlocked6, Interval: true, KeyType: nftables.TypeIP6Addr}
	if err := c.AddSet(b6, intervalElements(blockRanges(cfg.Block, false))); err != nil {
		return fmt.Errorf("set %s: %w", setBlocked6, err)
	}
	a4 := &nftables.Set{Table: t, ID: setIDAllowed4, Name: setAllowed4, Interval: true, KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(a4, intervalElements(complement(blockRanges(cfg.Block, true), true))); err != nil {
		return fmt.Errorf("set %s: %w", setAllowed4, err)
	}
	a6 := &nftables.Set{Table: t, ID: setIDAllowed6, Name: setAllowed6, Interval: true, KeyType: nftables.TypeIP6Addr}
	if err := c.AddSet(a6, intervalElements(complement(blockRanges(cfg.Block, false), false))); err != nil {
		return fmt.Errorf("set %s: %w", setAllowed6, err)
	}

	accept := nftables.ChainPolicyAccept
	drop := nftables.ChainPolicyDrop

	mangle := c.AddChain(&nftables.Chain{Name: "fwd_mangle", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	addRule(c, t, mangle, tcpSYN(), clampMSSToRoute())

	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	for _, r := range forwardRules(cfg) {
		addRule(c, t, fwd, r...)
	}

	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, r := range inputRules(cfg) {
		addRule(c, t, in, r...)
	}

	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	for _, r := range postroutingRules(cfg) {
		addRule(c, t, post, r...)
	}
	return nil
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

func forwardRules(cfg Config) []rule {
	tun := iifname(cfg.Tun)
	rules := []rule{
		{ctState(ctEstablished | ctRelated), verdict(expr.VerdictAccept)},
		{ctState(ctInvalid), verdict(expr.VerdictDrop)},
	}
	// Spoof: a source outside the family's member prefix (or any source of a
	// disabled family) never leaves the tunnel.
	rules = append(rules, spoofRule(tun, cfg.Member4, unix.NFPROTO_IPV4), spoofRule(tun, cfg.Member6, unix.NFPROTO_IPV6))
	if cfg.Isolation {
		rules = append(rules, rule{tun, oifname(cfg.Tun), counted(CounterMemberIsolationDrop), verdict(expr.VerdictDrop)})
	} else {
		// Members may talk to each other; without this the leak rule
		// (the member prefix is inside 10/8 or fc00::/7) would drop it.
		rules = append(rules, rule{tun, oifname(cfg.Tun), verdict(expr.VerdictAccept)})
	}
	rules = append(rules,
		rule{tun, nfproto(unix.NFPROTO_IPV4), lookupDaddr(setBlocked4, setIDBlocked4, true), counted(CounterLeakDrop), verdict(expr.VerdictDrop)},
		rule{tun, nfproto(unix.NFPROTO_IPV6), lookupDaddr(setBlocked6, setIDBlocked6, false), counted(CounterLeakDrop), verdict(expr.VerdictDrop)},
		// The way out, only to the complement of the deny set. The leak
		// rules above count; these make the exit fail closed: a set that
		// is new in a transaction can look empty to lookups while the
		// kernel commits it (seen on 6.18: ~1 in 10 runs of 50 re-applies
		// under a flood let a blocked packet through when this rule was a
		// plain accept). An empty allow set drops, an empty deny set would
		// not.
		rule{tun, oifname(cfg.WAN), nfproto(unix.NFPROTO_IPV4), lookupDaddr(setAllowed4, setIDAllowed4, true), verdict(expr.VerdictAccept)},
		rule{tun, oifname(cfg.WAN), nfproto(unix.NFPROTO_IPV6), lookupDaddr(setAllowed6, setIDAllowed6, false), verdict(expr.VerdictAccept)},
		// Counts what the policy drops (WAN → tunnel new flows, tunnel →
		// other interfaces, anything else forwarded). The explicit drop
		// repeats the policy because the kernel only switches a new
		// chain's policy to drop late in the commit.
		rule{counted(CounterForwardPolicyDrop), verdict(expr.VerdictDrop)},
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
	}
	if cfg.Gateway6.IsValid() {
		gw := rule{tun, nfproto(unix.NFPROTO_IPV6), addrMatch(24, cfg.Gateway6)}
		rules = append(rules,
			append(gw[:3:3], l4proto(unix.IPPROTO_UDP), dport(53), verdict(expr.VerdictAccept)),
			append(gw[:3:3], l4proto(unix.IPPROTO_TCP), dport(53), verdict(expr.VerdictAccept)),
			append(gw[:3:3], l4proto(unix.IPPROTO_ICMPV6), icmpType(128), verdict(expr.VerdictAccept)), // echo-request
		)
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

func postroutingRules(cfg Config) []rule {
	wan := oifname(cfg.WAN)
	var rules []rule
	if p := cfg.Member4; p.IsValid() {
		match := rule{wan, nfproto(unix.NFPROTO_IPV4), prefixMatch(12, p, expr.CmpOpEq)}
		if cfg.Mode == SNAT {
			rules = append(rules, snatRules(match, cfg.Pool4, cfg.Ports, unix.NFPROTO_IPV4)...)
		} else {
			rules = append(rules, append(match, masquerade()))
		}
	}
	if p := cfg.Member6; p.IsValid() {
		match := rule{wan, nfproto(unix.NFPROTO_IPV6), prefixMatch(8, p, expr.CmpOpEq)}
		if cfg.Mode == SNAT && cfg.Pool6[0].IsValid() {
			rules = append(rules, snatRules(match, cfg.Pool6, cfg.Ports, unix.NFPROTO_IPV6)...)
		} else {
			rules = append(rules, append(match, masquerade()))
		}
	}
	return rules
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
