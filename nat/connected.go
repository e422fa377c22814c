package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// ErrNoInterface is wrapped by ConnectedPrefixes' error when the interface
// does not exist (then it has no connected prefixes either).
var ErrNoInterface = errors.New("no such interface")

// linkLocal6 is left out of ConnectedPrefixes: the built-in list blocks it.
var linkLocal6 = netip.MustParsePrefix("fe80::/10")

// ConnectedPrefixes returns the prefixes the interface ifname is directly
// connected to, in the caller's network namespace: for every address its
// masked prefix (and a point-to-point peer's prefix), sorted, without
// duplicates and without IPv6 link-local ones. They are the WAN's on-link
// neighbours and the provider's VPC range, which members must not reach:
// the caller puts them in Config.WANPrefixes at start and on reload.
func ConnectedPrefixes(ifname string) ([]netip.Prefix, error) {
	link, err := netlink.LinkByName(ifname)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("nat: connected prefixes of %q: %w", ifname, ErrNoInterface)
	}
	if err != nil {
		return nil, fmt.Errorf("nat: connected prefixes of %q: %w", ifname, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("nat: connected prefixes of %q: %w", ifname, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		for _, n := range []*netlink.Addr{&a, {IPNet: a.Peer}} {
			if n.IPNet == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ones, _ := n.Mask.Size()
			ip = ip.Unmap()
			if ip.Is4() && ones > 32 {
				ones -= 96
			}
			p, err := ip.Prefix(ones)
			if err != nil || linkLocal6.Contains(p.Addr()) {
				continue
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out), nil
}
