package node

/* Observability wiring (docs/observability.md):

   start (step "metrics", after control):
     member table over the registry, the cached device dump and the scheduler
     → Prometheus registry (injected, never the global one) with the member,
       scheduler, nftables, host, kernel, build, process and Go collectors
     → HTTP server on [metrics] listen (default 127.0.0.1:9586)
     → load ring state_dir/load.ring (12,000 samples = 50 h at 15 s)
   running: RoutineSampler appends one sample per SampleInterval
   control API: Load, Top, Samples (backend methods below)
   stop: metrics server closed, ring synced and closed
*/

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"exitd/config"
	"exitd/control"
	"exitd/dataplane"
	"exitd/keys"
	"exitd/members"
	"exitd/metrics"
	"exitd/nat"
	"exitd/report"
	"exitd/tuning"
)

// ringFile (in state_dir) is the load report's series.
const ringFile = "load.ring"

// observability is the node's metrics and load-report state.
type observability struct {
	reg     *prometheus.Registry
	table   *metrics.Table
	host    metrics.Host
	ring    *report.Ring
	sampler *report.Sampler
	srv     *metrics.Server
	url     string // of /metrics; "" when not served
	srvErr  error  // why not served
	every   time.Duration
}

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
		EgressRate: st.EgressRate, IngressRate: st.IngressRate,
		InflightBytes: st.InflightBytes, InflightLimit: st.InflightLimit,
		InnerReadErrors: st.InnerReadErrors, InnerWriteErrors: st.InnerWriteErrors,
		OversizeDrops: st.OversizeDrops,
	}, true
}

// natReasons maps the ruleset's counter names to metric reasons.
var natReasons = map[string]string{
	nat.CounterSpoofDrop:           "spoof",
	nat.CounterLeakDrop:            "leak",
	nat.CounterMemberIsolationDrop: "isolation",
	nat.CounterGatewayInputDrop:    "input",
	nat.CounterForwardPolicyDrop:   "forward_policy",
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
		reason, ok := natReasons[name]
		if !ok {
			reason = name
		}
		out[reason] = metrics.NATCounter{Packets: c.Packets, Bytes: c.Bytes}
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
	return p
}

// memberSlots is how many member addresses the prefixes hold (the
// registry's plan: network and gateway excluded, IPv4 broadcast too).
func memberSlots(p4, p6 netip.Prefix) int {
	const maxSlots = 1 << 22
	size := maxSlots
	if p4.IsValid() {
		size = min(size, 1<<(32-p4.Bits())-1)
	}
	if p6.IsValid() {
		if host := 128 - p6.Bits(); host < 22 {
			size = min(size, 1<<host)
		}
	}
	if !p4.IsValid() && !p6.IsValid() {
		return 0
	}
	return max(size-2, 0)
}

// newObservability builds the registry and the table; nothing is served
// or opened yet.
func (n *Node) newObservability(every time.Duration) *observability {
	o := &observability{every: every}
	if o.every <= 0 {
		o.every = report.DefaultInterval
	}
	cfg := n.config()
	o.table = metrics.NewTable(memberSource{n, n.dumpPeers}, metrics.TableOptions{Now: n.now, SojournBounds: sojournBounds()})
	o.host = metrics.Host{TUN: cfg.Tunnel.Name, WAN: cfg.WAN.Interface}
	o.reg = prometheus.NewRegistry()
	o.reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		metrics.NewBuildInfo(n.version),
		metrics.NewMemberCollector(o.table, metrics.MemberOptions{Interface: cfg.Tunnel.Name}),
		metrics.NewSchedCollector(schedSource{n}, o.table, sojournBounds()),
		metrics.NewNATCollector(natSource{n}),
		metrics.NewHostCollector(o.host),
		metrics.NewKernelCollector(kernelSource{n}),
		metrics.NewDNSCollector(dnsSource{n}),
		metrics.NewSOCKSCollector(socksSource{n}),
	)
	return o
}

// startMetrics opens the load ring and serves /metrics. An explicit
// [metrics] listen that cannot be bound fails the start; the default
// loopback address only warns (another exporter may hold port 9586).
func (n *Node) startMetrics() (func(), error) {
	cfg := n.config()
	every := n.sampleEvery // the hidden --sample-interval flag wins (lab tests)
	if every <= 0 {
		every = cfg.Metrics.SampleInterval.Duration
	}
	o := n.newObservability(every)
	ring, err := report.OpenRing(filepath.Join(cfg.StateDir, ringFile), report.DefaultCapacity)
	if err != nil {
		n.log.Warn("load report: cannot open the ring file; keeping samples in memory only", "err", err)
		ring = report.NewMemoryRing(report.DefaultCapacity)
	}
	o.ring = ring
	o.sampler = report.NewSampler(ring, n.reading, n.log)
	addr := cfg.Metrics.Listen
	if addr == config.MetricsOff {
		n.obs = o
		return func() { o.ring.Close() }, nil
	}
	explicit := addr != ""
	if !explicit {
		addr = metrics.DefaultListen
	}
	srv, err := metrics.Listen(addr, o.reg, n.log)
	switch {
	case err == nil:
		o.srv, o.url = srv, "http://"+srv.Addr().String()+"/metrics"
		n.log.Info("serving Prometheus metrics", "url", o.url)
	case explicit:
		ring.Close()
		return nil, err
	default:
		o.srvErr = err
		n.log.Warn("metrics not served; set [metrics] listen to a free address", "err", err)
	}
	n.obs = o
	return func() {
		if o.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			o.srv.Close(ctx)
		}
		if err := o.ring.Close(); err != nil {
			n.log.Warn("load report", "err", err)
		}
	}, nil
}

