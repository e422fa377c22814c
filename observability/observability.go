// Package observability turns the node's figures into what operators
// read: the Prometheus registry (injected collectors, never the global
// registry) served over HTTP, the per-member table, the load ring
// (state_dir/load.ring) with its sampler, and the control API's load, top
// and samples views (docs/observability.md).
//
//	Open:   registry + collectors over the Sources → ring file → HTTP server
//	Run:    one report.Reading per Every into the ring, until ctx ends
//	Close:  HTTP server closed, ring synced and closed
//
// It imports metrics, report and control (types); the node adapts its
// parts to the metrics source interfaces.
package observability

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"exitd/control"
	"exitd/metrics"
	"exitd/report"
)

// RingFile (in the state directory) is the load report's series.
const RingFile = "load.ring"

// Sources are the node's parts as the collectors read them.
type Sources struct {
	Members metrics.Source
	Sched   metrics.SchedSource
	NAT     metrics.NATSource
	Kernel  metrics.KernelSource
	DNS     metrics.DNSSource
	SOCKS   metrics.SOCKSSource
	// Conntrack and Cluster are nil in tests that do not export them.
	Conntrack metrics.ConntrackSource
	Cluster   metrics.ClusterSource
}

// Options configure Open.
type Options struct {
	Logger  *slog.Logger
	Now     func() time.Time
	Version string
	// TUN and WAN are the interfaces whose counters are read.
	TUN, WAN string
	// StateDir holds the ring file.
	StateDir string
	// Listen is the /metrics address: "" for metrics.DefaultListen (a busy
	// default only warns), "off" for none; an explicit address that cannot
	// be bound fails Open.
	Listen string
	// Every is the sampling period (0: report.DefaultInterval).
	Every time.Duration
	// SojournBounds are the scheduler's histogram bucket bounds.
	SojournBounds []time.Duration
	// MemberSlots is how many member addresses the prefixes hold.
	MemberSlots int
}

// Observability is the running set.
type Observability struct {
	src     Sources
	opts    Options
	log     *slog.Logger
	reg     *prometheus.Registry
	table   *metrics.Table
	host    metrics.Host
	ring    *report.Ring
	sampler *report.Sampler
	srv     *metrics.Server
	url     string // of /metrics; "" when not served
	srvErr  error  // why not served
}

// New builds the registry and the table; nothing is served or opened.
func New(src Sources, o Options) *Observability {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Every <= 0 {
		o.Every = report.DefaultInterval
	}
	ob := &Observability{src: src, opts: o, log: o.Logger}
	ob.table = metrics.NewTable(src.Members, metrics.TableOptions{Now: o.Now, SojournBounds: o.SojournBounds})
	ob.host = metrics.Host{TUN: o.TUN, WAN: o.WAN}
	ob.reg = prometheus.NewRegistry()
	ob.reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		metrics.NewBuildInfo(o.Version),
		metrics.NewMemberCollector(ob.table, metrics.MemberOptions{Interface: o.TUN}),
		metrics.NewSchedCollector(src.Sched, ob.table, o.SojournBounds),
		metrics.NewNATCollector(src.NAT),
		metrics.NewHostCollector(ob.host),
		metrics.NewKernelCollector(src.Kernel),
		metrics.NewDNSCollector(src.DNS),
		metrics.NewSOCKSCollector(src.SOCKS),
	)
	if src.Conntrack != nil {
		ob.reg.MustRegister(metrics.NewConntrackCollector(src.Conntrack))
	}
	if src.Cluster != nil {
		ob.reg.MustRegister(metrics.NewClusterCollector(src.Cluster))
	}
	return ob
}

