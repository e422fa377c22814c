package report

import (
	"context"
	"log/slog"
	"time"
)

// DefaultInterval is how often the daemon samples (as the Dante analysis).
const DefaultInterval = 15 * time.Second

// Reading is what the daemon reads at one instant: cumulative counters
// (which the Sampler turns into per-interval deltas) and gauges.
type Reading struct {
	At time.Time

	// Cumulative counters; a counter that goes down was reset and its
	// delta is its new value.
	BytesIn, BytesOut         uint64
	WANRx, WANTx              uint64
	OverflowDrops, CoDelDrops uint64
	CEMarks                   uint64
	NATDrops, LeakDrops       uint64
	LinkDrops, UDPRcvErrors   uint64
	CPUBusy, CPUTotal         uint64 // host ticks
	ExitdCPU                  uint64 // this process's ticks
	// Sojourn is the cumulative histogram of queueing delay with upper
	// bounds SojournBounds (the last bucket open).
	Sojourn       []uint64
	SojournBounds []time.Duration

	// Gauges.
	Configured, Active, Idle, Handshaking int
	QueueBytes                            int64
	Conntrack, ConntrackMax               int64 // -1 unknown
	MemberSlots                           int
	MemTotal, MemAvailable                uint64
	SwapTotal, SwapFree                   uint64
	ExitdRSS                              uint64
	NCPU                                  int
}

// Sampler turns successive Readings into Samples and appends them to a
// Ring.
type Sampler struct {
	ring *Ring
	read func(now time.Time) Reading
	log  *slog.Logger
	prev *Reading
}

// NewSampler samples read into ring. read is called from the sampler's
// goroutine only.
func NewSampler(ring *Ring, read func(now time.Time) Reading, log *slog.Logger) *Sampler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sampler{ring: ring, read: read, log: log}
}

// sampleBudget: a reading serves for at least this many times what it
// cost, so the sampler spends at most 1/sampleBudget of a CPU whatever the
// member count (20,000 members: a reading dumps the device and builds the
// member table, ≈ 0.3 s, so it samples every ≈ 30 s instead of 15).
const sampleBudget = 100

// Run is RoutineSampler: it takes a baseline reading now and appends a
// sample on every tick until ctx ends or ticks closes, skipping ticks
// until sampleBudget times the last reading's cost has passed (a sample
// then spans the longer interval). The daemon passes
// time.NewTicker(interval).C; tests feed a channel.
func (s *Sampler) Run(ctx context.Context, now func() time.Time, ticks <-chan time.Time) {
	last := now()
	cost := s.timedSample(now, last)
	for {
		select {
		case <-ctx.Done():
			return
		case t, ok := <-ticks:
			if !ok {
				return
			}
			if t.Sub(last) < sampleBudget*cost {
				continue
			}
			last = t
			cost = s.timedSample(now, t)
		}
	}
}

// timedSample samples at t and returns what it cost on the clock now.
func (s *Sampler) timedSample(now func() time.Time, t time.Time) time.Duration {
	start := now()
	s.Sample(t)
	return now().Sub(start)
}

// Sample reads now and appends the sample for the interval since the
// previous reading; the first reading after a start only sets the
// baseline for the deltas, but still records the gauges.
func (s *Sampler) Sample(now time.Time) Sample {
	r := s.read(now)
	if r.At.IsZero() {
		r.At = now
	}
	out := diff(s.prev, &r)
	s.prev = &r
	if err := s.ring.Append(out); err != nil {
		s.log.Warn("load report: cannot store sample", "err", err)
	}
	return out
}

func d(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

func clampU32(v int64) uint32 {
	return uint32(min(max(v, 0), 1<<32-1))
}

// diff builds the sample of cur against prev (nil: no interval yet).
func diff(prev, cur *Reading) Sample {
	s := Sample{
		TimeMs:     cur.At.UnixMilli(),
		Configured: clampU32(int64(cur.Configured)), Active: clampU32(int64(cur.Active)),
		Idle: clampU32(int64(cur.Idle)), Handshaking: clampU32(int64(cur.Handshaking)),
		QueueBytes: uint64(max(cur.QueueBytes, 0)),
		Conntrack:  clampU32(cur.Conntrack), ConntrackMax: clampU32(cur.ConntrackMax),
		MemberSlots: clampU32(int64(cur.MemberSlots)),
		MemTotal:    cur.MemTotal, MemAvailable: cur.MemAvailable,
		SwapTotal: cur.SwapTotal, SwapFree: cur.SwapFree, ExitdRSS: cur.ExitdRSS,
		NCPU: uint16(min(max(cur.NCPU, 0), 1<<16-1)),
	}
	if prev == nil || !cur.At.After(prev.At) {
		return s
	}
	s.IntervalMs = clampU32(cur.At.Sub(prev.At).Milliseconds())
	s.BytesIn, s.BytesOut = d(cur.BytesIn, prev.BytesIn), d(cur.BytesOut, prev.BytesOut)
	s.WANRx, s.WANTx = d(cur.WANRx, prev.WANRx), d(cur.WANTx, prev.WANTx)
	s.OverflowDrops, s.CoDelDrops = d(cur.OverflowDrops, prev.OverflowDrops), d(cur.CoDelDrops, prev.CoDelDrops)
	s.CEMarks = d(cur.CEMarks, prev.CEMarks)
	s.NATDrops, s.LeakDrops = d(cur.NATDrops, prev.NATDrops), d(cur.LeakDrops, prev.LeakDrops)
	s.LinkDrops, s.UDPRcvErrors = d(cur.LinkDrops, prev.LinkDrops), d(cur.UDPRcvErrors, prev.UDPRcvErrors)
	if busy, total := d(cur.CPUBusy, prev.CPUBusy), d(cur.CPUTotal, prev.CPUTotal); total > 0 {
		s.CPUTotalPm = uint16(min(busy*1000/total, 1000))
		// Process ticks against the host's ticks of all CPUs.
		s.CPUExitdPm = uint16(min(d(cur.ExitdCPU, prev.ExitdCPU)*1000/total, 1000))
	}
	s.SojournP99Us = uint32(min(quantile(prev.Sojourn, cur.Sojourn, cur.SojournBounds, 0.99).Microseconds(), 1<<32-1))
	return s
}

// quantile is the upper bound of the bucket holding quantile q of the
// packets counted between prev and cur; 0 when none. The open last bucket
// reports its lower bound.
func quantile(prev, cur []uint64, bounds []time.Duration, q float64) time.Duration {
	n := min(len(cur), len(bounds))
	delta := make([]uint64, n)
	var total uint64
	for i := range n {
		var p uint64
		if i < len(prev) {
			p = prev[i]
		}
		delta[i] = d(cur[i], p)
		total += delta[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total-1)) + 1
	var seen uint64
	for i, c := range delta {
		seen += c
		if seen >= rank {
			if i == n-1 && i > 0 {
				return bounds[i-1]
			}
			return bounds[i]
		}
	}
	return bounds[n-1]
}
