package node

/* Metrics wiring (docs/observability.md): the node's parts adapted to the
   metrics source interfaces, handed to package observability, which owns
   the registry, the /metrics server, the load ring and the API's load,
   top and samples views.
*/

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"exitd/control"
	"exitd/dataplane"
	"exitd/keys"
	"exitd/members"
	"exitd/metrics"
	"exitd/nat"
	"exitd/observability"
	"exitd/report"
	"exitd/tuning"
)

// sojournBounds are the scheduler's histogram bucket bounds.
func sojournBounds() []time.Duration {
	b := make([]time.Duration, metrics.SojournBuckets)
	for i := range b {
		b[i] = dataplane.HistogramBound(i)
	}
	return b
}

// memberSource adapts registry, device dump and scheduler to the table.
// peers dumps the device. It must be a fresh dump, never an older cached
// one: the table reads a counter that went down as a reset and would count
// the bytes again.
type memberSource struct {
	n     *Node
	peers func() (map[keys.Key]dataplane.PeerStats, error)
}

// dumpPeers reads every peer's counters from the device (the table calls
// it at most once a second: ≈ 80 ms for 20,000 peers, see
// docs/observability.md).
func (n *Node) dumpPeers() (map[keys.Key]dataplane.PeerStats, error) {
	return n.plane.Dump()
}

var _ metrics.Source = memberSource{}

func dirCounters(d *dataplane.MemberDirStats) metrics.DirCounters {
	c := metrics.DirCounters{
		SentPackets: d.SentPackets, SentBytes: d.SentBytes,
		OverflowDrops: d.OverflowDrops, CoDelDrops: d.CoDelDrops, CEMarks: d.CEMarks,
		QueuedBytes: d.QueuedBytes, QueuedPackets: d.QueuedPackets,
	}
	copy(c.Sojourn[:], d.Sojourn[:])
	return c
}