// Open is New, then the ring file (in memory when the file cannot be
// opened) and the HTTP server.
func Open(src Sources, o Options) (*Observability, error) {
	ob := New(src, o)
	o = ob.opts
	ring, err := report.OpenRing(filepath.Join(o.StateDir, RingFile), report.DefaultCapacity)
	if err != nil {
		ob.log.Warn("load report: cannot open the ring file; keeping samples in memory only", "err", err)
		ring = report.NewMemoryRing(report.DefaultCapacity)
	}
	ob.ring = ring
	ob.sampler = report.NewSampler(ring, ob.reading, ob.log)
	addr := o.Listen
	if addr == "off" {
		return ob, nil
	}
	explicit := addr != ""
	if !explicit {
		addr = metrics.DefaultListen
	}
	srv, err := metrics.Listen(addr, ob.reg, ob.log)
	switch {
	case err == nil:
		ob.srv, ob.url = srv, "http://"+srv.Addr().String()+"/metrics"
		ob.log.Info("serving Prometheus metrics", "url", ob.url)
	case explicit:
		ring.Close()
		return nil, err
	default:
		ob.srvErr = err
		ob.log.Warn("metrics not served; set [metrics] listen to a free address", "err", err)
	}
	return ob, nil
}

// Close stops serving and closes the ring.
func (ob *Observability) Close() {
	if ob.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ob.srv.Close(ctx)
	}
	if ob.ring != nil {
		if err := ob.ring.Close(); err != nil {
			ob.log.Warn("load report", "err", err)
		}
	}
}

// Run appends one sample per Every until ctx ends.
func (ob *Observability) Run(ctx context.Context) {
	t := time.NewTicker(ob.opts.Every)
	defer t.Stop()
	ob.sampler.Run(ctx, ob.opts.Now, t.C)
}

// Sample takes one sample at at and appends it to the ring (Run does so
// every Every).
func (ob *Observability) Sample(at time.Time) report.Sample { return ob.sampler.Sample(at) }

// URL is the /metrics address, "" when not served.
func (ob *Observability) URL() string { return ob.url }

