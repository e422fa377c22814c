package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"exitd/control"
	"exitd/dataplane"
	"exitd/keys"
	"exitd/members"
	"exitd/tuning"
)

// backend is the control API's view of the node.
type backend struct{ n *Node }

var _ control.Backend = backend{}

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
// enabled ones into the data plane in one transaction. If the plane
// refuses, the registry change is undone; if the daemon dies in between,
// the start-up reconcile adds them.
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
	var reused []members.Member
	for _, m := range ms {
		if m.ReusedAddress {
			reused = append(reused, m)
		}
	}
	// A reused address starts with no tracked flows: flushed now, before
	// the member is in the device (never later, when its own flows exist).
	n.cut(prefixesOf(reused))
	if err := n.plane.Add(ms); err != nil {
		refs := make([]string, len(ms))
		for i, m := range ms {
			refs[i] = m.PublicKey.String()
		}
		if _, rerr := n.reg.RemoveBatch(refs); rerr != nil {
			n.log.Error("rollback of member add: registry; restart reconciles", "err", rerr)
		}
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
		out[i] = n.view(m, dataplane.Sample{})
		if req.Configs {
			out[i].Config = members.ClientConfig(m, node)
		}
	}
	return out, nil
}

// RemoveMembers takes the members out of the data plane first — their
// sessions end at once, nobody else's is touched — and then commits the
// removal. If the plane cannot remove them the request fails and the
// registry is unchanged; if the registry then fails, they are put back.
func (b backend) RemoveMembers(_ context.Context, refs []string) ([]control.Member, error) {
	n := b.n
	n.mu.Lock()
	defer n.mu.Unlock()
	ms := make([]members.Member, 0, len(refs))
	seen := make(map[keys.Key]bool, len(refs))
	for _, ref := range refs {
		m, err := n.reg.Get(ref)
		if err != nil {
			return nil, err
		}
		// The registry refuses a member named twice: refuse it before the
		// device, whose removal would end the member's session for nothing.
		if seen[m.PublicKey] {
			return nil, fmt.Errorf("%w: %q appears twice in the request", members.ErrDuplicate, m.Label)
		}
		seen[m.PublicKey] = true
		ms = append(ms, m)
	}
	if err := n.plane.Remove(ms); err != nil {
		return nil, fmt.Errorf("%w: %v; no member was removed", control.ErrConflict, err)
	}
	removed, err := n.reg.RemoveBatch(refs)
	if err != nil {
		if aerr := n.plane.Add(ms); aerr != nil {
			n.log.Error("members back in the registry but not in the device; restart reconciles", "err", aerr)
		}
		return nil, err
	}
	n.cutMembers(removed)
	for _, m := range removed {
		n.forgetForwards(m.PublicKey.String())
	}
	if slices.ContainsFunc(removed, func(m members.Member) bool { return m.MaxConns != 0 }) {
		if err := n.applyRuleset(); err != nil { // their own quotas go with them
			n.log.Error("re-apply ruleset after removing members with their own quotas; the next reload retries", "err", err)
		}
	}
	out := make([]control.Member, len(removed))
	for i, m := range removed {
		out[i] = n.view(m, dataplane.Sample{})
	}
	if len(removed) == 1 {
		n.log.Info("member removed", "label", removed[0].Label)
	} else {
		n.log.Info("members removed", "count", len(removed))
	}
	return out, nil
}

// UpdateMember commits a policy change, then applies it to the data plane:
// disabling takes the peer out of the device (keeping entry and
// addresses), enabling puts it back, weight and caps go to the scheduler.
// If the plane refuses, the registry change is undone.
func (b backend) UpdateMember(_ context.Context, ref string, req control.UpdateMemberRequest) (control.Member, error) {
	n := b.n
	n.mu.Lock()
	defer n.mu.Unlock()
	before, after, err := n.reg.Update(ref, members.Change{
		Weight: req.Weight, EgressLimit: req.EgressLimit, IngressLimit: req.IngressLimit, MaxConns: req.MaxConns, Disabled: req.Disabled,
	})
	if err != nil {
		return control.Member{}, err
	}
	undo := func() {
		c := members.Change{Weight: &before.Weight, EgressLimit: &before.EgressLimit, IngressLimit: &before.IngressLimit,
			MaxConns: &before.MaxConns, Disabled: &before.Disabled}
		if _, _, uerr := n.reg.Update(ref, c); uerr != nil {
			n.log.Error("undo of member update failed; restart reconciles", "label", after.Label, "err", uerr)
		}
	}
	if err := n.plane.Update(before, after); err != nil {
		undo()
		return control.Member{}, fmt.Errorf("%w: device refused the change: %v", control.ErrConflict, err)
	}
	if before.MaxConns != after.MaxConns {
		if err := n.applyRuleset(); err != nil {
			undo()
			if perr := n.plane.Update(after, before); perr != nil {
				n.log.Error("undo of member update in the device failed; restart reconciles", "label", after.Label, "err", perr)
			}
			return control.Member{}, fmt.Errorf("%w: the ruleset refused the quota: %v", control.ErrConflict, err)
		}
	}
	if after.Disabled && !before.Disabled {
		n.cutMembers([]members.Member{after})
		n.forgetForwards(after.PublicKey.String())
	}
	n.log.Info("member updated", "label", after.Label, "weight", after.Weight, "disabled", after.Disabled,
		"egress_limit", after.EgressLimit, "ingress_limit", after.IngressLimit, "max_conns", after.MaxConns)
	// No session figures: a device dump costs ~60 ms at 20,000 peers for
	// every change (GET the member for them).
	return n.view(after, dataplane.Sample{}), nil
}

