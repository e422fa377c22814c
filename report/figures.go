package report

import (
	"fmt"
	"slices"
	"time"
)

// Point is one value at one time (X is UNIX ms for time charts).
type Point struct{ X, Y float64 }

// Series is one named line (or stacked band, or scatter set).
type Series struct {
	Name   string
	Points []Point
	Dashed bool
}

// Kind is how a figure is drawn.
type Kind int

// Kinds of figure.
const (
	Lines   Kind = iota // time on x
	Stacked             // time on x, series stacked as bands
	Scatter             // numeric x
)

// Figure is one plot of the report.
type Figure struct {
	ID      string // file name without extension, e.g. "fig01-transfer-rates"
	Title   string
	Caption string // what it shows and how to read it
	YLabel  string
	XLabel  string // Scatter only
	Kind    Kind
	Series  []Series
}

// Points is the number of points over all series.
func (f *Figure) Points() int {
	n := 0
	for _, s := range f.Series {
		n += len(s.Points)
	}
	return n
}

// intervals are the samples that close an interval (IntervalMs > 0): the
// ones rates and ratios are computed from.
func intervals(ss []Sample) []Sample {
	var out []Sample
	for _, s := range ss {
		if s.IntervalMs > 0 {
			out = append(out, s)
		}
	}
	return out
}

func perSecond(v uint64, s *Sample) float64 {
	return float64(v) / (float64(s.IntervalMs) / 1000)
}

func series(name string, ss []Sample, y func(*Sample) float64) Series {
	out := Series{Name: name, Points: make([]Point, 0, len(ss))}
	for i := range ss {
		out.Points = append(out.Points, Point{float64(ss[i].TimeMs), y(&ss[i])})
	}
	return out
}

const mbit = 1e6 / 8 // bytes per second in one Mbit/s

