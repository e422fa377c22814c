package netlab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

func routeFor(dst netip.Prefix, gw netip.Addr) *netlink.Route {
	dst = dst.Masked()
	return &netlink.Route{
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		Gw:  gw.AsSlice(),
	}
}

// AddRoute adds a route to dst via gw inside the namespace (gw must be on a
// connected link). Benchmarks use it for a bareback path, e.g. a member's
// default route via ExitUnderlay4; NAT on the exit is the caller's.
func (n *NS) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	if err := n.nl.RouteAdd(routeFor(dst, gw)); err != nil {
		return fmt.Errorf("netlab: %s: route add %s via %s: %w", n.Name, dst, gw, err)
	}
	return nil
}

// DelRoute removes a route added with AddRoute.
func (n *NS) DelRoute(dst netip.Prefix, gw netip.Addr) error {
	if err := n.nl.RouteDel(routeFor(dst, gw)); err != nil {
		return fmt.Errorf("netlab: %s: route del %s via %s: %w", n.Name, dst, gw, err)
	}
	return nil
}
