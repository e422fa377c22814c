package dataplane

import (
	"fmt"
	"net/netip"

	"exitd/keys"
	"exitd/members"
	"exitd/tunnel"
)

// peerSet is the device's peer table as the plane changes it;
// *tunnel.Tunnel implements it (tests inject failures).
type peerSet interface {
	// AddPeers adds or updates peers in one transaction.
	AddPeers(peers []tunnel.Peer) error
	// RemovePeers removes peers; their sessions end at once.
	RemovePeers(pubs ...keys.Key) error
	// SyncPeers makes the peer set equal to want.
	SyncPeers(want []tunnel.Peer) error
	// Stats dumps every peer's session state.
	Stats() ([]tunnel.PeerStats, error)
}

var _ peerSet = (*tunnel.Tunnel)(nil)

// peerOf is the device's view of a member.
func peerOf(m members.Member) tunnel.Peer {
	return tunnel.Peer{PublicKey: m.PublicKey, Allowed: m.Prefixes()}
}

func (p *Plane) schedUpsert(m members.Member) {
	p.sched.UpsertMember(m.ID, m.Addrs(), m.Weight)
	p.sched.SetMemberRate(m.ID, m.EgressLimit, m.IngressLimit)
}

// Sync makes the device's peers and the scheduler's members equal to the
// enabled members of ms (the reconcile at start and on reload). Existing
// sessions and queues are kept.
//
// The first Sync after Open (the start) gives each peer its last known
// endpoint in the same transaction: with the TUN handed over, packets for
// a member arrive at once, and a peer without an endpoint then tries a
// handshake to nowhere — which wireguard-go holds against the rejoin's
// initiation for 5 s (a 5.5 s stall across a package upgrade).
func (p *Plane) Sync(ms []members.Member) error {
	var eps map[keys.Key]netip.AddrPort
	if !p.synced && p.cfg.EndpointsPath != "" {
		eps, _ = loadEndpoints(p.cfg.EndpointsPath) // a bad file is reported by Rejoin
	}
	p.synced = true
	var want []tunnel.Peer
	for _, m := range ms {
		if m.Disabled {
			continue
		}
		peer := peerOf(m)
		peer.Endpoint = eps[m.PublicKey]
		want = append(want, peer)
		p.schedUpsert(m)
	}
	if err := p.peers().SyncPeers(want); err != nil {
		return fmt.Errorf("dataplane: sync peers: %w", err)
	}
	return nil
}

// Add puts the enabled members of ms into the scheduler and the device in
// one transaction. If the device refuses, the scheduler entries are taken
// out again: either all of them are in, or none.
func (p *Plane) Add(ms []members.Member) error {
	var peers []tunnel.Peer
	for _, m := range ms {
		if !m.Disabled {
			p.schedUpsert(m)
			peers = append(peers, peerOf(m))
		}
	}
	if err := p.peers().AddPeers(peers); err != nil {
		for _, m := range ms {
			if !m.Disabled {
				p.sched.RemoveMember(m.ID)
			}
		}
		// A partial UAPI set may have added some: take them out again.
		if rerr := p.peers().RemovePeers(enabledKeys(ms)...); rerr != nil {
			p.log.Error("rollback of member add: device", "err", rerr)
		}
		return fmt.Errorf("dataplane: add members: %w", err)
	}
	return nil
}

// Remove takes the members out of the device — their sessions end at once
// — and then out of the scheduler. The device gets a second try; if that
// fails too, the error is returned and the scheduler is unchanged, so the
// caller can leave its registry as it was.
func (p *Plane) Remove(ms []members.Member) error {
	pubs := enabledKeys(ms)
	err := p.peers().RemovePeers(pubs...)
	if err != nil {
		p.log.Warn("remove members from device failed; retrying once", "err", err)
		err = p.peers().RemovePeers(pubs...)
	}
	if err != nil {
		return fmt.Errorf("dataplane: remove members from device: %w", err)
	}
	for _, m := range ms {
		p.sched.RemoveMember(m.ID)
	}
	return nil
}

// Update moves device and scheduler from member state old to m: disabling
// takes the peer out of the device, enabling puts it back, weight and caps
// change in place (the queue survives).
func (p *Plane) Update(old, m members.Member) error {
	switch {
	case m.Disabled && !old.Disabled:
		if err := p.Remove([]members.Member{old}); err != nil {
			return err
		}
	case !m.Disabled && old.Disabled:
		return p.Add([]members.Member{m})
	case !m.Disabled:
		p.schedUpsert(m)
	}
	return nil
}

func enabledKeys(ms []members.Member) []keys.Key {
	pubs := make([]keys.Key, 0, len(ms))
	for _, m := range ms {
		if !m.Disabled {
			pubs = append(pubs, m.PublicKey)
		}
	}
	return pubs
}
