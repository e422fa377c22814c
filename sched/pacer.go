package sched

import "math/bits"

// pacer is a token bucket in on-wire bytes: rate bits/s, depth burst.
// Tokens may go negative by one packet (a deficit); callers wait until
// they are positive again. Not safe for concurrent use.
type pacer struct {
	rate   uint64 // bits/s; 0 = unpaced
	depth  int64  // bytes
	tokens int64
	last   int64 // ns
}

// bytesIn returns how many bytes rate bits/s allows in ns nanoseconds.
func bytesIn(ns int64, rate uint64) int64 {
	if ns <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(ns), rate)
	if hi >= 8e9 {
		return 1 << 62
	}
	q, _ := bits.Div64(hi, lo, 8e9)
	return int64(min(q, 1<<62))
}

// configure applies a (possibly new) rate and burst time, keeping tokens.
func (p *pacer) configure(rate uint64, burstNs int64, quantum int32, now int64) {
	if rate != p.rate {
		p.rate = rate
		p.tokens = 0
		p.last = now
	}
	p.depth = max(bytesIn(burstNs, rate), 2*int64(quantum))
}

// allowance refills the bucket to now and returns the bytes that may be sent
// now (≤ 0: wait waitNs first). Unpaced pacers allow everything.
func (p *pacer) allowance(now int64) (allow, waitNs int64) {
	if p.rate == 0 {
		return 1 << 62, 0
	}
	if now > p.last {
		p.tokens = min(p.tokens+bytesIn(now-p.last, p.rate), p.depth)
		p.last = now
	}
	if p.tokens > 0 {
		return p.tokens, 0
	}
	need := uint64(1 - p.tokens)
	hi, lo := bits.Mul64(need, 8e9)
	if hi >= p.rate {
		return p.tokens, 1 << 62
	}
	q, _ := bits.Div64(hi, lo, p.rate)
	return p.tokens, int64(q) + 1
}

// charge spends bytes.
func (p *pacer) charge(bytes int64) {
	if p.rate != 0 {
		p.tokens -= bytes
	}
}
