package sched

import "slices"

// headroom is the space kept in front of every queued packet: room for the
// virtio-net header that the Linux TUN's GRO write path prepends in place
// (virtioNetHdrLen is 10; wireguard-go itself leaves 16).
const headroom = 16

// sidx is a 1-based index into the packet slab; 0 means none.
type sidx = int32

// slot is one queued packet. The slab of slots doubles as the buffer pool:
// a slot keeps its buffer while free, so the steady state allocates nothing.
type slot struct {
	buf  []byte  // packet at buf[headroom : headroom+n]
	ms   *mstate // owner, for accounting and for fifo↔srr migration
	hash uint64  // flow hash
	t    int64   // enqueue time, ns
	seq  uint64  // arrival order
	next sidx
	n    int32
}

func (s *slot) wire() int64 { return int64(s.n) + TunnelOverhead }
func (s *slot) pkt() []byte { return s.buf[headroom : headroom+int(s.n)] }

// queue is one direction's scheduler: srr (two-level DRR++ with CoDel) or
// fifo, over a shared slab. It is not safe for concurrent use; the Device
// guards each direction's queue with its own mutex.
type queue struct {
	p   *params
	lim limits

	slots []slot // slots[0] unused
	free  sidx   // free list through slot.next

	// srr
	newM, oldM mlist
	tables     []*flowTable // spare flow tables

	// fifo
	fifoHead, fifoTail sidx

	fat   fatIndex
	bytes int64 // queued on-wire bytes
	pkts  int64
	seq   uint64

	queuedMembers int // members with at least one packet queued
	// throttleWait is set by a dequeue that found only rate-capped members
	// without tokens: ns until the first may send again (0 otherwise).
	throttleWait int64
	activeFlows  int // non-empty flow queues (srr)

	c dirCounters
}

// dirCounters are one direction's cumulative counters.
type dirCounters struct {
	enqPkts       uint64
	sentPkts      uint64
	sentBytes     uint64
	overflowDrops uint64
	codelDrops    uint64
	marks         uint64
}

func newQueue(p *params, lim limits) *queue {
	return &queue{p: p, lim: lim, slots: make([]slot, 1, 256)}
}

// alloc takes a free slot, growing the slab if needed. Its buf may be nil
// or of any capacity; the caller fills it and sets n, then calls enqueue.
func (q *queue) alloc() sidx {
	if i := q.free; i != 0 {
		q.free = q.slots[i].next
		q.slots[i].next = 0
		return i
	}
	q.slots = append(q.slots, slot{})
	return sidx(len(q.slots) - 1)
}

// release returns slot i to the free list, keeping its buffer.
func (q *queue) release(i sidx) {
	s := &q.slots[i]
	s.ms = nil
	s.next = q.free
	q.free = i
}

// account adds (sign 1) or removes (sign -1) slot i from the member and
// global backlogs.
func (q *queue) account(i sidx, sign int64) {
	s := &q.slots[i]
	m := s.ms
	w := s.wire() * sign
	m.bytes += w
	m.pkts += sign
	q.bytes += w
	q.pkts += sign
	switch {
	case sign > 0 && m.pkts == 1:
		q.queuedMembers++
	case sign < 0 && m.pkts == 0:
		q.queuedMembers--
	}
	q.fat.update(m)
}

// enqueue queues slot i (buf and n already set) for member m at time now
// and enforces the limits: srr head-drops from the fattest flow of the
// fattest member, fifo tail-drops the arriving packet.
func (q *queue) enqueue(i sidx, m *mstate, hash uint64, now int64) {
	s := &q.slots[i]
	s.ms, s.hash, s.t, s.seq = m, hash, now, q.seq
	q.seq++
	q.c.enqPkts++
	if q.p.fifo {
		if q.pkts+1 > q.lim.packets || q.bytes+s.wire() > q.lim.bytes {
			m.c.overflowDrops++
			q.c.overflowDrops++
			q.release(i)
			return
		}
		q.account(i, 1)
		q.linkFIFO(i)
		return
	}
	q.account(i, 1)
	q.linkSRR(i)
	for q.pkts > q.lim.packets || q.bytes > q.lim.bytes {
		q.overflowDrop()
	}
}

func (q *queue) linkFIFO(i sidx) {
	q.slots[i].next = 0
	if q.fifoTail == 0 {
		q.fifoHead = i
	} else {
		q.slots[q.fifoTail].next = i
	}
	q.fifoTail = i
}