func (b backend) Members(_ context.Context, q control.ListQuery) ([]control.Member, int, error) {
	n := b.n
	var stats dataplane.Sample
	if !q.NoStats {
		stats = n.plane.Sample()
	}
	ms := n.reg.List()
	out := make([]control.Member, len(ms))
	for i, m := range ms {
		out[i] = n.view(m, stats)
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
	cm := n.view(m, n.plane.Sample())
	if m.PrivateKey != nil {
		cm.Config = members.ClientConfig(m, n.nodeInfo())
	}
	return cm, nil
}

func (b backend) Status(context.Context) (control.Status, error) {
	n := b.n
	cfg := n.config()
	s := control.Status{
		Version: n.version, Started: n.started, PublicKey: n.priv.Public().String(),
		Endpoint: cfg.PublicEndpoint, ListenPort: cfg.Listen.Port, Tunnel: cfg.Tunnel.Name,
		MembersTotal: n.reg.Len(),
	}
	now := n.now()
	for _, ps := range n.plane.Sample().Cur {
		s.RxBytes += ps.RxBytes
		s.TxBytes += ps.TxBytes
		if control.Connected(ps.LastHandshake, now) {
			s.MembersConnected++
		}
	}
	if ok, err := n.nat.Present(); err == nil {
		s.NATPresent = ok
	}
	s.NATMode = n.nat.Mode()
	s.DNS, s.SOCKS = n.dnsStatus(), n.socksStatus()
	s.Conntrack = n.conntrackStatus()
	s.PortForward = n.portForwardStatus()
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
	if r := n.nat.Restorations(); r > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("nftables: exitd's table was deleted or edited by someone else and restored %d times since start; find who (journalctl, firewalld, nft scripts)", r))
	}
	if _, src := egressRate(cfg, n.linkSpeed); egressWarning(src, cfg.WAN.Interface) != "" {
		s.Warnings = append(s.Warnings, egressWarning(src, cfg.WAN.Interface))
	}
	if n.store != nil && !n.cluster.up.Load() {
		s.Warnings = append(s.Warnings, "cluster: etcd ("+strings.Join(cfg.Cluster.Endpoints, ", ")+") is unreachable: members keep working from the local cache; adding, removing and changing members is refused until it is back (exitctl cluster status)")
	}
	if cfg.PublicEndpoint == "" {
		s.Warnings = append(s.Warnings, "public_endpoint is not set: client configs have no usable Endpoint")
	}
	return s, nil
}

// view is the API's member: registry entry, session and rates (bits/s)
// from the sample s (zero: no session figures).
func (n *Node) view(m members.Member, s dataplane.Sample) control.Member {
	cm := control.Member{
		ID: m.ID, Label: m.Label, PublicKey: m.PublicKey.String(), IPv4: m.IPv4, IPv6: m.IPv6,
		Created: m.Created, Weight: m.Weight, Disabled: m.Disabled, MaxConns: m.MaxConns,
		EgressLimit: m.EgressLimit, IngressLimit: m.IngressLimit,
		// The discipline alone decides; schedConfig would read the WAN's
		// link speed for every member listed.
		LimitsEnforced: dataplane.LimitsEnforced(dataplane.SchedConfig{Discipline: n.config().Scheduler.Discipline}),
		KeyKept:        m.PrivateKey != nil,
	}
	if ps, ok := s.Cur[m.PublicKey]; ok {
		cm.LastHandshake, cm.Endpoint, cm.RxBytes, cm.TxBytes = ps.LastHandshake, ps.Endpoint, ps.RxBytes, ps.TxBytes
	}
	cm.RxRate, cm.TxRate = s.Rates(m.PublicKey)
	return cm
}

func (n *Node) nodeInfo() members.Node {
	cfg := n.config()
	ep := cfg.PublicEndpoint
	if ep == "" {
		ep = "<set public_endpoint in exitd.toml>:" + strconv.Itoa(cfg.Listen.Port)
	}
	node := members.Node{PublicKey: n.priv.Public(), Endpoint: ep, MTU: cfg.Tunnel.MTU}
	if cfg.DNS.On() {
		node.DNS = gateways(cfg) // the resolver inside the tunnel: names never leak
	}
	return node
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
