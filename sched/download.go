package sched

import (
	"errors"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// RoutineReadInner (started by NewDevice; do not call) reads the real TUN eagerly into the down queue, so the
// kernel's 500-slot TUN ring never fills and the queue forms here. Read
// buffers are swapped into queue slots, not copied.
func (d *Device) RoutineReadInner() {
	defer d.wg.Done()
	var (
		bufs   = make([][]byte, d.batch)
		sizes  = make([]int, d.batch)
		ents   = make([]*memberEntry, d.batch)
		hashes = make([]uint64, d.batch)
		failed int
	)
	for i := range bufs {
		bufs[i] = make([]byte, d.bufSize)
	}
	for {
		n, err := d.inner.Read(bufs, sizes, headroom)
		if n > 0 {
			d.enqueueDown(bufs[:n], sizes[:n], ents, hashes)
		}
		if err == nil || errors.Is(err, tun.ErrTooManySegments) {
			if err != nil {
				d.innerReadErrors.Add(1)
			}
			failed = 0
			continue
		}
		if d.isClosed() {
			return
		}
		d.innerReadErrors.Add(1)
		if failed++; failed < maxReadErrors && !errClosedInner(err) {
			if failed == 1 {
				d.log.Warn("sched: read from TUN failed; skipping", "err", err)
			}
			continue
		}
		d.log.Error("sched: reader stopped", "err", err)
		d.downMu.Lock()
		d.readErr = err
		d.downMu.Unlock()
		nudge(d.wakeRead)
		return
	}
}

// enqueueDown classifies one batch by inner destination and queues it.
func (d *Device) enqueueDown(bufs [][]byte, sizes []int, ents []*memberEntry, hashes []uint64) {
	now := d.nanotime()
	d.reg.mu.RLock()
	var lastKey addrKey
	var last *memberEntry
	for i, b := range bufs {
		sz := sizes[i]
		if sz < 1 || sz > len(b)-headroom {
			ents[i] = nil
			continue
		}
		k, ok, h := classify(b[headroom:headroom+sz], true, &d.key)
		if last == nil || k != lastKey || !ok {
			last, lastKey = d.reg.lookupRLocked(k, ok), k
		}
		ents[i], hashes[i] = last, h
	}
	d.reg.mu.RUnlock()

	d.downMu.Lock()
	q := d.down
	for i, e := range ents[:len(bufs)] {
		if e == nil {
			continue
		}
		j := q.alloc()
		s := &q.slots[j]
		spare := s.buf
		if cap(spare) < d.bufSize {
			spare = make([]byte, d.bufSize) // slab growth only
		}
		s.buf, bufs[i] = bufs[i], spare[:cap(spare)]
		s.n = int32(sizes[i])
		q.enqueue(j, &e.down, hashes[i], now)
	}
	d.downMu.Unlock()
	nudge(d.wakeRead)
}

// Read hands queued download packets to wireguard-go in scheduled order,
// at most len(bufs), within the budget of the pacer and the in-flight
// bound. It blocks until at least one packet may go, the device closes
// (os.ErrClosed), or the inner device failed for good (that error).
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.readMu.Lock()
	defer d.readMu.Unlock()
	for {
		if d.isClosed() {
			return 0, os.ErrClosed
		}
		p := d.cfg.Load()
		now := d.nanotime()
		d.egress.configure(p.egressRate, p.burst, p.quantum, now)
		budget, wait := d.egress.allowance(now)
		if budget > 0 {
			avail, iwait := d.infl.available(now, p.inflightLimit, p.expire)
			budget = min(budget, avail)
			wait = iwait
		}
		if budget > 0 {
			n, throttled, err := d.dequeueDown(now, len(bufs), budget)
			if n > 0 {
				return d.copyOut(p, now, bufs, sizes, offset), nil
			}
			if err != nil {
				return 0, err
			}
			// Nothing sendable: wait for data, or until a rate-capped
			// member has tokens again.
			wait = throttled
		}
		d.waitRead(wait)
	}
}

// dequeueDown moves up to max packets worth about budget on-wire bytes
// from the down queue into readStage. When it moves none although packets
// are queued, throttled is how long until a rate-capped member may send.
func (d *Device) dequeueDown(now int64, maxPkts int, budget int64) (n int, throttled int64, err error) {
	d.readStage = d.readStage[:0]
	d.readLens = d.readLens[:0]
	d.downMu.Lock()
	defer d.downMu.Unlock()
	q := d.down
	for len(d.readStage) < maxPkts && budget > 0 {
		i := q.dequeue(now)
		if i == 0 {
			break
		}
		s := &q.slots[i]
		budget -= s.wire()
		spare := d.spareStage(len(d.readStage))
		d.readStage = append(d.readStage, s.buf)
		d.readLens = append(d.readLens, s.n)
		s.buf = spare
		q.release(i)
	}
	if len(d.readStage) == 0 {
		if q.pkts == 0 {
			return 0, 0, d.readErr
		}
		return 0, q.throttleWait, nil
	}
	return len(d.readStage), 0, nil
}

// spareStage returns the buffer parked at readStage[k] by the previous
// Read (nil before the first), to be swapped into a freed slot.
func (d *Device) spareStage(k int) []byte {
	if k < cap(d.readStage) {
		return d.readStage[:k+1][k]
	}
	return nil
}

// copyOut copies the staged packets into wireguard-go's buffers (the one
// copy of the download path) and charges pacer and in-flight bound.
func (d *Device) copyOut(p *params, now int64, bufs [][]byte, sizes []int, offset int) int {
	n := 0
	var wire, debt int64
	for k, b := range d.readStage {
		ln := int(d.readLens[k])
		if offset+ln > len(bufs[n]) {
			d.oversizeDrops.Add(1)
			continue
		}
		copy(bufs[n][offset:], b[headroom:headroom+ln])
		sizes[n] = ln
		n++
		wire += int64(ln) + TunnelOverhead
		debt += wgMessageLen(ln, int(p.mtu))
	}
	d.egress.charge(wire + d.outer6.Swap(0))
	d.infl.add(now, debt, p.expire)
	return n
}

// wgMessageLen is the size of the transport message wireguard-go makes of
// an inner packet of n bytes (header 16, padding to 16 within the MTU, tag
// 16), which is what the bind wrapper later credits.
func wgMessageLen(n, mtu int) int64 {
	last := n
	if mtu > 0 && last > mtu {
		last %= mtu
	}
	padded := (last + 15) &^ 15
	if mtu > 0 && padded > mtu {
		padded = mtu
	}
	return int64(n + padded - last + 32)
}

// waitRead blocks until data, credit or config arrive, the device closes,
// or waitNs (> 0) passes.
func (d *Device) waitRead(waitNs int64) {
	if waitNs > 0 {
		d.readTimer.Reset(time.Duration(waitNs))
		defer d.readTimer.Stop()
		select {
		case <-d.wakeRead:
		case <-d.closed:
		case <-d.readTimer.C:
		}
		return
	}
	select {
	case <-d.wakeRead:
	case <-d.closed:
	}
}
