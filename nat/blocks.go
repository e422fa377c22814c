package nat

import (
	"net/netip"
	"slices"
)

// builtinBlock4 and builtinBlock6 are the destinations no member may reach
// through the exit: private, shared (CGNAT), loopback, link-local,
// multicast, reserved and documentation space, the NAT64 prefixes (a
// provider's NAT64 reaches private IPv4 through them) and the clouds'
// special addresses. They are returned fresh by functions so the package
// keeps no mutable globals. Entries inside a wider one are kept for the
// record; the merge removes them.
func builtinBlock4() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("100.100.100.200/32"), // Alibaba metadata; inside 100.64/10
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("168.63.129.16/32"), // Azure WireServer and DNS: public space
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("169.254.169.253/32"), // AWS DNS; inside 169.254/16
		netip.MustParsePrefix("169.254.169.254/32"), // metadata (AWS, GCP, Azure, ...); inside 169.254/16
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("224.0.0.0/4"),
		netip.MustParsePrefix("240.0.0.0/4"),
	}
}

func builtinBlock6() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("64:ff9b::/96"),   // NAT64 well-known prefix
		netip.MustParsePrefix("64:ff9b:1::/48"), // NAT64 local-use prefix
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("fc00::/7"),          // ULA, incl. the members' own prefix
		netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata; inside fc00::/7
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("ff00::/8"),
	}
}

// loopback4 and loopback6 may never be opened by an allow entry.
var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

// DenySet is the set of destinations members must not reach: the built-in
// lists plus extra blocked prefixes, minus allowed holes. It is the one
// definition shared by the kernel ruleset (whose blocked and allowed sets
// are built from it) and by user-space forwarders (SOCKS, DNS), so they can
// never disagree. A DenySet is immutable and safe for concurrent use.
type DenySet struct {
	v4, v6 []addrRange // sorted, disjoint, not touching
}

// NewDenySet returns the built-in deny list plus block, minus allow.
// Invalid prefixes are ignored and IPv4-mapped IPv6 prefixes are taken as
// IPv4; Config.Validate rejects both before a ruleset is built.
func NewDenySet(block, allow []netip.Prefix) *DenySet {
	d := &DenySet{}
	for _, v4 := range []bool{true, false} {
		builtin := builtinBlock6()
		if v4 {
			builtin = builtinBlock4()
		}
		rs := subtract(mergeRanges(append(builtin, block...), v4), mergeRanges(allow, v4))
		if v4 {
			d.v4 = rs
		} else {
			d.v6 = rs
		}
	}
	return d
}

// Denied reports whether members must not reach a. IPv4-mapped IPv6
// addresses are judged as IPv4 and zones are ignored; the invalid address
// is denied.
func (d *DenySet) Denied(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	a = a.Unmap().WithZone("")
	rs := d.v6
	if a.Is4() {
		rs = d.v4
	}
	// The first range ending at or after a.
	i, _ := slices.BinarySearchFunc(rs, a, func(r addrRange, a netip.Addr) int { return r.last.Compare(a) })
	return i < len(rs) && !a.Less(rs[i].first)
}

// Prefixes returns the deny set as the smallest list of prefixes, IPv4
// first, e.g. for a log line or a user-space filter that wants prefixes.
func (d *DenySet) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range append(append([]addrRange(nil), d.v4...), d.v6...) {
		out = append(out, r.prefixes()...)
	}
	return out
}

// Equal reports whether d and e deny the same addresses.
func (d *DenySet) Equal(e *DenySet) bool {
	return slices.Equal(d.v4, e.v4) && slices.Equal(d.v6, e.v6)
}

// ranges returns the deny set of one family.
func (d *DenySet) ranges(v4 bool) []addrRange {
	if v4 {
		return d.v4
	}
	return d.v6
}

// addrRange is an inclusive interval of addresses of one family.
type addrRange struct{ first, last netip.Addr }

// mergeRanges returns the prefixes of one family as sorted, disjoint,
// non-adjacent intervals: the kernel rejects overlapping intervals (and nft
// refuses "fd00:ec2::254" next to "fc00::/7"), so contained and touching
// prefixes are merged here.
func mergeRanges(prefixes []netip.Prefix, v4 bool) []addrRange {
	var rs []addrRange
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		if p.Addr().Is4() != v4 {
			continue
		}
		p = p.Masked()
		rs = append(rs, addrRange{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.first.Compare(b.first) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			if next := prev.last.Next(); !next.IsValid() || !next.Less(r.first) {
				// r starts inside prev or right after it.
				if prev.last.Less(r.last) {
					prev.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// subtract returns the addresses of rs not in holes; both are sorted,
// disjoint ranges of one family, and so is the result.
func subtract(rs, holes []addrRange) []addrRange {
	var out []addrRange
	j := 0
	for _, r := range rs {
		first := r.first
		for j < len(holes) && holes[j].last.Less(first) {
			j++ // holes wholly below r
		}
		covered := false
		for k := j; k < len(holes) && !r.last.Less(holes[k].first); k++ {
			h := holes[k] // overlaps [first, r.last]
			if first.Less(h.first) {
				out = append(out, addrRange{first, h.first.Prev()})
			}
			if !h.last.Less(r.last) {
				covered = true // the hole runs to r's end
				break
			}
			first = h.last.Next()
		}
		if !covered {
			out = append(out, addrRange{first, r.last})
		}
	}
	return out
}

// prefixes splits r into the fewest prefixes covering exactly it.
func (r addrRange) prefixes() []netip.Prefix {
	var out []netip.Prefix
	for a := r.first; ; {
		// The widest prefix starting at a that ends within r.
		bits := a.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1)
			if p.Masked().Addr() != a || r.last.Less(lastAddr(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		end := lastAddr(p)
		if end == r.last {
			return out
		}
		a = end.Next()
	}
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// complement returns the addresses of the family not in rs (sorted,
// disjoint ranges): the allow sets.
func complement(rs []addrRange, v4 bool) []addrRange {
	next := netip.IPv6Unspecified()
	if v4 {
		next = netip.IPv4Unspecified()
	}
	var out []addrRange
	for _, r := range rs {
		if next.IsValid() && next.Less(r.first) {
			out = append(out, addrRange{next, r.first.Prev()})
		}
		next = r.last.Next() // invalid past the top of the address space
	}
	if next.IsValid() {
		out = append(out, addrRange{next, lastAddr(netip.PrefixFrom(next, 0))})
	}
	return out
}
