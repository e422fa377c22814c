package sched

import "math"

// codel is the CoDel state of one flow queue (RFC 8289), in the shape of
// Linux's codel_dequeue. Times are nanoseconds on the scheduler clock.
type codel struct {
	firstAbove int64  // when sojourn first stayed above target, + interval; 0 = below
	dropNext   int64  // next drop or mark while dropping
	count      uint32 // drops/marks since entering the dropping state
	lastCount  uint32
	dropping   bool
}

// controlLaw returns t + interval/√count.
func controlLaw(t, interval int64, count uint32) int64 {
	return t + int64(float64(interval)/math.Sqrt(float64(max(count, 1))))
}

// shouldDrop reports whether a packet with the given sojourn time, leaving
// backlog bytes behind in its queue, is droppable: sojourn has stayed above
// target for at least one interval and more than one MTU remains queued.
func (c *codel) shouldDrop(sojourn, backlog, now int64, p *params) bool {
	if sojourn < p.target || backlog <= int64(p.mtu)+TunnelOverhead {
		c.firstAbove = 0
		return false
	}
	if c.firstAbove == 0 {
		c.firstAbove = now + p.interval
		return false
	}
	return now >= c.firstAbove
}
