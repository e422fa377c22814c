package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// build creates the topology in order: namespaces, sysctls (before any link
// exists, so new links inherit them), links, addresses, routes, shaping.
// Every created namespace is in l.all as soon as it exists, so Close can
// remove a partial build.
func (l *Lab) build(ctx context.Context, o Options) error {
	steps := []struct {
		name string
		fn   func(context.Context, Options) error
	}{
		{"namespaces", l.buildNamespaces},
		{"sysctls", l.buildSysctls},
		{"links", l.buildLinks},
		{"addresses", l.buildAddresses},
		{"routes", l.buildRoutes},
		{"extra", l.buildExtraAddrs},
		{"shaping", l.buildShaping},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("netlab: build %s: %w", s.name, err)
		}
		start := time.Now()
		if err := s.fn(ctx, o); err != nil {
			return err
		}
		l.log.Debug("netlab: built", "step", s.name, "took", time.Since(start))
		if o.failAt == s.name {
			return fmt.Errorf("netlab: build %s: injected failure", s.name)
		}
	}
	return nil
}

func (l *Lab) addNS(ctx context.Context, role string) (*NS, error) {
	n, err := newNS(ctx, l.nsName(role), role, l.tr, l.log)
	if n != nil {
		l.all = append(l.all, n)
	}
	return n, err
}

func (l *Lab) buildNamespaces(ctx context.Context, o Options) error {
	var err error
	if l.Exit, err = l.addNS(ctx, exitRole(0)); err != nil {
		return err
	}
	l.Exits = []*NS{l.Exit}
	if l.Internet, err = l.addNS(ctx, "inet"); err != nil {
		return err
	}
	if l.router, err = l.addNS(ctx, "rtr"); err != nil {
		return err
	}
	if l.Mgmt, err = l.addNS(ctx, "mgmt"); err != nil {
		return err
	}
	if l.Hub, err = l.addNS(ctx, "hub"); err != nil {
		return err
	}
	for i := 1; i <= o.Members; i++ {
		m, err := l.addNS(ctx, memberRole(i))
		if err != nil {
			return err
		}
		l.Members = append(l.Members, m)
	}
	for i := 1; i < o.Exits; i++ {
		e, err := l.addNS(ctx, exitRole(i))
		if err != nil {
			return err
		}
		l.Exits = append(l.Exits, e)
	}
	return nil
}

// buildSysctls runs inside the lab namespaces only: no DAD (addresses are
// usable at once), forwarding on the exits and the WAN router, IPv6 off on
// the pure-L2 hub.
func (l *Lab) buildSysctls(_ context.Context, _ Options) error {
	for _, n := range l.all {
		for _, conf := range []string{"all", "default"} {
			if err := n.sysctl("net/ipv6/conf/"+conf+"/accept_dad", "0"); err != nil {
				return err
			}
		}
	}
	if err := l.Hub.sysctl("net/ipv6/conf/default/disable_ipv6", "1"); err != nil {
		return err
	}
	for _, n := range append(append([]*NS(nil), l.Exits...), l.router) {
		if err := n.sysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		if err := n.sysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}

// addVeth creates a veth pair from inside n's namespace with the peer born
// directly in peer's namespace, so neither end exists in the root namespace.
func addVeth(n *NS, name string, peer *NS, peerName string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(peer.Handle)),
	}
	if err := n.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("netlab: veth %s/%s -- %s/%s: %w", n.Name, name, peer.Name, peerName, err)
	}
	return nil
}

func hubMemberPort(i int) string { return "m" + strconv.Itoa(i) }

