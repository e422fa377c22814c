package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SchedDir is one direction of the scheduler, node-wide.
type SchedDir struct {
	ActiveMembers, ActiveFlows int // with packets queued now
	QueuedBytes, QueuedPackets int64
	LimitBytes, LimitPackets   int64
	SentPackets, SentBytes     uint64
	OverflowDrops, CoDelDrops  uint64
	CEMarks                    uint64
}

// SchedStats are the scheduler's node-wide figures.
type SchedStats struct {
	Discipline              string
	Members                 int
	Down, Up                SchedDir
	EgressRate, IngressRate uint64 // pacer rates, bit/s; 0 = unpaced
	// EgressSource is where EgressRate comes from: "config", "link" (the
	// WAN's reported speed), "off", or "unknown" (auto, but the WAN
	// reports no speed: unpaced, and fairness needs egress_rate).
	EgressSource                      string
	InflightBytes, InflightLimit      int64
	InnerReadErrors, InnerWriteErrors uint64
	OversizeDrops                     uint64
}

// SchedSource reads the scheduler. Stats must be cheap (it takes each
// queue lock once); ok is false when there is no scheduler.
type SchedSource interface {
	SchedStats() (s SchedStats, ok bool)
}

type schedCollector struct {
	src    SchedSource
	t      *Table // for the sojourn histogram; may be nil
	bounds []float64

	queueBytes, queuePackets, limitBytes, limitPackets *prometheus.Desc
	activeMembers, activeFlows                         *prometheus.Desc
	sentPackets, sentBytes, drops, marks               *prometheus.Desc
	pacer, inflight, inflightLimit, errors, info       *prometheus.Desc
	egressSource                                       *prometheus.Desc
	sojourn                                            *prometheus.Desc
}

var _ prometheus.Collector = (*schedCollector)(nil)

// NewSchedCollector exports the scheduler's figures; the sojourn-time
// histogram comes from t (nil: none) with the given bucket upper bounds.
func NewSchedCollector(src SchedSource, t *Table, bounds []time.Duration) prometheus.Collector {
	c := &schedCollector{src: src, t: t}
	for i, b := range bounds {
		if i == len(bounds)-1 && i == SojournBuckets-1 {
			break // the last bucket is open-ended: +Inf
		}
		c.bounds = append(c.bounds, b.Seconds())
	}
	dir := []string{"direction"}
	c.queueBytes = prometheus.NewDesc("exitd_sched_queue_bytes", "Bytes queued in the scheduler now (down: toward members).", dir, nil)
	c.queuePackets = prometheus.NewDesc("exitd_sched_queue_packets", "Packets queued in the scheduler now.", dir, nil)
	c.limitBytes = prometheus.NewDesc("exitd_sched_queue_limit_bytes", "The scheduler's byte limit per direction.", dir, nil)
	c.limitPackets = prometheus.NewDesc("exitd_sched_queue_limit_packets", "The scheduler's packet limit per direction.", dir, nil)
	c.activeMembers = prometheus.NewDesc("exitd_sched_backlogged_members", "Members with packets queued now.", dir, nil)
	c.activeFlows = prometheus.NewDesc("exitd_sched_backlogged_flows", "Flow queues with packets queued now.", dir, nil)
	c.sentPackets = prometheus.NewDesc("exitd_sched_sent_packets_total", "Packets the scheduler handed on (down: to wireguard-go, up: to the TUN).", dir, nil)
	c.sentBytes = prometheus.NewDesc("exitd_sched_sent_bytes_total", "On-wire bytes the scheduler handed on.", dir, nil)
	c.drops = prometheus.NewDesc("exitd_sched_dropped_packets_total", "Packets the scheduler dropped, by direction and reason (overflow: queue limit; codel: queue delay; oversize: larger than wireguard-go's buffer).", []string{"direction", "reason"}, nil)
	c.marks = prometheus.NewDesc("exitd_sched_ce_marked_packets_total", "Packets marked ECN CE instead of dropped.", dir, nil)
	c.pacer = prometheus.NewDesc("exitd_sched_pacer_rate_bytes", "Configured pacer rate in bytes per second (Prometheus base unit; exitctl shows bits/s); 0 means unpaced.", dir, nil)
	c.inflight = prometheus.NewDesc("exitd_sched_inflight_bytes", "Download bytes handed to wireguard-go and not yet sent on the UDP socket.", nil, nil)
	c.inflightLimit = prometheus.NewDesc("exitd_sched_inflight_limit_bytes", "The bound on in-flight download bytes.", nil, nil)
	c.errors = prometheus.NewDesc("exitd_sched_tun_errors_total", "TUN read and write errors seen by the scheduler.", []string{"op"}, nil)
	c.egressSource = prometheus.NewDesc("exitd_sched_egress_rate_source", "Where the download pacing rate comes from, as a label (always 1): config, link (the WAN's reported speed less 5 %), fast_link (a link above 2.5 Gbit/s: unpaced, exitd is the bottleneck), off, or unknown — auto, but the WAN reports no speed, so downloads are unpaced and the queue forms in the provider's buffer, not in exitd: set [scheduler] egress_rate for fairness.", []string{"source"}, nil)
	c.info = prometheus.NewDesc("exitd_sched_info", "The scheduler's discipline (srr or fifo) as a label; always 1.", []string{"discipline"}, nil)
	c.sojourn = prometheus.NewDesc("exitd_sched_sojourn_seconds", "Time packets spent queued in the scheduler, enqueue to hand-out.", dir, nil)
	return c
}

