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

// accountIn adds one packet of w on-wire bytes to m's and the global
// backlog; accountOut removes one. (One function per direction: each runs
// once per packet, and the fattest-member index is usually untouched.)
func (q *queue) accountIn(m *mstate, w int64) {
	m.bytes += w
	m.pkts++
	q.bytes += w
	q.pkts++
	if m.pkts == 1 {
		q.queuedMembers++
	}
	q.fat.update(m)
}

func (q *queue) accountOut(m *mstate, w int64) {
	m.bytes -= w
	m.pkts--
	q.bytes -= w
	q.pkts--
	if m.pkts == 0 {
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
		q.accountIn(m, s.wire())
		q.linkFIFO(i)
		return
	}
	w := s.wire()
	q.accountIn(m, w)
	q.linkSRR(i, s, w)
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

// linkSRR appends accounted slot i (s, w on-wire bytes) to its member's
// flow queue, activating flow and member (onto their new lists) as needed.
func (q *queue) linkSRR(i sidx, s *slot, w int64) {
	m := s.ms
	ft := m.ft
	if ft == nil {
		ft = q.getTable()
		m.ft = ft
	}
	fi := ft.pick(s.hash)
	f := ft.flow(fi)
	s.next = 0
	if f.tail == 0 {
		f.head = i
	} else {
		q.slots[f.tail].next = i
	}
	f.tail = i
	f.bytes += w
	f.pkts++
	if f.pkts == 1 {
		q.activeFlows++
	}
	if f.list == listNone {
		f.deficit = q.p.quantum
		m.flows.newq.push(ft, fi, listNew)
	}
	if m.list == listNone {
		m.deficit = q.p.quantum * m.weight.Load()
		m.list = listNew
		q.newM.push(m)
	}
}

// popFlow removes the head packet of flow f and returns it, slot index and
// slot: the dequeue path hands slot pointers on rather than re-indexing.
func (q *queue) popFlow(f *flowQ) (sidx, *slot) {
	i := f.head
	s := &q.slots[i]
	f.head = s.next
	if f.head == 0 {
		f.tail = 0
	}
	s.next = 0
	w := s.wire()
	f.bytes -= w
	f.pkts--
	if f.pkts == 0 {
		q.activeFlows--
	}
	q.accountOut(s.ms, w)
	return i, s
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
		i, s := q.popFlow(f)
		dropped += s.wire()
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
	var (
		i sidx
		s *slot
	)
	if q.p.fifo {
		i = q.fifoHead
		if i == 0 {
			return 0
		}
		s = &q.slots[i]
		q.fifoHead = s.next
		if q.fifoHead == 0 {
			q.fifoTail = 0
		}
		s.next = 0
		q.accountOut(s.ms, s.wire())
	} else {
		if i, s = q.dequeueSRR(now); i == 0 {
			return 0
		}
	}
	m := s.ms
	w := uint64(s.wire())
	m.sentBytes += w
	m.c.hist[histBucket(now-s.t)]++
	q.c.sentPkts++
	q.c.sentBytes += w
	return i
}

// dequeueSRR is DRR++ over members (exact), each member running DRR++
// over its flows. RFC 8290 §4.2: a member (flow) that empties while on the
// new list goes to the tail of the old list if that is non-empty, so a
// stream of sparse arrivals cannot starve the old list.
func (q *queue) dequeueSRR(now int64) (sidx, *slot) {
	q.throttleWait = 0
	passed := 0 // capped members passed over in this call
	var minWait int64
	for {
		m := q.newM.head
		fromNew := m != nil
		if !fromNew {
			if m = q.oldM.head; m == nil {
				return 0, nil
			}
		}
		if m.deficit <= 0 {
			// Spent: to the old tail (toOldTail, written out, as with a
			// one-packet quantum this runs for every packet).
			m.deficit += q.p.quantum * m.weight.Load()
			if fromNew {
				q.newM.pop()
				m.list = listOld
				q.oldM.push(m)
			} else {
				q.oldM.rotate()
			}
			continue
		}
		// Members without a cap (the common case) skip the bucket.
		r := m.rate.Load()
		if r > 0 {
			if ok, wait := m.admit(r, now, q.p.quantum); !ok {
				// Over its cap: its turn passes to the next member.
				if passed == 0 || wait < minWait {
					minWait = wait
				}
				if passed++; passed >= q.queuedMembers {
					q.throttleWait = max(minWait, 1)
					return 0, nil
				}
				q.toOldTail(m, fromNew)
				continue
			}
		}
		i, s := q.dequeueMember(m, now)
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
		w := s.wire()
		m.deficit -= int32(w)
		if r > 0 {
			m.tokens -= w
		}
		return i, s
	}
}

// toOldTail moves m, the head of the new list (fromNew) or of the old
// list, to the tail of the old list.
func (q *queue) toOldTail(m *mstate, fromNew bool) {
	if !fromNew {
		q.oldM.rotate()
		return
	}
	q.newM.pop()
	m.list = listOld
	q.oldM.push(m)
}

func (q *queue) popMember(fromNew bool) {
	if fromNew {
		q.newM.pop()
	} else {
		q.oldM.pop()
	}
}

// dequeueMember is DRR++ over m's flows, with CoDel on the chosen flow.
func (q *queue) dequeueMember(m *mstate, now int64) (sidx, *slot) {
	ft, l := m.ft, &m.flows
	for {
		fromNew := l.newq.head != 0
		fl := &l.newq
		if !fromNew {
			if fl = &l.oldq; fl.head == 0 {
				return 0, nil
			}
		}
		fi := fl.head
		f := ft.flow(fi)
		if fl.spent || f.deficit <= 0 {
			f.deficit += q.p.quantum
			if fromNew {
				l.newq.pop(ft)
				l.oldq.push(ft, fi, listOld)
			} else {
				l.oldq.rotate(ft)
			}
			continue
		}
		i, s := q.codelDequeue(f, now)
		if i == 0 {
			fl.pop(ft)
			if fromNew && l.oldq.head != 0 {
				l.oldq.push(ft, fi, listOld)
			} else {
				f.list = listNone
			}
			continue
		}
		f.deficit -= int32(s.wire())
		fl.spent = f.deficit <= 0
		return i, s
	}
}

// codelDequeue is Linux's codel_dequeue on one flow queue, marking CE on
// ECN-capable packets instead of dropping when ECN is on. It returns the
// packet to send, index and slot, or 0 when the queue is (or was dropped)
// empty.
func (q *queue) codelDequeue(f *flowQ, now int64) (sidx, *slot) {
	if f.pkts == 0 {
		f.cd.dropping = false
		return 0, nil
	}
	i, s := q.popFlow(f)
	c := &f.cd
	sojourn := now - s.t
	if !c.dropping && (sojourn < q.p.target || f.bytes <= int64(q.p.mtu)+TunnelOverhead) {
		// The common case, short of shouldDrop and the switch below: the
		// packet is not droppable (firstAbove resets) and CoDel is not in
		// its dropping state, so nothing else changes.
		c.firstAbove = 0
		return i, s
	}
	drop := c.shouldDrop(sojourn, f.bytes, now, q.p)
	switch {
	case c.dropping && !drop:
		c.dropping = false
	case c.dropping && now >= c.dropNext:
		for c.dropping && now >= c.dropNext {
			c.count++
			if q.mark(i) {
				c.dropNext = controlLaw(c.dropNext, q.p.interval, c.count)
				return i, &q.slots[i]
			}
			q.drop(i, true)
			if f.pkts == 0 {
				c.dropping = false
				return 0, nil
			}
			i, _ = q.popFlow(f)
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
				i, _ = q.popFlow(f)
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
	if i == 0 {
		return 0, nil
	}
	return i, &q.slots[i]
}

// mark sets CE on slot i if ECN is enabled and the packet is ECN-capable,
// and reports whether it now carries CE (an already-CE packet counts).
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
			s := &q.slots[i]
			next := s.next
			q.linkSRR(i, s, s.wire())
			i = next
		}
	case !wasFIFO && p.fifo:
		var all []sidx
		for _, l := range []*mlist{&q.newM, &q.oldM} {
			for l.head != nil {
				m := l.pop()
				m.list = listNone
				m.flows = flowLists{}
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
