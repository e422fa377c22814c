package dns

import (
	"net/netip"
	"sync"
	"time"
)

// maxLimited bounds the rate limiter's table. Members are identified by their
// tunnel address, so the table normally holds one bucket per active member.
const maxLimited = 65536

// limiter is a token bucket per source address: qps tokens a second up to
// burst. A bucket that has been idle long enough to refill is the same as
// no bucket, which is what lets the table be swept.
type limiter struct {
	qps, burst float64
	max        int

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns nil (no limit) when qps or burst is negative.
func newLimiter(qps, burst int) *limiter {
	if qps < 0 || burst < 0 {
		return nil
	}
	return &limiter{qps: float64(qps), burst: float64(burst), max: maxLimited, buckets: make(map[netip.Addr]*bucket)}
}

// allow takes one token from a's bucket at now.
func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[a]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.makeRoomLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[a] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.qps)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// makeRoomLocked drops buckets that have refilled (at most one full sweep a
// second, so a flood of new sources cannot make every query O(n)), then, if
// the table is still full, one arbitrary bucket.
func (l *limiter) makeRoomLocked(now time.Time) {
	if now.Sub(l.lastSweep) >= time.Second {
		l.lastSweep = now
		refill := time.Duration(l.burst / max(l.qps, 1e-9) * float64(time.Second))
		for a, b := range l.buckets {
			if now.Sub(b.last) >= refill {
				delete(l.buckets, a)
			}
		}
	}
	for a := range l.buckets {
		if len(l.buckets) < l.max {
			break
		}
		delete(l.buckets, a)
	}
}
