package socks

import (
	"sync"
	"time"
)

// refusal is why a session was turned away; counted in Stats.
type refusal uint8

const (
	admitted refusal = iota
	refusedRuleset
	refusedLimit
	refusedRate
	refusedAuth
)

// bucket is a token bucket; the caller holds whatever lock guards it.
type bucket struct {
	tokens float64
	last   time.Time
}

// fill adds the tokens earned since the last call, capped at burst.
func (b *bucket) fill(now time.Time, rate, burst float64) {
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
	}
	b.last = now
}

// take removes one token if there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	b.fill(now, rate, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// limiter enforces the per-key limits (key = member, or source address on
// rule listeners): concurrent sessions and a connect-rate bucket.
type limiter struct {
	maxSessions int
	rate, burst float64
	now         func() time.Time

	mu      sync.Mutex
	keys    map[string]*keyLimits // guarded by mu
	sweepAt int                   // guarded by mu; map size that triggers a sweep
}

type keyLimits struct {
	sessions int
	connects bucket
}

const minSweep = 1024

func newLimiter(maxSessions int, rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{
		maxSessions: maxSessions,
		rate:        rate,
		burst:       float64(burst),
		now:         now,
		keys:        make(map[string]*keyLimits),
		sweepAt:     minSweep,
	}
}

// acquire admits one more session for key, taking a connect token; a session
// over the limit takes no token. Every admitted acquire needs one release.
func (l *limiter) acquire(key string) refusal {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.keys[key]
	if k == nil {
		if len(l.keys) >= l.sweepAt {
			l.sweepLocked(now)
		}
		k = &keyLimits{}
		l.keys[key] = k
	}
	if k.sessions >= l.maxSessions {
		return refusedLimit
	}
	if !k.connects.take(now, l.rate, l.burst) {
		return refusedRate
	}
	k.sessions++
	return admitted
}

func (l *limiter) release(key string) {
	l.mu.Lock()
	if k := l.keys[key]; k != nil && k.sessions > 0 {
		k.sessions--
	}
	l.mu.Unlock()
}

// sweepLocked forgets keys with no sessions whose bucket has refilled, so
// the map tracks active keys, not every source ever seen.
func (l *limiter) sweepLocked(now time.Time) {
	for key, k := range l.keys {
		if k.sessions == 0 {
			k.connects.fill(now, l.rate, l.burst)
			if k.connects.tokens >= l.burst {
				delete(l.keys, key)
			}
		}
	}
	l.sweepAt = max(minSweep, 2*len(l.keys))
}

// pacer paces one session's upload with a token bucket in bytes. It uses
// the real clock: it waits on timers against bytes on real sockets.
type pacer struct {
	rate  float64 // bytes per second
	burst float64
	b     bucket
	timer *time.Timer
}

// pacerQuantum is the least a pacer waits for, so slow members are served
// in a few large splices rather than many tiny ones.
const pacerQuantum = 4 << 10

func newPacer(bitsPerSecond uint64) *pacer {
	rate := float64(bitsPerSecond) / 8
	// 50 ms of rate, at least one largest UDP datagram.
	return &pacer{rate: rate, burst: max(rate/20, 64<<10)}
}

// grant returns how many of want bytes may be sent now, waiting for tokens
// if needed; 0 when done is closed first.
func (p *pacer) grant(want int, done <-chan struct{}) int {
	for {
		p.b.fill(time.Now(), p.rate, p.burst)
		need := float64(min(want, pacerQuantum))
		if p.b.tokens >= need {
			g := min(want, int(p.b.tokens))
			p.b.tokens -= float64(g)
			return g
		}
		wait := time.Duration((need - p.b.tokens) / p.rate * float64(time.Second))
		if p.timer == nil {
			p.timer = time.NewTimer(wait)
		} else {
			p.timer.Reset(wait)
		}
		select {
		case <-p.timer.C:
		case <-done:
			p.timer.Stop()
			return 0
		}
	}
}

// refund returns tokens granted but not sent.
func (p *pacer) refund(n int) {
	p.b.tokens = min(p.burst, p.b.tokens+float64(n))
}

// allow is the UDP form: a datagram of n bytes passes or is dropped.
func (p *pacer) allow(n int) bool {
	p.b.fill(time.Now(), p.rate, p.burst)
	if p.b.tokens < float64(n) {
		return false
	}
	p.b.tokens -= float64(n)
	return true
}