func (l *Lab) buildLinks(_ context.Context, _ Options) error {
	if err := addVeth(l.Exit, ExitWANIface, l.router, routerExitIface); err != nil {
		return err
	}
	if err := addVeth(l.router, routerInetIface, l.Internet, InternetIface); err != nil {
		return err
	}
	if err := addVeth(l.Exit, ExitLANIface, l.Mgmt, MgmtIface); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: HubBridge}}
	if err := l.Hub.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("netlab: %s: add bridge: %w", l.Hub.Name, err)
	}
	if err := addVeth(l.Hub, HubExitPort, l.Exit, ExitUnderlayIface); err != nil {
		return err
	}
	ports := []string{HubExitPort}
	for i, m := range l.Members {
		p := hubMemberPort(i + 1)
		if err := addVeth(l.Hub, p, m, MemberIface); err != nil {
			return err
		}
		ports = append(ports, p)
	}
	for i, e := range l.Exits[1:] {
		p, err := ExitAddrs(i + 1)
		if err != nil {
			return err
		}
		if err := addVeth(e, ExitWANIface, l.router, p.routerPort); err != nil {
			return err
		}
		if err := addVeth(e, ExitLANIface, l.Mgmt, p.mgmtIface); err != nil {
			return err
		}
		if err := addVeth(l.Hub, p.hubPort, e, ExitUnderlayIface); err != nil {
			return err
		}
		ports = append(ports, p.hubPort)
	}
	bridge, err := l.Hub.nl.LinkByName(HubBridge)
	if err != nil {
		return fmt.Errorf("netlab: %s: bridge: %w", l.Hub.Name, err)
	}
	for _, p := range ports {
		ln, err := l.Hub.nl.LinkByName(p)
		if err != nil {
			return fmt.Errorf("netlab: %s: link %s: %w", l.Hub.Name, p, err)
		}
		if err := l.Hub.nl.LinkSetMaster(ln, bridge); err != nil {
			return fmt.Errorf("netlab: %s: enslave %s: %w", l.Hub.Name, p, err)
		}
	}
	for _, n := range l.all {
		links, err := n.nl.LinkList()
		if err != nil {
			return fmt.Errorf("netlab: %s: list links: %w", n.Name, err)
		}
		for _, ln := range links {
			if err := n.nl.LinkSetUp(ln); err != nil {
				return fmt.Errorf("netlab: %s: up %s: %w", n.Name, ln.Attrs().Name, err)
			}
		}
	}
	return nil
}

// addAddr adds addr/bits to dev in n, without DAD.
func addAddr(n *NS, dev string, addr netip.Addr, bits int) error {
	ln, err := n.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("netlab: %s: link %s: %w", n.Name, dev, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, addr.BitLen())}}
	if addr.Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(ln, a); err != nil {
		return fmt.Errorf("netlab: %s: add %s/%d to %s: %w", n.Name, addr, bits, dev, err)
	}
	return nil
}

type addrSpec struct {
	ns   *NS
	dev  string
	addr string
	bits int
}

func (l *Lab) buildAddresses(_ context.Context, _ Options) error {
	specs := []addrSpec{
		{l.Exit, ExitUnderlayIface, ExitUnderlay4, 16},
		{l.Exit, ExitUnderlayIface, ExitUnderlay6, 64},
		{l.Exit, ExitWANIface, ExitWAN4, wanLinkBits4},
		{l.Exit, ExitWANIface, ExitWAN6, wanLinkBits6},
		{l.router, routerExitIface, routerWAN4, wanLinkBits4},
		{l.router, routerExitIface, routerWAN6, wanLinkBits6},
		{l.router, routerInetIface, routerInet4, wanLinkBits4},
		{l.router, routerInetIface, routerInet6, wanLinkBits6},
		{l.Exit, ExitLANIface, ExitLAN4, 24},
		{l.Exit, ExitLANIface, ExitLAN6, 64},
		{l.Internet, InternetIface, Internet4, wanLinkBits4},
		{l.Internet, InternetIface, Internet6, wanLinkBits6},
		{l.Internet, "lo", Metadata4, 32},
		{l.Mgmt, MgmtIface, Mgmt4, 24},
		{l.Mgmt, MgmtIface, Mgmt6, 64},
	}
	for _, s := range specs {
		if err := addAddr(s.ns, s.dev, netip.MustParseAddr(s.addr), s.bits); err != nil {
			return err
		}
	}
	l.Exit.Addr4, l.Exit.Addr6 = netip.MustParseAddr(ExitUnderlay4), netip.MustParseAddr(ExitUnderlay6)
	l.Internet.Addr4, l.Internet.Addr6 = netip.MustParseAddr(Internet4), netip.MustParseAddr(Internet6)
	l.Mgmt.Addr4, l.Mgmt.Addr6 = netip.MustParseAddr(Mgmt4), netip.MustParseAddr(Mgmt6)
	for i, m := range l.Members {
		a4, err := MemberAddr4(i + 1)
		if err != nil {
			return err
		}
		a6, err := MemberAddr6(i + 1)
		if err != nil {
			return err
		}
		if err := addAddr(m, MemberIface, a4, 16); err != nil {
			return err
		}
		if err := addAddr(m, MemberIface, a6, 64); err != nil {
			return err
		}
		m.Addr4, m.Addr6 = a4, a6
	}
	for i, e := range l.Exits[1:] {
		p, err := ExitAddrs(i + 1)
		if err != nil {
			return err
		}
		for _, s := range []struct {
			ns   *NS
			dev  string
			addr netip.Addr
			bits int
		}{
			{e, ExitUnderlayIface, p.Underlay4, 16},
			{e, ExitUnderlayIface, p.Underlay6, 64},
			{e, ExitWANIface, p.WAN4, wanLinkBits4},
			{e, ExitWANIface, p.WAN6, wanLinkBits6},
			{l.router, p.routerPort, p.router4, wanLinkBits4},
			{l.router, p.routerPort, p.router6, wanLinkBits6},
			{e, ExitLANIface, p.LAN4, 24},
			{e, ExitLANIface, p.LAN6, 64},
			{l.Mgmt, p.mgmtIface, p.Mgmt4, 24},
			{l.Mgmt, p.mgmtIface, p.Mgmt6, 64},
		} {
			if err := addAddr(s.ns, s.dev, s.addr, s.bits); err != nil {
				return err
			}
		}
		e.Addr4, e.Addr6 = p.Underlay4, p.Underlay6
	}
	return nil
}

