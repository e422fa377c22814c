package nat

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// FlushConntrack deletes the conntrack entries whose original source lies in
// one of prefixes, in the network namespace netnsFd (0: the caller's), and
// returns how many it deleted. Call it after Remove at shutdown: without our
// table, an established member flow would otherwise keep its conntrack entry
// and could go out un-NATed. Invalid prefixes are ignored.
func FlushConntrack(netnsFd int, prefixes ...netip.Prefix) (int, error) {
	return FlushConntrackTo(netnsFd, prefixes, nil)
}

// FlushConntrackTo deletes the conntrack entries whose original source lies
// in one of sources and whose original destination satisfies to (every
// destination when to is nil), in the network namespace netnsFd (0: the
// caller's), and returns how many it deleted. Apply uses it to cut member
// flows to destinations a new deny set blocks (to is then "denied now, not
// before"). Invalid prefixes are ignored; to sees unmapped addresses.
func FlushConntrackTo(netnsFd int, sources []netip.Prefix, to func(netip.Addr) bool) (int, error) {
	f := flowFilter{to: to}
	var v4, v6 bool
	for _, p := range sources {
		a, bits := p.Addr(), p.Bits()
		if a.Is4In6() {
			a, bits = a.Unmap(), bits-96
		}
		if !p.IsValid() || bits < 0 {
			continue
		}
		p = netip.PrefixFrom(a, bits).Masked()
		f.from = append(f.from, p)
		v4 = v4 || p.Addr().Is4()
		v6 = v6 || p.Addr().Is6()
	}
	if len(f.from) == 0 {
		return 0, nil
	}
	ns := netns.None()
	if netnsFd != 0 {
		ns = netns.NsHandle(netnsFd)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("nat: flush conntrack: %w", err)
	}
	defer h.Close()
	total := 0
	for _, fam := range []struct {
		family netlink.InetFamily
		want   bool
	}{{unix.AF_INET, v4}, {unix.AF_INET6, v6}} {
		if !fam.want {
			continue
		}
		n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam.family, f)
		total += int(n)
		if err != nil {
			return total, fmt.Errorf("nat: flush conntrack: %w", err)
		}
	}
	return total, nil
}

// flowFilter matches a flow by its original direction: source in one of
// from, destination accepted by to (any when nil).
type flowFilter struct {
	from []netip.Prefix
	to   func(netip.Addr) bool
}

var _ netlink.CustomConntrackFilter = flowFilter{}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	src, ok := netip.AddrFromSlice(flow.Forward.SrcIP)
	if !ok {
		return false
	}
	src = src.Unmap()
	if !slices.ContainsFunc(f.from, func(p netip.Prefix) bool { return p.Contains(src) }) {
		return false
	}
	if f.to == nil {
		return true
	}
	dst, ok := netip.AddrFromSlice(flow.Forward.DstIP)
	return ok && f.to(dst.Unmap())
}

// CountConntrack counts the conntrack entries whose original source lies
// in one of sources, per source address, in the network namespace netnsFd
// (0: the caller's). It walks the whole table (a dump of every entry):
// callers cache the result rather than call it per request.
func CountConntrack(netnsFd int, sources []netip.Prefix) (map[netip.Addr]int, error) {
	ns := netns.None()
	if netnsFd != 0 {
		ns = netns.NsHandle(netnsFd)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nat: count conntrack: %w", err)
	}
	defer h.Close()
	out := map[netip.Addr]int{}
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := h.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return nil, fmt.Errorf("nat: count conntrack: %w", err)
		}
		for _, f := range flows {
			src, ok := netip.AddrFromSlice(f.Forward.SrcIP)
			if !ok {
				continue
			}
			src = src.Unmap()
			if slices.ContainsFunc(sources, func(p netip.Prefix) bool { return p.Contains(src) }) {
				out[src]++
			}
		}
	}
	return out, nil
}