// linkSRR appends an accounted slot to its member's flow queue, activating
// flow and member (onto their new lists) as needed.
func (q *queue) linkSRR(i sidx) {
	s := &q.slots[i]
	m := s.ms
	if m.ft == nil {
		m.ft = q.getTable()
	}
	ft := m.ft
	fi := ft.pick(s.hash)
	f := ft.flow(fi)
	s.next = 0
	if f.tail == 0 {
		f.head = i
	} else {
		q.slots[f.tail].next = i
	}
	f.tail = i
	f.bytes += s.wire()
	f.pkts++
	if f.pkts == 1 {
		q.activeFlows++
	}
	if f.list == listNone {
		f.deficit = q.p.quantum
		ft.pushNew(fi)
	}
	if m.list == listNone {
		m.deficit = q.p.quantum * m.ent.weight.Load()
		m.list = listNew
		q.newM.push(m)
	}
}

// popFlow removes the head packet of flow f of member m.
func (q *queue) popFlow(f *flowQ) sidx {
	i := f.head
	s := &q.slots[i]
	f.head = s.next
	if f.head == 0 {
		f.tail = 0
	}
	s.next = 0
	f.bytes -= s.wire()
	f.pkts--
	if f.pkts == 0 {
		q.activeFlows--
	}
	q.account(i, -1)
	return i
}

// drop discards an unlinked, unaccounted slot.
func (q *queue) drop(i sidx, codelDrop bool) {
	m := q.slots[i].ms
	if codelDrop {
		m.c.codelDrops++
		q.c.codelDrops++
	} else {
		m.c.overflowDrops++
		q.c.overflowDrops++
	}
	q.release(i)
}

// overflowDrop head-drops up to half the bytes (at most 64 packets, at
// least one) of the fattest flow of the (approximately) fattest member, as
// fq_codel_drop does, without scanning all members.
func (q *queue) overflowDrop() {
	m := q.fat.fattest()
	f := m.ft.flow(m.ft.fattest())
	threshold := f.bytes / 2
	var dropped int64
	for n := 0; n < 64 && f.pkts > 0; n++ {
		i := q.popFlow(f)
		dropped += q.slots[i].wire()
		q.drop(i, false)
		if dropped >= threshold {
			break
		}
	}
}

// dequeue returns the next packet to send at time now (the caller copies it
// out or swaps its buffer, then calls release), or 0 when nothing is queued.
// Packets CoDel drops on the way are counted and released here.
func (q *queue) dequeue(now int64) sidx {
	var i sidx
	if q.p.fifo {
		i = q.fifoHead
		if i == 0 {
			return 0
		}
		q.fifoHead = q.slots[i].next
		if q.fifoHead == 0 {
			q.fifoTail = 0
		}
		q.slots[i].next = 0
		q.account(i, -1)
	} else {
		i = q.dequeueSRR(now)
		if i == 0 {
			return 0
		}
	}
	s := &q.slots[i]
	m := s.ms
	w := uint64(s.wire())
	m.c.sentPkts++
	m.c.sentBytes += w
	m.c.hist[histBucket(now-s.t)]++
	q.c.sentPkts++
	q.c.sentBytes += w
	return i
}

// dequeueSRR is DRR++ over members (exact), each member running DRR++
// over its flows. RFC 8290 §4.2: a member (flow) that empties while on the
// new list goes to the tail of the old list if that is non-empty, so a
// stream of sparse arrivals cannot starve the old list.
func (q *queue) dequeueSRR(now int64) sidx {
	q.throttleWait = 0
	passed := 0 // capped members passed over in this call
	var minWait int64
	for {
		fromNew := q.newM.head != nil
		var m *mstate
		if fromNew {
			m = q.newM.head
		} else if m = q.oldM.head; m == nil {
			return 0
		}
		if m.deficit <= 0 {
			m.deficit += q.p.quantum * m.ent.weight.Load()
			q.popMember(fromNew)
			m.list = listOld
			q.oldM.push(m)
			continue
		}
		r := m.rate.Load()
		if r > 0 {
			if ok, wait := m.admit(r, now, q.p.quantum); !ok {
				// Over its cap: its turn passes to the next member.
				if passed == 0 || wait < minWait {
					minWait = wait
				}
				if passed++; passed >= q.queuedMembers {
					q.throttleWait = max(minWait, 1)
					return 0
				}
				q.popMember(fromNew)
				m.list = listOld
				q.oldM.push(m)
				continue
			}
		}
		i := q.dequeueMember(m, now)
		if i == 0 {
			q.popMember(fromNew)
			if fromNew && q.oldM.head != nil {
				m.list = listOld
				q.oldM.push(m)
			} else {
				m.list = listNone
				q.putTable(m.ft)
				m.ft = nil
			}
			continue
		}
		w := q.slots[i].wire()
		m.deficit -= int32(w)
		if r > 0 {
			m.tokens -= w
		}
		return i
	}
}

