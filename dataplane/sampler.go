package dataplane

import (
	"sync"
	"time"

	"exitd/keys"
)

// statsMaxAge is how long a device dump serves callers: long enough that
// the service loop's reads and concurrent requests share one dump (20,000
// peers cost ~150 ms), short enough that what a command shows is current.
const statsMaxAge = 100 * time.Millisecond

// rateWindow is the shortest interval rates are computed over.
const rateWindow = time.Second

// sampler keeps the last dump of the device's peers and an older one;
// rates are their difference. Its zero value is ready.
type sampler struct {
	mu   sync.Mutex // guards last
	last Sample
}

// Sample is one dump of the device's peers and an older one.
type Sample struct {
	At, PrevAt time.Time
	Cur, Prev  map[keys.Key]PeerStats
}

// Sample returns the device's peer state, at most statsMaxAge old, with
// an older dump for rates.
func (p *Plane) Sample() Sample {
	s := &p.sampler
	s.mu.Lock()
	defer s.mu.Unlock()
	now := p.now()
	if !s.last.At.IsZero() && now.Sub(s.last.At) < statsMaxAge {
		return s.last
	}
	cur, err := p.Dump()
	if err != nil {
		p.log.Warn("read peer stats", "err", err)
		return s.last
	}
	// The older dump moves up to the last one when that is at least
	// rateWindow old, or when the older one is stale: rates then span
	// 1-3 windows whoever samples how often.
	next := Sample{At: now, PrevAt: s.last.PrevAt, Cur: cur, Prev: s.last.Prev}
	if s.last.Cur != nil && (next.Prev == nil || now.Sub(s.last.At) >= rateWindow || now.Sub(s.last.PrevAt) > 3*rateWindow) {
		next.PrevAt, next.Prev = s.last.At, s.last.Cur
	}
	s.last = next
	return s.last
}

// Dump reads every peer's counters from the device now. Callers that
// turn counters into rates across calls (the metrics table) need this
// fresh dump: a cached older one would look like a counter reset.
func (p *Plane) Dump() (map[keys.Key]PeerStats, error) {
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