func (c *schedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queueBytes, c.queuePackets, c.limitBytes, c.limitPackets,
		c.activeMembers, c.activeFlows, c.sentPackets, c.sentBytes, c.drops, c.marks, c.pacer,
		c.inflight, c.inflightLimit, c.errors, c.info, c.sojourn, c.egressSource} {
		ch <- d
	}
}

func (c *schedCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.src.SchedStats()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge(c.info, 1, s.Discipline)
	if s.EgressSource != "" {
		gauge(c.egressSource, 1, s.EgressSource)
	}
	for _, d := range []struct {
		name string
		s    *SchedDir
		rate uint64
	}{{"down", &s.Down, s.EgressRate}, {"up", &s.Up, s.IngressRate}} {
		gauge(c.queueBytes, float64(d.s.QueuedBytes), d.name)
		gauge(c.queuePackets, float64(d.s.QueuedPackets), d.name)
		gauge(c.limitBytes, float64(d.s.LimitBytes), d.name)
		gauge(c.limitPackets, float64(d.s.LimitPackets), d.name)
		gauge(c.activeMembers, float64(d.s.ActiveMembers), d.name)
		gauge(c.activeFlows, float64(d.s.ActiveFlows), d.name)
		counter(c.sentPackets, d.s.SentPackets, d.name)
		counter(c.sentBytes, d.s.SentBytes, d.name)
		counter(c.drops, d.s.OverflowDrops, d.name, "overflow")
		counter(c.drops, d.s.CoDelDrops, d.name, "codel")
		counter(c.marks, d.s.CEMarks, d.name)
		gauge(c.pacer, float64(d.rate)/8, d.name)
	}
	counter(c.drops, s.OversizeDrops, "down", "oversize")
	gauge(c.inflight, float64(s.InflightBytes))
	gauge(c.inflightLimit, float64(s.InflightLimit))
	counter(c.errors, s.InnerReadErrors, "read")
	counter(c.errors, s.InnerWriteErrors, "write")
	if c.t == nil || len(c.bounds) == 0 {
		return
	}
	snap, _ := c.t.Snapshot()
	if snap == nil {
		return
	}
	ch <- c.histogram(&snap.Totals.SojournDown, snap.Totals.SojournSumDown, "down")
	ch <- c.histogram(&snap.Totals.SojournUp, snap.Totals.SojournSumUp, "up")
}

func (c *schedCollector) histogram(h *[SojournBuckets]uint64, sum float64, dir string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(c.bounds))
	var cum, total uint64
	for i, n := range h {
		total += n
		if i < len(c.bounds) {
			cum += n
			buckets[c.bounds[i]] = cum
		}
	}
	return prometheus.MustNewConstHistogram(c.sojourn, total, sum, buckets, dir)
}
