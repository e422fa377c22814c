package node

import (
	"net/netip"

	"exitd/nat"
)

// flushConntrack deletes conntrack entries of member flows, so that after
// our table is gone established flows cannot leave un-NATed.
func (n *Node) flushConntrack() {
	var ps []netip.Prefix
	if p := n.cfg.Tunnel.Prefix4; p.IsValid() {
		ps = append(ps, p)
	}
	if p := n.cfg.Tunnel.Prefix6; p.IsValid() {
		ps = append(ps, p)
	}
	cnt, err := nat.FlushConntrack(0, ps...)
	if err != nil {
		n.log.Warn("flush member conntrack entries", "err", err)
		return
	}
	n.log.Info("flushed member conntrack entries", "entries", cnt)
}
