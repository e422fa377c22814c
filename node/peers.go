package node

import (
	"net/netip"

	"exitd/members"
	"exitd/tunnel"
)

func peerOf(m members.Member) tunnel.Peer {
	p := tunnel.Peer{PublicKey: m.PublicKey}
	if m.IPv4.IsValid() {
		p.Allowed = append(p.Allowed, netip.PrefixFrom(m.IPv4, 32))
	}
	if m.IPv6.IsValid() {
		p.Allowed = append(p.Allowed, netip.PrefixFrom(m.IPv6, 128))
	}
	return p
}

// startPeers makes the device's peers equal to the registry's enabled
// members (reconcile at start).
func (n *Node) startPeers() (func(), error) {
	return nil, n.syncPeers()
}

func (n *Node) syncPeers() error {
	var want []tunnel.Peer
	for _, m := range n.reg.List() {
		if m.Disabled {
			continue
		}
		want = append(want, peerOf(m))
		n.schedUpsert(m)
	}
	return n.tun.SyncPeers(want)
}
