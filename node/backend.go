package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"time"

	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/tuning"
	"exitd/tunnel"
)

// backend is the control API's view of the node.
type backend struct{ n *Node }

var _ control.Backend = backend{}

// connectedWithin: a member whose last handshake is younger than this has a
// live session.
const connectedWithin = control.ConnectedWithin

// addRequest maps an API add onto the registry's; self is the node's own
// public key, which no member may have.
func addRequest(req control.AddMemberRequest, self keys.Key) (members.AddRequest, error) {
	ar := members.AddRequest{
		Label: req.Label, Weight: req.Weight, Fallback: req.AddressFallback,
		EgressLimit: req.EgressLimit, IngressLimit: req.IngressLimit, Disabled: req.Disabled,
	}
	if req.PublicKey != "" {
		k, err := keys.Parse(req.PublicKey)
		if err != nil {
			return ar, fmt.Errorf("%w: member %q: %v", members.ErrInvalidKey, req.Label, err)
		}
		if k == self {
			return ar, fmt.Errorf("%w: member %q: that is the node's own public key", control.ErrConflict, req.Label)
		}
		ar.PublicKey = &k
	}
	for _, f := range []struct {
		name, s string
		dst     *netip.Addr
		v4      bool
	}{{"ipv4", req.IPv4, &ar.IPv4, true}, {"ipv6", req.IPv6, &ar.IPv6, false}} {
		if f.s == "" {
			continue
		}
		a, err := netip.ParseAddr(f.s)
		if err != nil || a.Is4() != f.v4 || a.Zone() != "" {
			return ar, &control.APIError{Code: control.CodeInvalidRequest, Message: fmt.Sprintf("member %q: %s %q is not an %s address", req.Label, f.name, f.s, f.name)}
		}
		*f.dst = a
	}
	return ar, nil
}