// Figures computes the report's figures from samples (oldest first).
func Figures(ss []Sample) []Figure {
	iv := intervals(ss)
	mbps := func(v func(*Sample) uint64) func(*Sample) float64 {
		return func(s *Sample) float64 { return perSecond(v(s), s) / mbit }
	}
	rate := func(v func(*Sample) uint64) func(*Sample) float64 {
		return func(s *Sample) float64 { return perSecond(v(s), s) }
	}
	var figs []Figure
	add := func(f Figure) {
		f.ID = fmt.Sprintf("fig%02d-%s", len(figs)+1, f.ID)
		figs = append(figs, f)
	}

	add(Figure{ID: "transfer-rates", Title: "Transfer rates", YLabel: "Mbit/s", Kind: Lines,
		Caption: "Average rate of each sampling interval. To members is what members download through the node, from members what they upload (WireGuard bytes, headers included); the WAN lines are the physical interface as ifconfig counts it, for comparison.",
		Series: []Series{
			series("to members", iv, mbps(func(s *Sample) uint64 { return s.BytesOut })),
			series("from members", iv, mbps(func(s *Sample) uint64 { return s.BytesIn })),
			withDash(series("WAN rx", iv, mbps(func(s *Sample) uint64 { return s.WANRx }))),
			withDash(series("WAN tx", iv, mbps(func(s *Sample) uint64 { return s.WANTx }))),
		}})

	var ratio []Sample
	for _, s := range iv {
		if s.BytesIn > 0 {
			ratio = append(ratio, s)
		}
	}
	add(Figure{ID: "traffic-ratio", Title: "Traffic ratio, in to out", YLabel: "received / sent by members", Kind: Lines,
		Caption: "How many bytes members receive for each byte they send, per interval (the Dante analysis saw 4–5). Intervals in which members sent nothing are left out.",
		Series:  []Series{series("ratio", ratio, func(s *Sample) float64 { return float64(s.BytesOut) / float64(s.BytesIn) })}})

	add(Figure{ID: "members-by-state", Title: "Members by session state", YLabel: "members", Kind: Stacked,
		Caption: "Active: a session that moved data in the last 15 s. Idle: a session, keepalives only. Handshaking: no session yet, handshake messages arriving. The dashed line is the number of members configured.",
		Series: []Series{
			series("active", ss, func(s *Sample) float64 { return float64(s.Active) }),
			series("idle", ss, func(s *Sample) float64 { return float64(s.Idle) }),
			series("handshaking", ss, func(s *Sample) float64 { return float64(s.Handshaking) }),
			withDash(series("configured", ss, func(s *Sample) float64 { return float64(s.Configured) })),
		}})

	sc := Series{Name: "interval"}
	for _, s := range iv {
		sc.Points = append(sc.Points, Point{float64(s.Active + s.Idle), perSecond(s.BytesIn+s.BytesOut, &s) / mbit})
	}
	add(Figure{ID: "members-vs-bandwidth", Title: "Members and bandwidth", YLabel: "Mbit/s (in + out)", XLabel: "members with a session", Kind: Scatter,
		Caption: "One dot per interval: members with a session against the total rate. A rising cloud that flattens shows where the link or the node saturates.",
		Series:  []Series{sc}})

	var cumIn, cumOut float64
	cin, cout, ctot := Series{Name: "from members"}, Series{Name: "to members"}, Series{Name: "total"}
	for _, s := range iv {
		cumIn += float64(s.BytesIn) / 1e9
		cumOut += float64(s.BytesOut) / 1e9
		x := float64(s.TimeMs)
		cin.Points = append(cin.Points, Point{x, cumIn})
		cout.Points = append(cout.Points, Point{x, cumOut})
		ctot.Points = append(ctot.Points, Point{x, cumIn + cumOut})
	}
	add(Figure{ID: "cumulative-bytes", Title: "Aggregated data transfers", YLabel: "GB", Kind: Lines,
		Caption: "Bytes moved since the start of the report, through the tunnel.",
		Series:  []Series{ctot, cout, cin}})

	add(Figure{ID: "memory", Title: "Memory", YLabel: "GiB", Kind: Lines,
		Caption: "Host memory in use (total minus available), swap in use, and exitd's resident set. The dashed line is the host's memory.",
		Series: []Series{
			series("host used", ss, func(s *Sample) float64 { return gib(s.MemTotal - min(s.MemAvailable, s.MemTotal)) }),
			series("swap used", ss, func(s *Sample) float64 { return gib(s.SwapTotal - min(s.SwapFree, s.SwapTotal)) }),
			series("exitd RSS", ss, func(s *Sample) float64 { return gib(s.ExitdRSS) }),
			withDash(series("host total", ss, func(s *Sample) float64 { return gib(s.MemTotal) })),
		}})

	add(Figure{ID: "cpu", Title: "CPU", YLabel: "% of all CPUs", Kind: Lines,
		Caption: "Busy time of all CPUs together (100 % = every CPU busy) and the part used by exitd (encryption, scheduling, UDP and TUN I/O). The kernel's forwarding and NAT show in the total only.",
		Series: []Series{
			series("total", iv, func(s *Sample) float64 { return float64(s.CPUTotalPm) / 10 }),
			series("exitd", iv, func(s *Sample) float64 { return float64(s.CPUExitdPm) / 10 }),
		}})

	add(Figure{ID: "free-capacity", Title: "Free capacity", YLabel: "free slots", Kind: Lines,
		Caption: "How many more members and flows the node can take without a change: member addresses left in the prefixes, and connection-tracking entries left before new flows are dropped.",
		Series: []Series{
			series("member addresses", ss, func(s *Sample) float64 { return float64(max(int64(s.MemberSlots)-int64(s.Configured), 0)) }),
			series("conntrack entries", ss, func(s *Sample) float64 { return float64(max(int64(s.ConntrackMax)-int64(s.Conntrack), 0)) }),
		}})

	add(Figure{ID: "scheduler-drops", Title: "Scheduler drops and ECN marks", YLabel: "packets/s", Kind: Lines,
		Caption: "Packets the fair scheduler dropped because a queue hit its limit (overflow) or held packets too long (CoDel), and packets it marked ECN CE instead of dropping. Steady drops under load are the scheduler doing its job; drops at low load are not.",
		Series: []Series{
			series("overflow drops", iv, rate(func(s *Sample) uint64 { return s.OverflowDrops })),
			series("CoDel drops", iv, rate(func(s *Sample) uint64 { return s.CoDelDrops })),
			series("CE marks", iv, rate(func(s *Sample) uint64 { return s.CEMarks })),
		}})

	add(Figure{ID: "queue-delay", Title: "Queueing delay", YLabel: "ms", Kind: Lines,
		Caption: "99th percentile of the time packets spent in the scheduler's queues in each interval (log2 buckets: read it as an upper bound).",
		Series:  []Series{series("p99 queue delay", iv, func(s *Sample) float64 { return float64(s.SojournP99Us) / 1000 })}})

	add(Figure{ID: "other-drops", Title: "Drops outside the scheduler", YLabel: "packets/s", Kind: Lines,
		Caption: "nftables drops (leak: to blocked destinations; all reasons), TUN and WAN interface drops, and UDP receive-buffer overruns (raise net.core.rmem_max if these appear under load).",
		Series: []Series{
			series("nftables, all", iv, rate(func(s *Sample) uint64 { return s.NATDrops })),
			series("nftables, leak", iv, rate(func(s *Sample) uint64 { return s.LeakDrops })),
			series("interfaces", iv, rate(func(s *Sample) uint64 { return s.LinkDrops })),
			series("UDP buffer", iv, rate(func(s *Sample) uint64 { return s.UDPRcvErrors })),
		}})
	return figs
}

