package nat

import (
	"fmt"
	"net"
	"net/netip"

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
	var v4, v6 []netlink.CustomConntrackFilter
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		p = p.Masked()
		f := &netlink.ConntrackFilter{}
		ipnet := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := f.AddIPNet(netlink.ConntrackOrigSrcIP, ipnet); err != nil {
			return 0, fmt.Errorf("nat: flush conntrack: %s: %w", p, err)
		}
		if p.Addr().Is4() {
			v4 = append(v4, f)
		} else {
			v6 = append(v6, f)
		}
	}
	if len(v4) == 0 && len(v6) == 0 {
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
		family  netlink.InetFamily
		filters []netlink.CustomConntrackFilter
	}{{unix.AF_INET, v4}, {unix.AF_INET6, v6}} {
		if len(fam.filters) == 0 {
			continue
		}
		n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam.family, fam.filters...)
		total += int(n)
		if err != nil {
			return total, fmt.Errorf("nat: flush conntrack: %w", err)
		}
	}
	return total, nil
}
