package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"time"

	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/tunnel"
	"exitd/tuning"
)

// backend is the control API's view of the node.
type backend struct{ n *Node }

var _ control.Backend = backend{}

// connectedWithin: a member whose last handshake is younger than this has a
// live session (WireGuard rekeys every 2 minutes while traffic flows).
const connectedWithin = 3 * time.Minute

func (b backend) AddMember(_ context.Context, req control.AddMemberRequest) (control.Member, error) {
	n := b.n
	ar := members.AddRequest{Label: req.Label, Weight: req.Weight}
	if req.PublicKey != "" {
		k, err := keys.Parse(req.PublicKey)
		if err != nil {
			return control.Member{}, fmt.Errorf("%w: %v", members.ErrInvalidKey, err)
		}
		ar.PublicKey = &k
	}
	if req.IPv4 != "" {
		a, err := netip.ParseAddr(req.IPv4)
		if err != nil {
			return control.Member{}, &control.APIError{Code: control.CodeInvalidRequest, Message: fmt.Sprintf("ipv4 %q is not an address", req.IPv4)}
		}
		ar.IPv4 = a
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	m, err := n.reg.Add(ar)
	if err != nil {
		return control.Member{}, err
	}
	n.schedUpsert(m)
	if err := n.tun.AddPeers([]tunnel.Peer{peerOf(m)}); err != nil {
		n.schedRemove(m)
		if _, rerr := n.reg.Remove(m.Label); rerr != nil {
			n.log.Error("rollback of member add failed", "label", m.Label, "err", rerr)
		}
		return control.Member{}, err
	}
	n.log.Info("member added", "label", m.Label, "ipv4", m.IPv4, "ipv6", m.IPv6)
	cm := n.view(m, nil)
	cm.Config = members.ClientConfig(m, n.nodeInfo())
	return cm, nil
}

func (b backend) RemoveMember(_ context.Context, ref string) (control.Member, error) {
	n := b.n
	n.mu.Lock()
	defer n.mu.Unlock()
	m, err := n.reg.Remove(ref)
	if err != nil {
		return control.Member{}, err
	}
	if err := n.tun.RemovePeers(m.PublicKey); err != nil {
		n.log.Error("member removed from registry but not from device; restart reconciles", "label", m.Label, "err", err)
	}
	n.schedRemove(m)
	n.log.Info("member removed", "label", m.Label)
	return n.view(m, nil), nil
}

func (b backend) Members(context.Context) ([]control.Member, error) {
	n := b.n
	stats := n.peerStats()
	ms := n.reg.List()
	out := make([]control.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, n.view(m, stats))
	}
	return out, nil
}

func (b backend) Member(_ context.Context, ref string) (control.Member, error) {
	n := b.n
	m, err := n.reg.Get(ref)
	if err != nil {
		return control.Member{}, err
	}
	cm := n.view(m, n.peerStats())
	if m.PrivateKey != nil {
		cm.Config = members.ClientConfig(m, n.nodeInfo())
	}
	return cm, nil
}

func (b backend) Status(context.Context) (control.Status, error) {
	n := b.n
	stats := n.peerStats()
	s := control.Status{
		Version: n.version, Started: n.started, PublicKey: n.priv.Public().String(),
		Endpoint: n.cfg.PublicEndpoint, ListenPort: n.cfg.Listen.Port, Tunnel: n.cfg.Tunnel.Name,
		MembersTotal: n.reg.Len(),
	}
	now := n.now()
	for _, ps := range stats {
		s.RxBytes += ps.RxBytes
		s.TxBytes += ps.TxBytes
		if !ps.LastHandshake.IsZero() && now.Sub(ps.LastHandshake) < connectedWithin {
			s.MembersConnected++
		}
	}
	if ok, err := n.nat.Present(); err == nil {
		s.NATPresent = ok
	}
	if cs, err := n.nat.Counters(); err == nil {
		s.Drops = map[string]uint64{}
		for name, c := range cs {
			s.Drops[name] = c.Packets
		}
	}
	if n.kernel != nil {
		if r := n.kernel.Latest(); r != nil {
			s.Warnings = append(s.Warnings, kernelWarnings(r.CriticalFailures())...)
		}
	}
	if n.cfg.PublicEndpoint == "" {
		s.Warnings = append(s.Warnings, "public_endpoint is not set: client configs have no usable Endpoint")
	}
	return s, nil
}

func (n *Node) peerStats() map[keys.Key]tunnel.PeerStats {
	st, err := n.tun.Stats()
	if err != nil {
		n.log.Warn("read peer stats", "err", err)
		return nil
	}
	out := make(map[keys.Key]tunnel.PeerStats, len(st))
	for _, s := range st {
		out[s.PublicKey] = s
	}
	return out
}

func (n *Node) view(m members.Member, stats map[keys.Key]tunnel.PeerStats) control.Member {
	cm := control.Member{
		ID: m.ID, Label: m.Label, PublicKey: m.PublicKey.String(), IPv4: m.IPv4, IPv6: m.IPv6,
		Created: m.Created, Weight: m.Weight, Disabled: m.Disabled,
	}
	if ps, ok := stats[m.PublicKey]; ok {
		cm.LastHandshake, cm.Endpoint, cm.RxBytes, cm.TxBytes = ps.LastHandshake, ps.Endpoint, ps.RxBytes, ps.TxBytes
	}
	return cm
}

func (n *Node) nodeInfo() members.Node {
	ep := n.cfg.PublicEndpoint
	if ep == "" {
		ep = "<set public_endpoint in exitd.toml>:" + strconv.Itoa(n.cfg.Listen.Port)
	}
	return members.Node{PublicKey: n.priv.Public(), Endpoint: ep, MTU: n.cfg.Tunnel.MTU}
}

// allowPeers admits root, the daemon's own user, and members of group.
func allowPeers(group string) func(control.Peer) bool {
	gid := lookupGroup(group)
	self := uint32(os.Geteuid())
	return func(p control.Peer) bool {
		if p.UID == 0 || p.UID == self || (gid >= 0 && p.GID == uint32(gid)) {
			return true
		}
		if gid < 0 {
			return false
		}
		u, err := user.LookupId(strconv.Itoa(int(p.UID)))
		if err != nil {
			return false
		}
		gids, err := u.GroupIds()
		return err == nil && slices.Contains(gids, strconv.Itoa(gid))
	}
}

// lookupGroup returns the gid of name, or -1 when there is no such group.
func lookupGroup(name string) int {
	if name == "" {
		return -1
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return id
}

// kernelWarnings turns safety-critical kernel drift into at most three
// lines an operator can act on.
func kernelWarnings(fails []tuning.Result) []string {
	var out []string
	for i, f := range fails {
		if i == 2 && len(fails) > 3 {
			out = append(out, fmt.Sprintf("kernel: %d more safety-critical keys not in force; see `exitd tune check`", len(fails)-2))
			break
		}
		out = append(out, fmt.Sprintf("kernel: %s is %q, want %q (%s); run `exitd tune apply`", f.Key, f.InForce, f.Wanted, f.Status))
	}
	return out
}