// reading gathers one report.Reading (the sampler's).
func (ob *Observability) reading(now time.Time) report.Reading {
	r := report.Reading{At: now, SojournBounds: ob.opts.SojournBounds, Conntrack: -1, ConntrackMax: -1}
	if s, err := ob.table.Refresh(); err == nil {
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
	if drops, err := ob.src.NAT.NATDrops(); err == nil {
		for reason, c := range drops {
			r.NATDrops += c.Packets
			if reason == "leak" {
				r.LeakDrops = c.Packets
			}
		}
	}
	if h, err := ob.host.Read(); err == nil || h.WAN.Present {
		r.WANRx, r.WANTx = h.WAN.RxBytes, h.WAN.TxBytes
		r.LinkDrops = h.TUN.RxDropped + h.TUN.TxDropped + h.WAN.RxDropped + h.WAN.TxDropped
		r.UDPRcvErrors = h.UDP4.RcvbufErrors + h.UDP6.RcvbufErrors
		r.Conntrack, r.ConntrackMax = h.Conntrack, h.ConntrackMax
	}
	if p, err := ob.host.ReadProc(); err == nil {
		r.CPUBusy, r.CPUTotal, r.ExitdCPU, r.NCPU = p.CPUBusy, p.CPUTotal, p.SelfCPU, p.NCPU
		r.MemTotal, r.MemAvailable, r.SwapTotal, r.SwapFree, r.ExitdRSS = p.MemTotal, p.MemAvailable, p.SwapTotal, p.SwapFree, p.SelfRSS
	}
	r.MemberSlots = ob.opts.MemberSlots
	return r
}

// MemberSlots is how many member addresses the prefixes hold (the
// registry's plan: network and gateway excluded, IPv4 broadcast too).
func MemberSlots(p4, p6 netip.Prefix) int {
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

// Load is GET /v1/load.
func (ob *Observability) Load() (control.Load, error) {
	s, err := ob.table.Snapshot()
	if s == nil {
		return control.Load{}, fmt.Errorf("observability: load: %w", err)
	}
	l := control.Load{
		At: s.At, WindowMs: s.Window.Milliseconds(), BytesIn: s.Totals.RxBytes, BytesOut: s.Totals.TxBytes,
		Configured: s.Configured, Active: s.Active, Idle: s.Idle, Handshaking: s.Handshaking, Offline: s.Offline,
		Conntrack: -1, ConntrackMax: -1, MetricsURL: ob.url,
	}
	for i := range s.Members {
		l.RateIn += s.Members[i].RxRate
		l.RateOut += s.Members[i].TxRate
	}
	var last report.Sample
	if ss := ob.ring.Since(ob.opts.Now().Add(-2 * ob.opts.Every)); len(ss) > 0 {
		last = ss[len(ss)-1]
	}
	if st, ok := ob.src.Sched.SchedStats(); ok {
		l.Scheduler = &control.SchedulerLoad{
			Discipline: st.Discipline, EgressRate: st.EgressRate, IngressRate: st.IngressRate,
			QueueBytesDown: st.Down.QueuedBytes, QueueBytesUp: st.Up.QueuedBytes, LimitBytes: st.Down.LimitBytes,
			OverflowDrops: st.Down.OverflowDrops + st.Up.OverflowDrops, CoDelDrops: st.Down.CoDelDrops + st.Up.CoDelDrops,
			CEMarks: st.Down.CEMarks + st.Up.CEMarks, SentBytesDown: st.Down.SentBytes, SentBytesUp: st.Up.SentBytes,
			InflightBytes: st.InflightBytes, SojournP99Ms: float64(last.SojournP99Us) / 1000,
			BackloggedFlows: st.Down.ActiveFlows + st.Up.ActiveFlows,
		}
	}
	if drops, err := ob.src.NAT.NATDrops(); err == nil {
		l.NATDrops = map[string]uint64{}
		for reason, c := range drops {
			l.NATDrops[reason] = c.Packets
		}
	}
	if h, err := ob.host.Read(); err == nil || h.WAN.Present {
		l.Conntrack, l.ConntrackMax = h.Conntrack, h.ConntrackMax
		l.UDPRcvbuf = h.UDP4.RcvbufErrors + h.UDP6.RcvbufErrors
		l.LinkDrops = map[string]uint64{"tun rx": h.TUN.RxDropped, "tun tx": h.TUN.TxDropped, "wan rx": h.WAN.RxDropped, "wan tx": h.WAN.TxDropped}
	}
	if p, ok := ob.src.Kernel.KernelProfile(); ok {
		l.KernelKeys = p.Keys
		l.KernelCritical = p.CriticalFailures
		l.KernelDrift = p.Drift
	}
	l.Warnings = loadWarnings(&l, &last, ob.srvErr)
	return l, nil
}

// loadWarnings say what is wrong now and what to do about it.
func loadWarnings(l *control.Load, last *report.Sample, srvErr error) []string {
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
	if srvErr != nil {
		w = append(w, fmt.Sprintf("Prometheus metrics are not served (%v); set [metrics] listen to a free address", srvErr))
	}
	return w
}

// topKey orders GET /v1/top; ok is false for an unknown sort.
func topKey(sort string) (func(*metrics.MemberView) float64, bool) {
	switch sort {
	case control.SortRate:
		return func(v *metrics.MemberView) float64 { return v.Rate() }, true
	case control.SortQueue:
		return func(v *metrics.MemberView) float64 { return float64(v.QueueDelay) + float64(v.QueuedBytes)*1e-9 }, true
	case control.SortDrops:
		return func(v *metrics.MemberView) float64 { return v.DropRate + float64(v.Drops)*1e-9 }, true
	}
	return nil, false
}

// Top is GET /v1/top.
func (ob *Observability) Top(k int, sort string) (control.Top, error) {
	key, ok := topKey(sort)
	if !ok {
		return control.Top{}, &control.APIError{Code: control.CodeInvalidRequest, Message: "sort must be rate, queue or drops"}
	}
	l, err := ob.Load()
	if err != nil {
		return control.Top{}, err
	}
	s, _ := ob.table.Snapshot()
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
func (ob *Observability) Samples(since time.Time) []report.Sample { return ob.ring.Since(since) }
