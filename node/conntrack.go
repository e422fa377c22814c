package node

import (
	"net/netip"

	"exitd/members"
)

// flushConntrack deletes conntrack entries of member flows, so that after
// our table is gone established flows cannot leave un-NATed.
func (n *Node) flushConntrack() {
	cnt, err := n.flushCT(n.config().Tunnel.Prefixes()...)
	if err != nil {
		n.log.Warn("flush member conntrack entries", "err", err)
		return
	}
	n.log.Info("flushed member conntrack entries", "entries", cnt)
}

// cutMembers deletes the conntrack entries of the members' flows (both
// families), so a removed or disabled member's established flows stop now
// rather than at the 5-day TCP timeout, and a later owner of the address
// can never receive them.
func (n *Node) cutMembers(ms []members.Member) {
	var ps []netip.Prefix
	for _, m := range ms {
		ps = append(ps, m.Prefixes()...)
	}
	if len(ps) == 0 {
		return
	}
	cnt, err := n.flushCT(ps...)
	if err != nil {
		n.log.Warn("flush removed members' conntrack entries", "members", len(ms), "err", err)
		return
	}
	n.log.Debug("flushed removed members' conntrack entries", "members", len(ms), "entries", cnt)
}
