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

// memberEntry is one registered member: its identity and the queue state
// of each direction (which holds its weight and rate caps). Entries are
// immutable except addrs (guarded by registry.mu), weight and rates.
type memberEntry struct {
	down  mstate // guarded by Device.downMu
	up    mstate // guarded by Device.upMu
	id    uint32
	addrs []addrKey
}

func newMemberEntry(id uint32, weight int) *memberEntry {
	e := &memberEntry{id: id}
	e.setWeight(weight)
	e.down.ent, e.up.ent = e, e
	return e
}

// setWeight sets the DRR weight (clamped to 1..64) of both directions.
func (e *memberEntry) setWeight(w int) {
	cw := clampWeight(w)
	e.down.weight.Store(cw)
	e.up.weight.Store(cw)
}

func (e *memberEntry) weight() int32 { return e.down.weight.Load() }

// mstate is one member's queue state in one direction's scheduler. All of
// it is guarded by that scheduler's lock, except the atomics.
//
// Field order matters: the scheduler serves hundreds of members in turn,
// so a packet's cost is mostly cache misses on member and flow state. The
// first 64 bytes hold everything an enqueue or dequeue reads
// (TestMemberLayout), so they span at most two cache lines wherever the
// allocator puts the entry; the counters, only written, follow.
type mstate struct {
	next  *mstate    // in the scheduler's new or old list
	ft    *flowTable // non-nil while on a list (srr only)
	bytes int64      // queued on-wire bytes
	pkts  int64      // queued packets
	// rate caps the member in this direction in on-wire bits/s (0 = no
	// cap), read by the srr scheduler at each turn.
	rate      atomic.Uint64
	weight    atomic.Int32 // 1..64, read by the schedulers at each refill
	deficit   int32
	flows     flowLists // DRR++ lists over ft
	list      uint8
	fatBucket int8   // bit length of bytes; 0 = not indexed (empty)
	sentBytes uint64 // on-wire bytes handed out

	c memberCounters

	ent *memberEntry

	// fattest-member index: doubly linked list of members whose queued
	// bytes have the same bit length.
	fatPrev, fatNext *mstate

	// Rate cap (srr only): a token bucket in on-wire bytes, refilled at
	// rate bits/s; a member without tokens is passed over in its turn.
	tokens  int64
	tokRem  uint64 // bit·ns earned beyond tokens (< one byte)
	tokAt   int64  // ns of the last refill
	tokInit bool   // the bucket has been filled once
}

// memberCounters are the cumulative per-member, per-direction counters
// besides sentBytes. Sent packets are the histogram's total.
type memberCounters struct {
	hist          [histBuckets]uint64
	overflowDrops uint64
	codelDrops    uint64
	marks         uint64
}

// sentPkts returns the packets handed out (each was counted in hist once).
func (m *mstate) sentPkts() uint64 {
	var n uint64
	for _, c := range m.c.hist {
		n += c
	}
	return n
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

// rotate moves the head to the tail (pop then push, in fewer steps).
func (l *mlist) rotate() {
	m := l.head
	if m == l.tail {
		return
	}
	l.head = m.next
	m.next = nil
	l.tail.next = m
	l.tail = m
}

// fatIndex finds the member with (within a factor of two) the most queued
// bytes in O(1): members are kept in lists by bit length of their backlog
// and a bitmap says which lists are non-empty.
type fatIndex struct {
	heads  [64]*mstate
	bitmap uint64
}

// update re-files m after its backlog changed; inlined, so the common case
// (same bit length) costs a compare.
func (x *fatIndex) update(m *mstate) {
	if b := int8(bits.Len64(uint64(m.bytes))); b != m.fatBucket {
		x.move(m, b)
	}
}

// move files m under bucket b (0 = empty, not indexed).
func (x *fatIndex) move(m *mstate, b int8) {
	if m.fatBucket != 0 {
		x.unlink(m)
	}
	m.fatBucket = b
	if b != 0 {
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
	burst := max(bytesIn(capBurst, r), 2*int64(quantum))
	if !m.tokInit {
		m.tokens, m.tokAt, m.tokRem, m.tokInit = burst, now, 0, true
	}
	if dt := now - m.tokAt; dt > 0 {
		m.tokAt = now
		m.tokens, m.tokRem = refill(m.tokens, m.tokRem, burst, dt, r)
	}
	if m.tokens > 0 {
		return true, 0
	}
	return false, waitFor(1-m.tokens, m.tokRem, r)
}

// refill adds dt ns at rate bits/s to a bucket of tokens bytes plus rem
// bit·ns (< 8e9: the part of a byte not yet credited), capped at depth.
// 128-bit, since bytes/s × ns overflows int64 after 74 s at 1 Gbit/s, and
// the remainder is kept, since a member whose turns come faster than it
// earns a byte would otherwise never earn one.
func refill(tokens int64, rem uint64, depth, dt int64, rate uint64) (int64, uint64) {
	if tokens >= depth {
		return depth, 0
	}
	hi, lo := bits.Mul64(uint64(dt), rate)
	lo, c := bits.Add64(lo, rem, 0)
	hi += c
	if hi >= 8e9 { // ≥ 2^64 bytes: full
		return depth, 0
	}
	var add uint64
	if hi == 0 {
		add, rem = lo/8e9, lo%8e9
	} else {
		add, rem = bits.Div64(hi, lo, 8e9)
	}
	if add >= uint64(depth-tokens) {
		return depth, 0
	}
	return tokens + int64(add), rem
}

// waitFor returns the ns until a bucket that lacks need bytes, less rem
// bit·ns already earned, has them at rate bits/s (rounded up).
func waitFor(need int64, rem, rate uint64) int64 {
	hi, lo := bits.Mul64(uint64(need), 8e9)
	lo, b := bits.Sub64(lo, rem, 0)
	hi -= b
	if hi >= rate {
		return 1 << 62
	}
	q, r := bits.Div64(hi, lo, rate)
	if r != 0 {
		q++
	}
	return int64(min(q, 1<<62))
}
