package node

import (
	"exitd/nat"
)

// flushConntrack deletes conntrack entries of member flows, so that after
// our table is gone established flows cannot leave un-NATed.
func (n *Node) flushConntrack() {
	cnt, err := nat.FlushConntrack(0, n.config().Tunnel.Prefixes()...)
	if err != nil {
		n.log.Warn("flush member conntrack entries", "err", err)
		return
	}
	n.log.Info("flushed member conntrack entries", "entries", cnt)
}