func (q *queue) popMember(fromNew bool) {
	if fromNew {
		q.newM.pop()
	} else {
		q.oldM.pop()
	}
}

// dequeueMember is DRR++ over m's flows, with CoDel on the chosen flow.
func (q *queue) dequeueMember(m *mstate, now int64) sidx {
	ft := m.ft
	for {
		fromNew := ft.newHead != 0
		fi := ft.newHead
		if !fromNew {
			if fi = ft.oldHead; fi == 0 {
				return 0
			}
		}
		f := ft.flow(fi)
		if f.deficit <= 0 {
			f.deficit += q.p.quantum
			ft.popHead(fromNew)
			ft.pushOld(fi)
			continue
		}
		i := q.codelDequeue(f, now)
		if i == 0 {
			ft.popHead(fromNew)
			if fromNew && ft.oldHead != 0 {
				ft.pushOld(fi)
			} else {
				f.list = listNone
			}
			continue
		}
		f.deficit -= int32(q.slots[i].wire())
		return i
	}
}

// codelDequeue is Linux's codel_dequeue on one flow queue, marking CE on
// ECN-capable packets instead of dropping when ECN is on.
func (q *queue) codelDequeue(f *flowQ, now int64) sidx {
	if f.pkts == 0 {
		f.cd.dropping = false
		return 0
	}
	i := q.popFlow(f)
	c := &f.cd
	drop := c.shouldDrop(now-q.slots[i].t, f.bytes, now, q.p)
	switch {
	case c.dropping && !drop:
		c.dropping = false
	case c.dropping && now >= c.dropNext:
		for c.dropping && now >= c.dropNext {
			c.count++
			if q.mark(i) {
				c.dropNext = controlLaw(c.dropNext, q.p.interval, c.count)
				return i
			}
			q.drop(i, true)
			if f.pkts == 0 {
				c.dropping = false
				return 0
			}
			i = q.popFlow(f)
			if !c.shouldDrop(now-q.slots[i].t, f.bytes, now, q.p) {
				c.dropping = false
			} else {
				c.dropNext = controlLaw(c.dropNext, q.p.interval, c.count)
			}
		}
	case !c.dropping && drop:
		if !q.mark(i) {
			q.drop(i, true)
			if f.pkts == 0 {
				i = 0
			} else {
				i = q.popFlow(f)
				c.shouldDrop(now-q.slots[i].t, f.bytes, now, q.p)
			}
		}
		c.dropping = true
		delta := c.count - c.lastCount
		c.count = 1
		if delta > 1 && now-c.dropNext < 16*q.p.interval {
			c.count = delta
		}
		c.lastCount = c.count
		c.dropNext = controlLaw(now, q.p.interval, c.count)
	}
	return i
}

// mark sets CE on slot i if ECN is enabled and the packet is ECN-capable.
func (q *queue) mark(i sidx) bool {
	if !q.p.ecn || !markCE(q.slots[i].pkt()) {
		return false
	}
	q.slots[i].ms.c.marks++
	q.c.marks++
	return true
}

func (q *queue) getTable() *flowTable {
	if n := len(q.tables); n > 0 {
		ft := q.tables[n-1]
		q.tables = q.tables[:n-1]
		return ft
	}
	return new(flowTable)
}

func (q *queue) putTable(ft *flowTable) {
	if ft == nil || len(q.tables) >= maxTablePool {
		return
	}
	*ft = flowTable{}
	q.tables = append(q.tables, ft)
}

// setParams installs new parameters. Switching between fifo and srr
// migrates every queued packet, in arrival order, without dropping any;
// lower limits are enforced by the next enqueue.
func (q *queue) setParams(p *params, lim limits) {
	wasFIFO := q.p.fifo
	q.p, q.lim = p, lim
	switch {
	case wasFIFO && !p.fifo:
		i := q.fifoHead
		q.fifoHead, q.fifoTail = 0, 0
		for i != 0 {
			next := q.slots[i].next
			q.linkSRR(i)
			i = next
		}
	case !wasFIFO && p.fifo:
		var all []sidx
		for _, l := range []*mlist{&q.newM, &q.oldM} {
			for l.head != nil {
				m := l.pop()
				m.list = listNone
				for fi := range m.ft.flows {
					f := &m.ft.flows[fi]
					for f.pkts > 0 {
						i := f.head
						f.head = q.slots[i].next
						f.pkts--
						all = append(all, i)
					}
				}
				q.putTable(m.ft)
				m.ft = nil
			}
		}
		slices.SortFunc(all, func(a, b sidx) int {
			if q.slots[a].seq < q.slots[b].seq {
				return -1
			}
			return 1
		})
		for _, i := range all {
			q.linkFIFO(i)
		}
		q.activeFlows = 0
	}
}
