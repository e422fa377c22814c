package dataplane

import (
	"sync"
	"time"

	"exitd/keys"
)

// statsMaxAge is how long a device dump serves callers at least: long
// enough that concurrent requests share one dump, short enough that what a
// command shows is current.
const statsMaxAge = 100 * time.Millisecond

// A dump costs time in proportion to the peers (20,000: ≈ 150 ms of a
// CPU), so it also serves for a multiple of what the last one cost: any
// rate of requests (exitctl status in a loop, a lab polling) then costs at
// most 1/requestBudget of a CPU, and the periodic background readers
// (STATUS=, the cluster record, the endpoints file) at most
// 1/backgroundBudget.
const (
	requestBudget    = 10
	backgroundBudget = 100
)

// rateWindow is the shortest interval rates are computed over.
const rateWindow = time.Second

// sampler keeps the last dump of the device's peers and an older one;
// rates are their difference. Its zero value is ready.
type sampler struct {
	mu   sync.Mutex // guards last and cost
	last Sample
	cost time.Duration // of the last dump
}

// Sample is one dump of the device's peers and an older one.
type Sample struct {
	At, PrevAt time.Time
	Cur, Prev  map[keys.Key]PeerStats
}

// Sample returns the device's peer state, with an older dump for rates,
// for a request: at most statsMaxAge old, or requestBudget times the last
// dump's cost.
func (p *Plane) Sample() Sample { return p.sample(requestBudget) }

// BackgroundSample is Sample for periodic readers: at most statsMaxAge
// old, or backgroundBudget times the last dump's cost.
func (p *Plane) BackgroundSample() Sample { return p.sample(backgroundBudget) }

func (p *Plane) sample(budget time.Duration) Sample {
	s := &p.sampler
	s.mu.Lock()
	defer s.mu.Unlock()
	now := p.now()
	if !s.last.At.IsZero() && now.Sub(s.last.At) < max(statsMaxAge, budget*s.cost) {
		return s.last
	}
	cur, err := p.dump()
	if err != nil {
		p.log.Warn("read peer stats", "err", err)
		return s.last
	}
	p.recordLocked(now, cur)
	return s.last
}

// recordLocked makes cur, a dump begun at start, the latest sample (s.mu
// held).
func (p *Plane) recordLocked(start time.Time, cur map[keys.Key]PeerStats) {
	s := &p.sampler
	s.cost = p.now().Sub(start)
	// The older dump moves up to the last one when that is at least
	// rateWindow old, or when the older one is stale: rates then span
	// 1-3 windows whoever samples how often.
	next := Sample{At: start, PrevAt: s.last.PrevAt, Cur: cur, Prev: s.last.Prev}
	if s.last.Cur != nil && (next.Prev == nil || start.Sub(s.last.At) >= rateWindow || start.Sub(s.last.PrevAt) > 3*rateWindow) {
		next.PrevAt, next.Prev = s.last.At, s.last.Cur
	}
	s.last = next
}

// Dump reads every peer's counters from the device now. Callers that
// turn counters into rates across calls (the metrics table) need this
// fresh dump: a cached older one would look like a counter reset. The dump
// also becomes the latest Sample, so the periodic readers need not dump
// again soon after (the metrics sampler and the service loop each dumped
// 20,000 peers every 15 s). Callers must not modify the map.
func (p *Plane) Dump() (map[keys.Key]PeerStats, error) {
	start := p.now()
	cur, err := p.dump()
	if err != nil {
		return nil, err
	}
	s := &p.sampler
	s.mu.Lock()
	if start.After(s.last.At) {
		p.recordLocked(start, cur)
	}
	s.mu.Unlock()
	return cur, nil
}

func (p *Plane) dump() (map[keys.Key]PeerStats, error) {
	st, err := p.peers().Stats()
	if err != nil {
		return nil, err
	}
	out := make(map[keys.Key]PeerStats, len(st))
	for _, ps := range st {
		out[ps.PublicKey] = ps
	}
	return out, nil
}

// Rates are bits/s received from and sent to the member k between the two
// dumps.
func (s Sample) Rates(k keys.Key) (rx, tx uint64) {
	d := s.At.Sub(s.PrevAt).Seconds()
	a, ok1 := s.Prev[k]
	b, ok2 := s.Cur[k]
	if !ok1 || !ok2 || d <= 0 || b.RxBytes < a.RxBytes || b.TxBytes < a.TxBytes {
		return 0, 0
	}
	return uint64(float64(b.RxBytes-a.RxBytes) * 8 / d), uint64(float64(b.TxBytes-a.TxBytes) * 8 / d)
}