func withDash(s Series) Series { s.Dashed = true; return s }

func gib(b uint64) float64 { return float64(b) / (1 << 30) }

// Summary is the report's table of key figures.
type Summary struct {
	From, To          time.Time
	Samples           int
	Interval          time.Duration // median
	PeakOut, PeakIn   float64       // Mbit/s
	PeakOutAt         time.Time
	AvgOut, AvgIn     float64 // Mbit/s over the intervals
	TotalOut, TotalIn uint64  // bytes
	Ratio             float64 // TotalOut / TotalIn
	PeakSessions      int
	PeakSessionsAt    time.Time
	PeakActive        int
	Configured        int     // at the end
	PeakCPU, AvgCPU   float64 // % of all CPUs
	PeakExitdCPU      float64
	PeakMemUsed       uint64
	MemTotal          uint64
	PeakRSS           uint64
	MinConntrackFree  int64 // -1 unknown
	SchedDrops        uint64
	CEMarks           uint64
	NATDrops          uint64
	LeakDrops         uint64
	PeakQueueDelay    time.Duration
}

// Summarize computes the key figures of samples (oldest first).
func Summarize(ss []Sample) Summary {
	var sum Summary
	sum.MinConntrackFree = -1
	known := false // MinConntrackFree holds a reading
	if len(ss) == 0 {
		return sum
	}
	sum.From, sum.To, sum.Samples = ss[0].Time(), ss[len(ss)-1].Time(), len(ss)
	sum.Configured = int(ss[len(ss)-1].Configured)
	var ivs []time.Duration
	var cpuSum, secs float64
	for i := range ss {
		s := &ss[i]
		if sess := int(s.Active) + int(s.Idle); sess > sum.PeakSessions {
			sum.PeakSessions, sum.PeakSessionsAt = sess, s.Time()
		}
		sum.PeakActive = max(sum.PeakActive, int(s.Active))
		used := s.MemTotal - min(s.MemAvailable, s.MemTotal)
		sum.PeakMemUsed, sum.MemTotal = max(sum.PeakMemUsed, used), max(sum.MemTotal, s.MemTotal)
		sum.PeakRSS = max(sum.PeakRSS, s.ExitdRSS)
		if s.ConntrackMax > 0 {
			free := max(int64(s.ConntrackMax)-int64(s.Conntrack), 0) // an overfull table has no room, as in the figure
			if !known || free < sum.MinConntrackFree {
				sum.MinConntrackFree, known = free, true
			}
		}
		if s.IntervalMs == 0 {
			continue
		}
		ivs = append(ivs, s.Interval())
		out, in := perSecond(s.BytesOut, s)/mbit, perSecond(s.BytesIn, s)/mbit
		if out > sum.PeakOut {
			sum.PeakOut, sum.PeakOutAt = out, s.Time()
		}
		sum.PeakIn = max(sum.PeakIn, in)
		sum.TotalOut += s.BytesOut
		sum.TotalIn += s.BytesIn
		secs += float64(s.IntervalMs) / 1000
		cpu := float64(s.CPUTotalPm) / 10
		sum.PeakCPU = max(sum.PeakCPU, cpu)
		cpuSum += cpu * float64(s.IntervalMs)
		sum.PeakExitdCPU = max(sum.PeakExitdCPU, float64(s.CPUExitdPm)/10)
		sum.SchedDrops += s.OverflowDrops + s.CoDelDrops
		sum.CEMarks += s.CEMarks
		sum.NATDrops += s.NATDrops
		sum.LeakDrops += s.LeakDrops
		sum.PeakQueueDelay = max(sum.PeakQueueDelay, time.Duration(s.SojournP99Us)*time.Microsecond)
	}
	if secs > 0 {
		sum.AvgOut = float64(sum.TotalOut) / secs / mbit
		sum.AvgIn = float64(sum.TotalIn) / secs / mbit
		sum.AvgCPU = cpuSum / (secs * 1000)
	}
	if sum.TotalIn > 0 {
		sum.Ratio = float64(sum.TotalOut) / float64(sum.TotalIn)
	}
	if len(ivs) > 0 {
		slices.Sort(ivs)
		sum.Interval = ivs[len(ivs)/2]
	}
	return sum
}