// startSampler runs RoutineSampler until ctx ends.
func (n *Node) startSampler(ctx context.Context, wg *sync.WaitGroup) {
	if n.obs == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(n.obs.every)
		defer t.Stop()
		n.obs.sampler.Run(ctx, n.now, t.C)
	}()
}

// reading gathers one report.Reading (RoutineSampler only).
func (n *Node) reading(now time.Time) report.Reading {
	o := n.obs
	r := report.Reading{At: now, SojournBounds: sojournBounds(), Conntrack: -1, ConntrackMax: -1}
	if s, err := o.table.Refresh(); err == nil {
		t := s.Totals
		r.BytesIn, r.BytesOut = t.RxBytes, t.TxBytes
		r.OverflowDrops = t.Down.OverflowDrops + t.Up.OverflowDrops
		r.CoDelDrops = t.Down.CoDelDrops + t.Up.CoDelDrops
		r.CEMarks = t.Down.CEMarks + t.Up.CEMarks
		r.Sojourn = t.SojournDown[:]
		r.Configured, r.Active, r.Idle, r.Handshaking = s.Configured, s.Active, s.Idle, s.Handshaking
		for i := range s.Members {
			r.QueueBytes += s.Members[i].QueuedBytes
		}
	}
	if drops, err := (natSource{n}).NATDrops(); err == nil {
		for reason, c := range drops {
			r.NATDrops += c.Packets
			if reason == "leak" {
				r.LeakDrops = c.Packets
			}
		}
	}
	if h, err := o.host.Read(); err == nil || h.WAN.Present {
		r.WANRx, r.WANTx = h.WAN.RxBytes, h.WAN.TxBytes
		r.LinkDrops = h.TUN.RxDropped + h.TUN.TxDropped + h.WAN.RxDropped + h.WAN.TxDropped
		r.UDPRcvErrors = h.UDP4.RcvbufErrors + h.UDP6.RcvbufErrors
		r.Conntrack, r.ConntrackMax = h.Conntrack, h.ConntrackMax
	}
	if p, err := o.host.ReadProc(); err == nil {
		r.CPUBusy, r.CPUTotal, r.ExitdCPU, r.NCPU = p.CPUBusy, p.CPUTotal, p.SelfCPU, p.NCPU
		r.MemTotal, r.MemAvailable, r.SwapTotal, r.SwapFree, r.ExitdRSS = p.MemTotal, p.MemAvailable, p.SwapTotal, p.SwapFree, p.SelfRSS
	}
	cfg := n.config()
	r.MemberSlots = memberSlots(cfg.Tunnel.Prefix4, cfg.Tunnel.Prefix6)
	return r
}

var _ control.MetricsBackend = backend{}

var errNoMetrics = errors.New("metrics are not set up")

// Load is GET /v1/load.
func (b backend) Load(context.Context) (control.Load, error) {
	n := b.n
	o := n.obs
	if o == nil {
		return control.Load{}, errNoMetrics
	}
	s, err := o.table.Snapshot()
	if s == nil {
		return control.Load{}, fmt.Errorf("node: load: %w", err)
	}
	l := control.Load{
		At: s.At, WindowMs: s.Window.Milliseconds(), BytesIn: s.Totals.RxBytes, BytesOut: s.Totals.TxBytes,
		Configured: s.Configured, Active: s.Active, Idle: s.Idle, Handshaking: s.Handshaking, Offline: s.Offline,
		Conntrack: -1, ConntrackMax: -1, MetricsURL: o.url,
	}
	for i := range s.Members {
		l.RateIn += s.Members[i].RxRate
		l.RateOut += s.Members[i].TxRate
	}
	var last report.Sample
	if ss := o.ring.Since(n.now().Add(-2 * o.every)); len(ss) > 0 {
		last = ss[len(ss)-1]
	}
	if st, ok := (schedSource{n}).SchedStats(); ok {
		l.Scheduler = &control.SchedulerLoad{
			Discipline: st.Discipline, EgressRate: st.EgressRate, IngressRate: st.IngressRate,
			QueueBytesDown: st.Down.QueuedBytes, QueueBytesUp: st.Up.QueuedBytes, LimitBytes: st.Down.LimitBytes,
			OverflowDrops: st.Down.OverflowDrops + st.Up.OverflowDrops, CoDelDrops: st.Down.CoDelDrops + st.Up.CoDelDrops,
			CEMarks: st.Down.CEMarks + st.Up.CEMarks, SentBytesDown: st.Down.SentBytes, SentBytesUp: st.Up.SentBytes,
			InflightBytes: st.InflightBytes, SojournP99Ms: float64(last.SojournP99Us) / 1000,
			BackloggedFlows: st.Down.ActiveFlows + st.Up.ActiveFlows,
		}
	}
	if drops, err := (natSource{n}).NATDrops(); err == nil {
		l.NATDrops = map[string]uint64{}
		for reason, c := range drops {
			l.NATDrops[reason] = c.Packets
		}
	}
	if h, err := o.host.Read(); err == nil || h.WAN.Present {
		l.Conntrack, l.ConntrackMax = h.Conntrack, h.ConntrackMax
		l.UDPRcvbuf = h.UDP4.RcvbufErrors + h.UDP6.RcvbufErrors
		l.LinkDrops = map[string]uint64{"tun rx": h.TUN.RxDropped, "tun tx": h.TUN.TxDropped, "wan rx": h.WAN.RxDropped, "wan tx": h.WAN.TxDropped}
	}
	if n.kernel != nil {
		if r := n.kernel.Latest(); r != nil {
			l.KernelKeys = kernelProfile(r).Keys
			l.KernelCritical = len(r.CriticalFailures())
			for _, f := range r.Failures() {
				l.KernelDrift = append(l.KernelDrift, fmt.Sprintf("%s=%s (want %s, %s)", f.Key, f.InForce, f.Wanted, f.Status))
			}
		}
	}
	l.Warnings = loadWarnings(&l, &last, o)
	return l, nil
}

