package node

import (
	"context"
	"net/netip"
	"time"

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
// can never receive them. While the node runs, routineCut does it within
// cutCoalesce (the peer is already out of the device, so no packet flows
// meanwhile); before that, or when its queue is full, it is done here.
func (n *Node) cutMembers(ms []members.Member) {
	ps := prefixesOf(ms)
	if len(ps) == 0 {
		return
	}
	if n.cutting.Load() {
		select {
		case n.cutCh <- ps:
			return
		default:
		}
	}
	n.cut(ps)
}

// cutCoalesce is how long routineCut gathers prefixes before one flush: a
// flush dumps the kernel's whole conntrack table, so a churn of many small
// changes must not cost one dump each.
const cutCoalesce = 500 * time.Millisecond

// routineCut flushes the prefixes cutMembers queues, coalescing those that
// arrive within cutCoalesce, until ctx ends (then it flushes what is left).
func (n *Node) routineCut(ctx context.Context) {
	n.cutting.Store(true)
	defer n.cutting.Store(false)
	for {
		var ps []netip.Prefix
		select {
		case <-ctx.Done():
			for {
				select {
				case more := <-n.cutCh:
					ps = append(ps, more...)
				default:
					if len(ps) > 0 {
						n.cut(ps)
					}
					return
				}
			}
		case ps = <-n.cutCh:
		}
		t := time.NewTimer(cutCoalesce)
	gather:
		for {
			select {
			case more := <-n.cutCh:
				ps = append(ps, more...)
			case <-t.C:
				break gather
			case <-ctx.Done():
				t.Stop()
				break gather
			}
		}
		n.cut(ps)
	}
}

// prefixesOf is the members' /32s and /128s.
func prefixesOf(ms []members.Member) []netip.Prefix {
	var ps []netip.Prefix
	for _, m := range ms {
		ps = append(ps, m.Prefixes()...)
	}
	return ps
}

// cut flushes the conntrack entries whose original source is in ps, now.
func (n *Node) cut(ps []netip.Prefix) {
	if len(ps) == 0 {
		return
	}
	cnt, err := n.flushCT(ps...)
	if err != nil {
		n.log.Warn("flush removed members' conntrack entries", "prefixes", len(ps), "err", err)
		return
	}
	n.log.Debug("flushed removed members' conntrack entries", "prefixes", len(ps), "entries", cnt)
}
