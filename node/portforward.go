package node

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"golang.org/x/sys/unix"

	"exitd/control"
	"exitd/nat"
	"exitd/portforward"
)

// Port forwarding (docs/nat.md, "Port forwarding"): NAT-PMP on the IPv4
// gateway address, UDP 5351, for members only. A member is its tunnel
// source address; its mappings are DNATs in the nat package's port-forward
// table, persisted in state_dir with their expiry, and go when they
// expire, when the member is removed or disabled, or when exitd stops.

// portForwardFile (in state_dir) holds the mappings across restarts.
const portForwardFile = "portforward.json"

// pfInstaller puts the mappings into the port-forward table.
type pfInstaller struct{ n *Node }

func (p pfInstaller) Apply(all []portforward.Mapping) error {
	fs := make([]nat.Forward, len(all))
	for i, m := range all {
		proto := uint8(unix.IPPROTO_UDP)
		if m.Proto == portforward.TCP {
			proto = unix.IPPROTO_TCP
		}
		fs[i] = nat.Forward{Proto: proto, Port: m.External, To: m.Internal}
	}
	return p.n.nat.ApplyForwards(p.n.config().WAN.Interface, fs)
}

// startPortForward serves NAT-PMP when [portforward] is enabled.
func (n *Node) startPortForward() (func(), error) {
	c := n.config()
	pc := c.PortForward
	if !pc.Enabled {
		return nil, nil
	}
	t, err := portforward.NewTable(portforward.TableOptions{
		FirstPort: pc.Ports[0], LastPort: pc.Ports[1], MaxPerMember: pc.MaxPerMember,
		MaxLifetime: pc.MaxLifetime.Duration, Now: n.now, Logger: n.log,
	}, pfInstaller{n}, portforward.NewFileStore(filepath.Join(c.StateDir, portForwardFile)))
	if err != nil {
		return nil, fmt.Errorf("portforward: %w", err)
	}
	// Mappings of members removed or disabled while exitd was down go.
	for _, m := range t.List() {
		if mem, err := n.reg.Get(m.Member); err != nil || mem.Disabled {
			if err := t.RemoveMember(m.Member); err != nil {
				n.log.Warn("portforward: drop a gone member's mappings; retried on expiry", "err", err)
			}
		}
	}
	// NewTable installed the restored mappings: a failed start takes them
	// out again (the nat step's undo removes only the main tables).
	fail := func(err error) (func(), error) {
		if rerr := n.nat.RemoveForwards(); rerr != nil {
			n.log.Error("remove the port-forward table after a failed start", "err", rerr)
		}
		return nil, err
	}
	gw := c.Tunnel.Gateway4()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, portforward.ServerPort)))
	if err != nil {
		return fail(fmt.Errorf("portforward: listen on %s:%d: %w (set [portforward] enabled = false to run without it)", gw, portforward.ServerPort, err))
	}
	s, err := portforward.NewServer(t, portforward.ServerOptions{
		Identify: func(src netip.Addr) (string, bool) {
			m, ok := n.reg.ByAddr(src)
			if !ok || m.Disabled {
				return "", false
			}
			return m.PublicKey.String(), true
		},
		PublicAddr: func() netip.Addr { return wanAddr4(c.WAN.Interface) },
		Logger:     n.log, Now: n.now,
	})
	if err != nil {
		conn.Close()
		return fail(fmt.Errorf("portforward: %w", err))
	}
	if err := s.Start(conn); err != nil {
		return fail(fmt.Errorf("portforward: %w", err))
	}
	n.pf, n.pfTable = s, t
	n.log.Info("serving NAT-PMP to members", "addr", netip.AddrPortFrom(gw, portforward.ServerPort),
		"ports", fmt.Sprintf("%d-%d", pc.Ports[0], pc.Ports[1]), "mappings", t.Len())
	return func() {
		s.Close()
		if n.plane != nil && n.plane.HandingOver() {
			return // the next exitd restores the same mappings from state_dir
		}
		if err := n.nat.RemoveForwards(); err != nil {
			n.log.Error("remove the port-forward table", "err", err)
		}
	}, nil
}

// forgetForwards drops the members' port mappings (removed or disabled).
func (n *Node) forgetForwards(ms ...string) {
	if n.pfTable == nil {
		return
	}
	for _, key := range ms {
		if err := n.pfTable.RemoveMember(key); err != nil {
			n.log.Error("portforward: remove a member's mappings; retried on expiry", "err", err)
		}
	}
}

// wanAddr4 is the first global IPv4 address of the WAN interface (invalid
// when it has none): the public address NAT-PMP reports.
func wanAddr4(ifname string) netip.Addr {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// portForwardStatus is NAT-PMP's line in `exitctl status`; nil when off.
func (n *Node) portForwardStatus() *control.ServiceStatus {
	if n.pf == nil {
		return nil
	}
	st := n.pf.Stats()
	var answered uint64
	for _, a := range st.Answered {
		answered += a
	}
	return &control.ServiceStatus{
		Listen: []string{netip.AddrPortFrom(n.config().Tunnel.Gateway4(), portforward.ServerPort).String()},
		Summary: fmt.Sprintf("%d mappings; requests: %d map, %d address, %d answered (%d refused), %d from outside dropped",
			st.Mappings, st.RequestsMapUDP+st.RequestsMapTCP, st.RequestsPublicAddr, answered, answered-st.Answered[0], st.DroppedForeign),
	}
}