// loadWarnings say what is wrong now and what to do about it.
func loadWarnings(l *control.Load, last *report.Sample, o *observability) []string {
	var w []string
	if l.ConntrackMax > 0 && l.Conntrack*10 >= l.ConntrackMax*9 {
		w = append(w, fmt.Sprintf("conntrack table %d%% full (%d of %d): new flows are dropped when it fills; raise net.netfilter.nf_conntrack_max (`exitd tune apply` sizes it to memory)",
			l.Conntrack*100/l.ConntrackMax, l.Conntrack, l.ConntrackMax))
	}
	if last.IntervalMs > 0 && last.UDPRcvErrors > 0 {
		w = append(w, fmt.Sprintf("UDP receive buffer overruns: %d packets lost in the last %s; raise net.core.rmem_max/rmem_default (kernel profile) or add CPU",
			last.UDPRcvErrors, last.Interval()))
	}
	if last.IntervalMs > 0 && last.LinkDrops > 0 {
		w = append(w, fmt.Sprintf("TUN/WAN interfaces dropped %d packets in the last %s; check `ip -s link` and the NIC's queues (ethtool -S)", last.LinkDrops, last.Interval()))
	}
	if l.Scheduler != nil && l.Scheduler.LimitBytes > 0 && l.Scheduler.QueueBytesDown*10 >= l.Scheduler.LimitBytes*9 {
		w = append(w, "scheduler download queue near its limit: the link is saturated; members see drops (expected under full load; if constant, add capacity or lower [scheduler] egress_rate to the real link rate)")
	}
	if o.srvErr != nil {
		w = append(w, fmt.Sprintf("Prometheus metrics are not served (%v); set [metrics] listen to a free address", o.srvErr))
	}
	return w
}

// topKeys order GET /v1/top.
var topKeys = map[string]func(*metrics.MemberView) float64{
	control.SortRate:  func(v *metrics.MemberView) float64 { return v.Rate() },
	control.SortQueue: func(v *metrics.MemberView) float64 { return float64(v.QueueDelay) + float64(v.QueuedBytes)*1e-9 },
	control.SortDrops: func(v *metrics.MemberView) float64 { return v.DropRate + float64(v.Drops)*1e-9 },
}

// Top is GET /v1/top.
func (b backend) Top(ctx context.Context, k int, sort string) (control.Top, error) {
	l, err := b.Load(ctx)
	if err != nil {
		return control.Top{}, err
	}
	s, _ := b.n.obs.table.Snapshot()
	key, ok := topKeys[sort]
	if !ok {
		return control.Top{}, &control.APIError{Code: control.CodeInvalidRequest, Message: "sort must be rate, queue or drops"}
	}
	t := control.Top{Load: l, Sort: sort, Members: []control.TopMember{}}
	for _, v := range s.Top(k, key) {
		t.Members = append(t.Members, control.TopMember{
			Label: v.Label, PublicKey: v.PublicKey, State: v.State.String(),
			RateIn: v.RxRate, RateOut: v.TxRate, BytesIn: v.RxBytes, BytesOut: v.TxBytes,
			QueueBytes: v.QueuedBytes, QueueDelayMs: float64(v.QueueDelay) / 1e6,
			Drops: v.Drops, DropRate: v.DropRate, LastHandshake: v.LastHandshake,
		})
	}
	return t, nil
}

// Samples is GET /v1/samples.
func (b backend) Samples(_ context.Context, since time.Time) ([]report.Sample, error) {
	if b.n.obs == nil {
		return nil, errNoMetrics
	}
	return b.n.obs.ring.Since(since), nil
}
