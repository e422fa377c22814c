package sched

import (
	"math/bits"
	"sync/atomic"
)

// Member list membership of an mstate (and of a flowQ).
const (
	listNone = iota
	listNew
	listOld
)

// histBuckets is the number of sojourn-time histogram buckets; bucket i
// counts sojourn times below HistogramBound(i), the last one everything else.
const histBuckets = 16

// histShift makes bucket 0 "below 2^15 ns" (32.8 µs); each next bucket
// doubles the bound, the last open bucket starts at ≈ 0.54 s.
const histShift = 15

func histBucket(sojourn int64) int {
	if sojourn <= 0 {
		return 0
	}
	return min(bits.Len64(uint64(sojourn)>>histShift), histBuckets-1)
}

// memberEntry is one registered member: its identity, weight and the queue
// state of each direction. Entries are immutable except weight.
type memberEntry struct {
	id     uint32
	addrs  []addrKey
	weight atomic.Int32 // 1..64, read by the schedulers at each refill
	// rateDown and rateUp cap the member's download and upload in on-wire
	// bits/s (0 = no cap); read by the srr scheduler at each turn.
	rateDown, rateUp atomic.Uint64
	down             mstate // guarded by Device.downMu
	up               mstate // guarded by Device.upMu
}

func newMemberEntry(id uint32, weight int) *memberEntry {
	e := &memberEntry{id: id}
	e.weight.Store(clampWeight(weight))
	e.down.ent, e.down.fatBucket, e.down.rate = e, -1, &e.rateDown
	e.up.ent, e.up.fatBucket, e.up.rate = e, -1, &e.rateUp
	return e
}

// mstate is one member's queue state in one direction's scheduler. All of
// it is guarded by that scheduler's lock.
type mstate struct {
	ent     *memberEntry
	next    *mstate // in the scheduler's new or old list
	list    uint8
	deficit int32
	ft      *flowTable // non-nil while on a list (srr only)

	bytes, pkts int64 // queued, on-wire bytes

	// Rate cap (srr only): a token bucket in on-wire bytes, refilled at
	// *rate bits/s; a member without tokens is passed over in its turn.
	rate    *atomic.Uint64
	tokens  int64
	tokAt   int64 // ns of the last refill
	tokInit bool  // the bucket has been filled once

	// fattest-member index: doubly linked list of members whose queued
	// bytes have the same bit length.
	fatPrev, fatNext *mstate
	fatBucket        int8 // -1 = not indexed (empty)

	c memberCounters
}

// memberCounters are the cumulative per-member, per-direction counters.
type memberCounters struct {
	sentPkts, sentBytes uint64
	overflowDrops       uint64
	codelDrops          uint64
	marks               uint64
	hist                [histBuckets]uint64
}

// mlist is a singly linked FIFO of members.
type mlist struct{ head, tail *mstate }

func (l *mlist) push(m *mstate) {
	m.next = nil
	if l.tail == nil {
		l.head = m
	} else {
		l.tail.next = m
	}
	l.tail = m
}

func (l *mlist) pop() *mstate {
	m := l.head
	l.head = m.next
	if l.head == nil {
		l.tail = nil
	}
	m.next = nil
	return m
}

// fatIndex finds the member with (within a factor of two) the most queued
// bytes in O(1): members are kept in lists by bit length of their backlog
// and a bitmap says which lists are non-empty.
type fatIndex struct {
	heads  [64]*mstate
	bitmap uint64
}

func (x *fatIndex) update(m *mstate) {
	b := int8(-1)
	if m.bytes > 0 {
		b = int8(bits.Len64(uint64(m.bytes)))
	}
	if b == m.fatBucket {
		return
	}
	if m.fatBucket >= 0 {
		x.unlink(m)
	}
	m.fatBucket = b
	if b >= 0 {
		m.fatPrev = nil
		m.fatNext = x.heads[b]
		if m.fatNext != nil {
			m.fatNext.fatPrev = m
		}
		x.heads[b] = m
		x.bitmap |= 1 << uint(b)
	}
}

func (x *fatIndex) unlink(m *mstate) {
	b := m.fatBucket
	if m.fatPrev != nil {
		m.fatPrev.fatNext = m.fatNext
	} else {
		x.heads[b] = m.fatNext
	}
	if m.fatNext != nil {
		m.fatNext.fatPrev = m.fatPrev
	}
	if x.heads[b] == nil {
		x.bitmap &^= 1 << uint(b)
	}
	m.fatPrev, m.fatNext = nil, nil
}

// fattest returns a member whose backlog is at least half the largest, or
// nil when nothing is queued.
func (x *fatIndex) fattest() *mstate {
	if x.bitmap == 0 {
		return nil
	}
	return x.heads[bits.Len64(x.bitmap)-1]
}

// capBurst is the rate cap's bucket depth in time at the capped rate; at
// least two quanta so a capped member can always send a whole packet.
const capBurst = 5_000_000 // 5 ms

// admit refills m's token bucket for rate r (bits/s) at now and reports
// whether m may send; if not, wait is how long until it may (ns).
func (m *mstate) admit(r uint64, now int64, quantum int32) (ok bool, wait int64) {
	bps := int64(r / 8)
	burst := max(bps*capBurst/1e9, 2*int64(quantum))
	if !m.tokInit {
		m.tokens, m.tokAt, m.tokInit = burst, now, true
	}
	if dt := now - m.tokAt; dt > 0 {
		m.tokens = min(burst, m.tokens+bps*dt/1e9)
		m.tokAt = now
	}
	if m.tokens > 0 {
		return true, 0
	}
	return false, (-m.tokens + 1) * 1e9 / max(bps, 1)
}