// AddMembers commits the members to the registry first, then puts the
// enabled ones into the scheduler and the device in one UAPI set. If the
// device refuses, the registry change is undone; if the daemon dies in
// between, the start-up reconcile (syncPeers) adds them.
func (b backend) AddMembers(_ context.Context, req control.AddMembersRequest) ([]control.Member, error) {
	n := b.n
	ars := make([]members.AddRequest, len(req.Members))
	self := n.priv.Public()
	for i, r := range req.Members {
		ar, err := addRequest(r, self)
		if err != nil {
			return nil, err
		}
		ars[i] = ar
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	ms, err := n.reg.AddBatch(ars)
	if err != nil {
		return nil, err
	}
	var peers []tunnel.Peer
	for _, m := range ms {
		if !m.Disabled {
			n.schedUpsert(m)
			peers = append(peers, peerOf(m))
		}
	}
	if err := n.tun.AddPeers(peers); err != nil {
		n.undoAddLocked(ms)
		return nil, err
	}
	if len(ms) == 1 {
		n.log.Info("member added", "label", ms[0].Label, "ipv4", ms[0].IPv4, "ipv6", ms[0].IPv6, "disabled", ms[0].Disabled)
	} else {
		n.log.Info("members added", "count", len(ms), "first", ms[0].Label, "last", ms[len(ms)-1].Label)
	}
	out := make([]control.Member, len(ms))
	node := n.nodeInfo()
	for i, m := range ms {
		out[i] = n.view(m, nil)
		if req.Configs {
			out[i].Config = members.ClientConfig(m, node)
		}
	}
	return out, nil
}

// undoAddLocked takes members whose device update failed back out of the
// device, scheduler and registry.
func (n *Node) undoAddLocked(ms []members.Member) {
	pubs := make([]keys.Key, 0, len(ms))
	refs := make([]string, 0, len(ms))
	for _, m := range ms {
		if !m.Disabled {
			pubs = append(pubs, m.PublicKey)
			n.schedRemove(m)
		}
		refs = append(refs, m.PublicKey.String())
	}
	if err := n.tun.RemovePeers(pubs...); err != nil {
		n.log.Error("rollback of member add: device", "err", err)
	}
	if _, err := n.reg.RemoveBatch(refs); err != nil {
		n.log.Error("rollback of member add: registry; restart reconciles", "err", err)
	}
}

// RemoveMembers commits the removal, then takes the peers out of the device:
// their sessions end at once, nobody else's is touched.
func (b backend) RemoveMembers(_ context.Context, refs []string) ([]control.Member, error) {
	n := b.n
	n.mu.Lock()
	defer n.mu.Unlock()
	ms, err := n.reg.RemoveBatch(refs)
	if err != nil {
		return nil, err
	}
	pubs := make([]keys.Key, 0, len(ms))
	for _, m := range ms {
		if !m.Disabled {
			pubs = append(pubs, m.PublicKey)
		}
	}
	if err := n.tun.RemovePeers(pubs...); err != nil {
		n.log.Error("members removed from registry but not from device; restart reconciles", "count", len(ms), "err", err)
	}
	out := make([]control.Member, len(ms))
	for i, m := range ms {
		n.schedRemove(m)
		out[i] = n.view(m, nil)
	}
	if len(ms) == 1 {
		n.log.Info("member removed", "label", ms[0].Label)
	} else {
		n.log.Info("members removed", "count", len(ms))
	}
	return out, nil
}

// UpdateMember commits a policy change, then applies it: disabling takes the
// peer out of the device (keeping entry and addresses), enabling puts it
// back, weight goes to the scheduler. If the device refuses, the registry
// change is undone.
func (b backend) UpdateMember(_ context.Context, ref string, req control.UpdateMemberRequest) (control.Member, error) {
	n := b.n
	n.mu.Lock()
	defer n.mu.Unlock()
	before, after, err := n.reg.Update(ref, members.Change{
		Weight: req.Weight, EgressLimit: req.EgressLimit, IngressLimit: req.IngressLimit, Disabled: req.Disabled,
	})
	if err != nil {
		return control.Member{}, err
	}
	if err := n.applyLocked(before, after); err != nil {
		undo := members.Change{Weight: &before.Weight, EgressLimit: &before.EgressLimit, IngressLimit: &before.IngressLimit, Disabled: &before.Disabled}
		if _, _, uerr := n.reg.Update(ref, undo); uerr != nil {
			n.log.Error("undo of member update failed; restart reconciles", "label", after.Label, "err", uerr)
		}
		n.applyLocked(after, before)
		return control.Member{}, fmt.Errorf("%w: device refused the change: %v", control.ErrConflict, err)
	}
	n.log.Info("member updated", "label", after.Label, "weight", after.Weight, "disabled", after.Disabled,
		"egress_limit", after.EgressLimit, "ingress_limit", after.IngressLimit)
	return n.view(after, n.peerStats()), nil
}

// applyLocked moves the device and scheduler from member state old to m.
func (n *Node) applyLocked(old, m members.Member) error {
	switch {
	case m.Disabled && !old.Disabled:
		n.schedRemove(m)
		return n.tun.RemovePeers(m.PublicKey)
	case !m.Disabled && old.Disabled:
		n.schedUpsert(m)
		return n.tun.AddPeers([]tunnel.Peer{peerOf(m)})
	case !m.Disabled:
		n.schedUpsert(m) // weight, in place: the queue survives
	}
	return nil
}

func (b backend) Members(_ context.Context, q control.ListQuery) ([]control.Member, int, error) {
	n := b.n
	var stats peerSample
	if !q.NoStats {
		stats = n.stats.sample(n)
	}
	ms := n.reg.List()
	out := make([]control.Member, len(ms))
	for i, m := range ms {
		out[i] = n.viewSample(m, stats)
	}
	page, total := q.Apply(out, n.now())
	return page, total, nil
}

func (b backend) Member(_ context.Context, ref string) (control.Member, error) {
	n := b.n
	m, err := n.reg.Get(ref)
	if err != nil {
		return control.Member{}, err
	}
	cm := n.viewSample(m, n.stats.sample(n))
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

// peerStats is the device's peer state, at most statsMaxAge old.
func (n *Node) peerStats() map[keys.Key]tunnel.PeerStats {
	return n.stats.sample(n).cur
}

// statsMaxAge is how long a device dump serves callers: long enough that
// the service loop's two reads per tick and concurrent requests share one
// dump (20,000 peers cost ~150 ms), short enough that what a command shows
// is current.
const statsMaxAge = 100 * time.Millisecond

// rateWindow is the shortest interval rates are computed over.
const rateWindow = time.Second

// peerSampler keeps the last dump of the device's peers and an older one;
// rates are their difference. Its zero value is ready.
type peerSampler struct {
	mu   sync.Mutex
	last peerSample
}

// peerSample is one dump and an older one.
type peerSample struct {
	at, prevAt time.Time
	cur, prev  map[keys.Key]tunnel.PeerStats
}

func (s *peerSampler) sample(n *Node) peerSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := n.now()
	if !s.last.at.IsZero() && now.Sub(s.last.at) < statsMaxAge {
		return s.last
	}
	st, err := n.tun.Stats()
	if err != nil {
		n.log.Warn("read peer stats", "err", err)
		return s.last
	}
	cur := make(map[keys.Key]tunnel.PeerStats, len(st))
	for _, p := range st {
		cur[p.PublicKey] = p
	}
	// The older dump moves up to the last one when that is at least
	// rateWindow old, or when the older one is stale: rates then span
	// 1-3 windows whoever samples how often.
	next := peerSample{at: now, prevAt: s.last.prevAt, cur: cur, prev: s.last.prev}
	if s.last.cur != nil && (next.prev == nil || now.Sub(s.last.at) >= rateWindow || now.Sub(s.last.prevAt) > 3*rateWindow) {
		next.prevAt, next.prev = s.last.at, s.last.cur
	}
	s.last = next
	return s.last
}

// rates are bits/s received from and sent to the member between the two
// dumps.
func (p peerSample) rates(k keys.Key) (rx, tx uint64) {
	d := p.at.Sub(p.prevAt).Seconds()
	a, ok1 := p.prev[k]
	b, ok2 := p.cur[k]
	if !ok1 || !ok2 || d <= 0 || b.RxBytes < a.RxBytes || b.TxBytes < a.TxBytes {
		return 0, 0
	}
	return uint64(float64(b.RxBytes-a.RxBytes) * 8 / d), uint64(float64(b.TxBytes-a.TxBytes) * 8 / d)
}

func (n *Node) viewSample(m members.Member, s peerSample) control.Member {
	cm := n.view(m, s.cur)
	cm.RxRate, cm.TxRate = s.rates(m.PublicKey)
	return cm
}

func (n *Node) view(m members.Member, stats map[keys.Key]tunnel.PeerStats) control.Member {
	cm := control.Member{
		ID: m.ID, Label: m.Label, PublicKey: m.PublicKey.String(), IPv4: m.IPv4, IPv6: m.IPv6,
		Created: m.Created, Weight: m.Weight, Disabled: m.Disabled,
		EgressLimit: m.EgressLimit, IngressLimit: m.IngressLimit, LimitsEnforced: n.limitsEnforced(),
	}
	if ps, ok := stats[m.PublicKey]; ok {
		cm.LastHandshake, cm.Endpoint, cm.RxBytes, cm.TxBytes = ps.LastHandshake, ps.Endpoint, ps.RxBytes, ps.TxBytes
	}
	return cm
}

// limitsEnforced reports whether member rate caps are applied: the srr
// scheduler enforces them (a capped member without tokens is passed over in
// its turn); fifo, kept for A/B measurement, ignores them.
func (n *Node) limitsEnforced() bool {
	return n.sched != nil && n.cfg.Scheduler.Discipline != "fifo"
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
