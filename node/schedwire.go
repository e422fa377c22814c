package node

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/config"
	"exitd/members"
	"exitd/sched"
)

func schedConfig(c *config.Config) sched.Config {
	return sched.Config{
		Discipline: c.Scheduler.Discipline,
		EgressRate: c.Scheduler.Egress, IngressRate: c.Scheduler.Ingress,
		LimitBytes: c.Scheduler.ByteLimit, LimitPackets: c.Scheduler.PacketLimit,
	}
}

// wrapTUN puts the scheduler between the TUN and wireguard-go.
func (n *Node) wrapTUN(inner tun.Device) (tun.Device, error) {
	d, err := sched.NewDevice(inner, schedConfig(n.cfg), sched.Options{Logger: n.log, Now: n.now})
	if err != nil {
		return nil, err
	}
	n.sched = d
	return d, nil
}

// wrapBind lets the scheduler count what the UDP socket actually sent.
func (n *Node) wrapBind(b conn.Bind) conn.Bind {
	if n.sched == nil {
		return b
	}
	return n.sched.WrapBind(b)
}

func memberAddrs(m members.Member) []netip.Addr {
	var a []netip.Addr
	if m.IPv4.IsValid() {
		a = append(a, m.IPv4)
	}
	if m.IPv6.IsValid() {
		a = append(a, m.IPv6)
	}
	return a
}

func (n *Node) schedUpsert(m members.Member) {
	if n.sched != nil {
		n.sched.UpsertMember(m.ID, memberAddrs(m), max(m.Weight, 1))
		n.sched.SetMemberRate(m.ID, m.EgressLimit, m.IngressLimit)
	}
}

func (n *Node) schedRemove(m members.Member) {
	if n.sched != nil {
		n.sched.RemoveMember(m.ID)
	}
}