func allowedIPs(m *members.Member) string {
	var parts []string
	for _, p := range m.Prefixes() {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}

// ForEachMember yields every registry member with its session (the cached
// device dump shared with status and list) and scheduler counters.
func (s memberSource) ForEachMember(fn func(*metrics.MemberCounters)) error {
	n := s.n
	peers, err := s.peers()
	if err != nil {
		return err
	}
	ms := n.reg.List()
	var c metrics.MemberCounters
	fill := func(m *members.Member) {
		c = metrics.MemberCounters{ID: m.ID, Label: m.Label, PublicKey: m.PublicKey.String(), AllowedIPs: allowedIPs(m)}
		if p, ok := peers[m.PublicKey]; ok {
			c.RxBytes, c.TxBytes, c.LastHandshake = p.RxBytes, p.TxBytes, p.LastHandshake
		}
	}
	done := make(map[uint32]bool, len(ms))
	if n.plane != nil {
		byID := make(map[uint32]*members.Member, len(ms))
		for i := range ms {
			byID[ms[i].ID] = &ms[i]
		}
		n.plane.ForEachSchedMember(func(id uint32, st dataplane.MemberSchedStats) {
			m, ok := byID[id]
			if !ok {
				return // the unknown class, or a member removed meanwhile
			}
			fill(m)
			c.Down, c.Up = dirCounters(&st.Down), dirCounters(&st.Up)
			done[id] = true
			fn(&c)
		})
	}
	for i := range ms {
		if !done[ms[i].ID] {
			fill(&ms[i])
			fn(&c)
		}
	}
	return nil
}

// schedSource, natSource and kernelSource adapt the parts to the collectors.
type schedSource struct{ n *Node }
type natSource struct{ n *Node }
type kernelSource struct{ n *Node }

func schedDir(d dataplane.SchedDirStats) metrics.SchedDir {
	return metrics.SchedDir{
		ActiveMembers: d.ActiveMembers, ActiveFlows: d.ActiveFlows,
		QueuedBytes: d.QueuedBytes, QueuedPackets: d.QueuedPackets,
		LimitBytes: d.LimitBytes, LimitPackets: d.LimitPackets,
		SentPackets: d.SentPackets, SentBytes: d.SentBytes,
		OverflowDrops: d.OverflowDrops, CoDelDrops: d.CoDelDrops, CEMarks: d.CEMarks,
	}
}

func (s schedSource) SchedStats() (metrics.SchedStats, bool) {
	if s.n.plane == nil {
		return metrics.SchedStats{}, false
	}
	st := s.n.plane.SchedStats()
	return metrics.SchedStats{
		Discipline: st.Discipline, Members: st.Members,
		Down: schedDir(st.Down), Up: schedDir(st.Up),
		EgressRate: st.EgressRate, IngressRate: st.IngressRate, EgressSource: s.egressSource(),
		InflightBytes: st.InflightBytes, InflightLimit: st.InflightLimit,
		InnerReadErrors: st.InnerReadErrors, InnerWriteErrors: st.InnerWriteErrors,
		OversizeDrops: st.OversizeDrops,
	}, true
}

func (s schedSource) egressSource() string {
	_, src := egressRate(s.n.config(), s.n.linkSpeed)
	return src
}

// natReason maps a ruleset counter name to its metric reason.
func natReason(counter string) string {
	switch counter {
	case nat.CounterSpoofDrop:
		return "spoof"
	case nat.CounterLeakDrop:
		return "leak"
	case nat.CounterMemberIsolationDrop:
		return "isolation"
	case nat.CounterGatewayInputDrop:
		return "input"
	case nat.CounterForwardPolicyDrop:
		return "forward_policy"
	case nat.CounterConnQuotaDrop:
		return "conn_quota"
	case nat.CounterConnRateDrop:
		return "conn_rate"
	}
	return counter
}

var errNoNAT = errors.New("no nftables manager")

func (s natSource) NATDrops() (map[string]metrics.NATCounter, error) {
	if s.n.nat == nil {
		return nil, errNoNAT
	}
	cs, err := s.n.nat.Counters()
	if err != nil {
		return nil, err
	}
	out := make(map[string]metrics.NATCounter, len(cs))
	for name, c := range cs {
		out[natReason(name)] = metrics.NATCounter{Packets: c.Packets, Bytes: c.Bytes}
	}
	return out, nil
}

func (s natSource) NATRestorations() uint64 {
	if s.n.nat == nil {
		return 0
	}
	return s.n.nat.Restorations()
}

func (s natSource) NATPresent() (bool, error) {
	if s.n.nat == nil {
		return false, errNoNAT
	}
	return s.n.nat.Present()
}

func (s kernelSource) KernelProfile() (metrics.KernelProfile, bool) {
	if s.n.kernel == nil {
		return metrics.KernelProfile{}, false
	}
	r := s.n.kernel.Latest()
	if r == nil {
		return metrics.KernelProfile{}, false
	}
	return kernelProfile(r), true
}

func kernelProfile(r *tuning.Report) metrics.KernelProfile {
	p := metrics.KernelProfile{At: r.At, Keys: map[string]int{}, CriticalFailures: len(r.CriticalFailures())}
	for _, res := range r.Results {
		p.Keys[string(res.Status)]++
	}
	for _, f := range r.Failures() {
		p.Drift = append(p.Drift, fmt.Sprintf("%s=%s (want %s, %s)", f.Key, f.InForce, f.Wanted, f.Status))
	}
	return p
}

// sources are the node's parts as the collectors read them.
func (n *Node) sources() observability.Sources {
	return observability.Sources{
		Members: memberSource{n, n.dumpPeers}, Sched: schedSource{n}, NAT: natSource{n},
		Kernel: kernelSource{n}, DNS: dnsSource{n}, SOCKS: socksSource{n}, Conntrack: conntrackSource{n}, Cluster: clusterSource{n},
	}
}

// conntrackSource is members' share of the conntrack table (cached,
// connstate.go).
type conntrackSource struct{ n *Node }

func (s conntrackSource) MemberConns() ([]metrics.MemberConns, int) {
	n := s.n
	if n.nat == nil {
		return nil, 0
	}
	counts, drops, _ := n.connView()
	var out []metrics.MemberConns
	for _, m := range n.reg.List() {
		if c, q, r := memberConns(m, counts, drops); c > 0 || q > 0 || r > 0 {
			out = append(out, metrics.MemberConns{Label: m.Label, PublicKey: m.PublicKey.String(), Conns: c, QuotaDrops: q, RateDrops: r})
		}
	}
	n.mu.Lock()
	quota := n.natApplied.Limits.Quota
	n.mu.Unlock()
	return out, quota
}

// observabilityOptions maps the config onto the observability's options.
func (n *Node) observabilityOptions() observability.Options {
	cfg := n.config()
	every := n.sampleEvery // the hidden --sample-interval flag wins (lab tests)
	if every <= 0 {
		every = cfg.Metrics.SampleInterval.Duration
	}
	return observability.Options{
		Logger: n.log, Now: n.now, Version: n.version, TUN: cfg.Tunnel.Name, WAN: cfg.WAN.Interface,
		StateDir: cfg.StateDir, Listen: cfg.Metrics.Listen, Every: every, SojournBounds: sojournBounds(),
		MemberSlots: observability.MemberSlots(cfg.Tunnel.Prefix4, cfg.Tunnel.Prefix6),
	}
}

// startMetrics opens the load ring and serves /metrics. An explicit
// [metrics] listen that cannot be bound fails the start; the default
// loopback address only warns (another exporter may hold port 9586).
func (n *Node) startMetrics() (func(), error) {
	o, err := observability.Open(n.sources(), n.observabilityOptions())
	if err != nil {
		return nil, err
	}
	n.obs = o
	return o.Close, nil
}

// startSampler runs the load report's sampler until ctx ends.
func (n *Node) startSampler(ctx context.Context, wg *sync.WaitGroup) {
	if n.obs == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.obs.Run(ctx)
	}()
}

var _ control.MetricsBackend = backend{}

var errNoMetrics = errors.New("metrics are not set up")

// Load is GET /v1/load.
func (b backend) Load(context.Context) (control.Load, error) {
	if b.n.obs == nil {
		return control.Load{}, errNoMetrics
	}
	return b.n.obs.Load()
}

// Top is GET /v1/top.
func (b backend) Top(_ context.Context, k int, sort string) (control.Top, error) {
	if b.n.obs == nil {
		return control.Top{}, errNoMetrics
	}
	t, err := b.n.obs.Top(k, sort)
	if err != nil {
		return t, err
	}
	counts, drops, _ := b.n.connView()
	for i, tm := range t.Members {
		if m, err := b.n.reg.Get(tm.PublicKey); err == nil {
			c, q, r := memberConns(m, counts, drops)
			t.Members[i].Conns, t.Members[i].ConnDrops = c, q+r
		}
	}
	return t, nil
}

// Samples is GET /v1/samples.
func (b backend) Samples(_ context.Context, since time.Time) ([]report.Sample, error) {
	if b.n.obs == nil {
		return nil, errNoMetrics
	}
	return b.n.obs.Samples(since), nil
}
