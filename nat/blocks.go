package nat

import (
	"net/netip"
	"slices"
)

// builtinBlock4 and builtinBlock6 are the destinations no member may reach
// through the exit: private, shared (CGNAT), loopback, link-local (cloud
// metadata 169.254.169.254 included), multicast and reserved space. They are
// returned fresh by functions so the package keeps no mutable globals.
func builtinBlock4() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("169.254.0.0/16"), // incl. 169.254.169.254 metadata
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("224.0.0.0/4"),
		netip.MustParsePrefix("240.0.0.0/4"),
	}
}

func builtinBlock6() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("fc00::/7"), // ULA, incl. the members' own prefix
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("ff00::/8"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata; inside fc00::/7, kept for the record
	}
}

// addrRange is an inclusive interval of addresses of one family.
type addrRange struct{ first, last netip.Addr }

// blockRanges returns the deny set for one family as sorted, disjoint,
// non-adjacent intervals: the kernel rejects overlapping intervals (and nft
// refuses "fd00:ec2::254" next to "fc00::/7"), so contained and touching
// prefixes are merged here.
func blockRanges(extra []netip.Prefix, v4 bool) []addrRange {
	prefixes := builtinBlock6()
	if v4 {
		prefixes = builtinBlock4()
	}
	var rs []addrRange
	for _, p := range append(prefixes, extra...) {
		if !p.IsValid() || p.Addr().Is4() != v4 {
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
			if next := prev.last.Next(); !r.first.Less(prev.first) && (!next.IsValid() || !next.Less(r.first)) {
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