// buildRoutes gives every exit its defaults through the WAN router, the router
// the metadata route, and the internet host a route back to the WAN side
// only. Members get nothing beyond connected routes: the internet host
// cannot reach the member underlay, members need a tunnel for anything past
// the underlay.
func (l *Lab) buildRoutes(_ context.Context, _ Options) error {
	for _, r := range []struct {
		ns  *NS
		dst string
		gw  string
	}{
		{l.Exit, "0.0.0.0/0", routerWAN4},
		{l.Exit, "::/0", routerWAN6},
		{l.router, Metadata4 + "/32", Internet4},
		{l.Internet, WANPrefix4, routerInet4},
		{l.Internet, WANPrefix6, routerInet6},
	} {
		if err := r.ns.AddRoute(netip.MustParsePrefix(r.dst), netip.MustParseAddr(r.gw)); err != nil {
			return err
		}
	}
	for i, e := range l.Exits[1:] {
		p, err := ExitAddrs(i + 1)
		if err != nil {
			return err
		}
		if err := e.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), p.router4); err != nil {
			return err
		}
		if err := e.AddRoute(netip.MustParsePrefix("::/0"), p.router6); err != nil {
			return err
		}
	}
	return nil
}

// buildExtraAddrs puts the extra /32 sources on member 1's underlay link.
func (l *Lab) buildExtraAddrs(_ context.Context, o Options) error {
	m := l.Members[0]
	for k := range o.ExtraMemberAddrs {
		a, err := ExtraAddr4(k)
		if err != nil {
			return err
		}
		if err := addAddr(m, MemberIface, a, 32); err != nil {
			return err
		}
		m.ExtraAddrs = append(m.ExtraAddrs, a)
	}
	return nil
}

// buildShaping installs the TBFs and turns offloads off on the bottleneck.
// tc and ethtool run inside the namespaces.
func (l *Lab) buildShaping(ctx context.Context, o Options) error {
	lat := o.QueueLatency
	if lat == 0 {
		lat = defaultLatency
	}
	type shaped struct {
		ns   *NS
		dev  string
		rate uint64
	}
	tbfs := []shaped{
		{l.Exit, ExitUnderlayIface, o.DownRate},
		{l.Hub, HubExitPort, o.UpRate},
	}
	bottlenecks := []shaped{{l.Exit, ExitUnderlayIface, 0}, {l.Hub, HubExitPort, 0}}
	for i, e := range l.Exits[1:] {
		p, err := ExitAddrs(i + 1)
		if err != nil {
			return err
		}
		tbfs = append(tbfs, shaped{e, ExitUnderlayIface, o.DownRate}, shaped{l.Hub, p.hubPort, o.UpRate})
		bottlenecks = append(bottlenecks, shaped{e, ExitUnderlayIface, 0}, shaped{l.Hub, p.hubPort, 0})
	}
	for _, s := range tbfs {
		if s.rate == 0 {
			continue
		}
		// "bit" is bits per second; tc's "mbps" would be megabytes.
		if _, err := s.ns.Exec(ctx, "tc", "qdisc", "replace", "dev", s.dev, "root", "tbf",
			"rate", strconv.FormatUint(s.rate, 10)+"bit",
			"burst", strconv.Itoa(o.burstFor(s.rate)),
			"latency", strconv.FormatInt(lat.Microseconds(), 10)+"us"); err != nil {
			return err
		}
	}
	if !o.OffloadsOff {
		return nil
	}
	for _, s := range bottlenecks {
		if _, err := s.ns.Exec(ctx, "ethtool", "-K", s.dev, "gro", "off", "gso", "off", "tso", "off"); err != nil {
			return err
		}
	}
	return nil
}
