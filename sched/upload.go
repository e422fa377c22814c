package sched

import (
	"os"
	"time"
)

// Write queues packets from wireguard-go (decrypted upload, packet at
// bufs[i][offset:]) for the drain to write to the real TUN in DRR order.
// It is safe for concurrent use, never blocks and never fails while open:
// packets over the limits are counted drops, as in a qdisc. It returns
// len(bufs), or os.ErrClosed after Close.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.isClosed() {
		return 0, os.ErrClosed
	}
	if d.writeBypass(bufs, offset) {
		return len(bufs), nil
	}
	now := d.nanotime()
	for start := 0; start < len(bufs); start += classifyChunk {
		d.enqueueUp(bufs[start:min(start+classifyChunk, len(bufs))], offset, now)
	}
	nudge(d.wakeDrain)
	return len(bufs), nil
}

// writeBypass writes bufs straight to the inner TUN when nothing is queued
// for upload and no ingress rate applies, and reports whether it did. Like a
// qdisc bypassing its empty queue, this keeps wireguard-go's zero-copy path
// and lets the TUN's GRO coalesce the whole batch; a scheduler only has work
// when a queue forms. writeMu orders bypass writes against the drain: the
// drain holds it from dequeue to write, so a bypass can never overtake
// packets already taken off the queue.
func (d *Device) writeBypass(bufs [][]byte, offset int) bool {
	if p := d.cfg.Load(); !p.bypass || p.ingressRate != 0 || d.upCapped.Load() > 0 {
		return false // a rate-capped member's upload must go through its bucket
	}
	d.upMu.Lock()
	if d.up.pkts != 0 || !d.writeMu.TryLock() {
		d.upMu.Unlock()
		return false
	}
	d.upMu.Unlock()
	_, err := d.inner.Write(bufs, offset)
	d.writeMu.Unlock()
	if err != nil && !d.isClosed() && !errClosedInner(err) {
		d.innerWriteErrors.Add(1)
	}
	d.upBypassPkts.Add(uint64(len(bufs)))
	return true
}

func (d *Device) enqueueUp(bufs [][]byte, offset int, now int64) {
	var (
		ents   [classifyChunk]*memberEntry
		hashes [classifyChunk]uint64
		lastK  addrKey
		last   *memberEntry
	)
	d.reg.mu.RLock()
	for i, b := range bufs {
		if offset < 0 || len(b) <= offset {
			continue
		}
		k, ok, h := classify(b[offset:], false, &d.key)
		if last == nil || k != lastK || !ok {
			last, lastK = d.reg.lookupRLocked(k, ok), k
		}
		ents[i], hashes[i] = last, h
	}
	d.reg.mu.RUnlock()

	d.upMu.Lock()
	defer d.upMu.Unlock()
	q := d.up
	for i, b := range bufs {
		e := ents[i]
		if e == nil {
			continue
		}
		pkt := b[offset:]
		j := q.alloc()
		s := &q.slots[j]
		if need := headroom + len(pkt); cap(s.buf) < need {
			s.buf = make([]byte, max(need, d.bufSize)) // slab growth or jumbo
		}
		s.buf = s.buf[:cap(s.buf)]
		copy(s.buf[headroom:], pkt)
		s.n = int32(len(pkt))
		q.enqueue(j, &e.up, hashes[i], now)
	}
}

// RoutineDrain (started by NewDevice; do not call) writes the up queue to the real TUN in scheduled order, in
// batches of the inner device's BatchSize, paced at IngressRate if set.
// Only this goroutine calls the inner device's Write.
func (d *Device) RoutineDrain() {
	defer d.wg.Done()
	var (
		stage  = make([][]byte, d.batch) // owned buffers, swapped with slots
		out    = make([][]byte, d.batch)
		hashes = make([]uint64, d.batch)
		heads  groHeads
		pace   pacer
		timer  = time.NewTimer(time.Hour)
		waitNs int64
	)
	timer.Stop()
	for i := range stage {
		stage[i] = make([]byte, d.bufSize)
	}
	for {
		if waitNs > 0 {
			timer.Reset(time.Duration(waitNs))
			select {
			case <-d.wakeDrain:
			case <-timer.C:
			case <-d.closed:
				return
			}
			timer.Stop()
		} else {
			select {
			case <-d.wakeDrain:
			case <-d.closed:
				return
			}
		}
		for {
			p := d.cfg.Load()
			now := d.nanotime()
			pace.configure(p.ingressRate, p.burst, p.quantum, now)
			budget, wait := pace.allowance(now)
			waitNs = wait
			if budget <= 0 {
				break
			}
			d.writeMu.Lock()
			n, wire, throttled := d.dequeueUp(now, stage, out, hashes, budget)
			if n == 0 {
				d.writeMu.Unlock()
				waitNs = throttled // 0: wait for data; >0: a capped member's tokens
				break
			}
			pace.charge(wire)
			if d.batch > 1 {
				heads.prepare(out[:n], hashes[:n])
			}
			_, err := d.inner.Write(out[:n], headroom)
			d.writeMu.Unlock()
			if err != nil {
				if d.isClosed() || errClosedInner(err) {
					return
				}
				d.innerWriteErrors.Add(1)
			}
			for k := range n {
				if cap(stage[k]) > d.bufSize { // a jumbo packet's buffer: let it go
					stage[k] = make([]byte, d.bufSize)
				}
			}
		}
	}
}

// dequeueUp swaps up to len(stage) packets worth about budget bytes out of
// the up queue into stage, and slices them into out for the inner Write.
func (d *Device) dequeueUp(now int64, stage, out [][]byte, hashes []uint64, budget int64) (n int, wire, throttled int64) {
	d.upMu.Lock()
	defer d.upMu.Unlock()
	q := d.up
	for n < len(stage) && budget > 0 {
		i := q.dequeue(now)
		if i == 0 {
			break
		}
		s := &q.slots[i]
		w := s.wire()
		budget -= w
		wire += w
		stage[n], s.buf = s.buf, stage[n]
		out[n] = stage[n][:headroom+int(s.n)]
		hashes[n] = s.hash
		q.release(i)
		n++
	}
	if n == 0 && q.pkts > 0 {
		throttled = q.throttleWait
	}
	return n, wire, throttled
}

// groHeads lets the inner TUN's GRO coalesce uploads. Linux's TUN Write
// (offload on, BatchSize > 1) appends each flow's later segments into the
// spare capacity of the flow's first packet in the batch; queue slots are
// MTU-sized, so the first packet of each flow in a batch is copied into a
// 64 KiB buffer. That is one extra copy per flow per batch (not per
// packet), which buys one write syscall per flow instead of per packet.
type groHeads struct {
	bufs [][]byte // 64 KiB buffers, allocated on first use
	seen [256]uint64
	gen  [256]uint32
	cur  uint32
}

func (g *groHeads) prepare(out [][]byte, hashes []uint64) {
	g.cur++
	used := 0
	for k, h := range hashes {
		slot := int(h & 255)
		if g.gen[slot] == g.cur && g.seen[slot] == h {
			continue // a later packet of a flow already headed
		}
		g.gen[slot], g.seen[slot] = g.cur, h
		if used == len(g.bufs) {
			g.bufs = append(g.bufs, make([]byte, headroom+65535))
		}
		b := g.bufs[used]
		used++
		copy(b[headroom:], out[k][headroom:])
		out[k] = b[:len(out[k])]
	}
}
