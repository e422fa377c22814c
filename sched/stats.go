package sched

import "time"

// Histogram counts sojourn times (enqueue to hand-out) in fixed log2
// buckets: bucket i holds times below HistogramBound(i); the last bucket
// is open-ended.
type Histogram [histBuckets]uint64

// HistogramBound returns the exclusive upper bound of bucket i (32.8 µs
// doubling up to ≈ 0.54 s); the last bucket's bound is the maximum
// Duration.
func HistogramBound(i int) time.Duration {
	if i >= histBuckets-1 {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(int64(1) << (histShift + i))
}

// Quantile returns the upper bound of the bucket holding quantile q
// (0..1), or 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	var total uint64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total-1)) + 1
	var seen uint64
	for i, c := range h {
		seen += c
		if seen >= rank {
			return HistogramBound(i)
		}
	}
	return HistogramBound(histBuckets - 1)
}

// MemberDirStats are one member's counters in one direction. Bytes are
// on-wire bytes (inner length + TunnelOverhead).
type MemberDirStats struct {
	QueuedBytes, QueuedPackets int64
	SentPackets, SentBytes     uint64 // handed to wireguard-go / the TUN
	OverflowDrops              uint64 // limit drops (srr head-drop, fifo tail-drop)
	CoDelDrops                 uint64
	CEMarks                    uint64
	Sojourn                    Histogram
}

// MemberStats are one member's counters: Down is toward the member
// (classified by inner destination), Up from it (by inner source).
type MemberStats struct {
	Weight   int
	Down, Up MemberDirStats
}

// DirStats are one direction's totals.
type DirStats struct {
	ActiveMembers              int // members with packets queued
	ActiveFlows                int // non-empty flow queues (srr)
	QueuedBytes, QueuedPackets int64
	LimitBytes, LimitPackets   int64
	EnqueuedPackets            uint64
	SentPackets, SentBytes     uint64
	OverflowDrops              uint64
	CoDelDrops                 uint64
	CEMarks                    uint64
}

// Stats are the device-wide counters.
type Stats struct {
	Discipline            string // "srr" or "fifo"
	Members               int    // registered, not counting the unknown class
	Down, Up              DirStats
	EgressRate            uint64 // pacer rates in bits/s; 0 = unpaced
	IngressRate           uint64
	InflightBytes         int64 // handed to wireguard-go, not yet sent
	InflightLimit         int64
	InflightForgivenBytes uint64 // debt expired unmatched (never sent)
	InnerReadErrors       uint64
	InnerWriteErrors      uint64
	// UpBypassPackets went straight to the TUN because nothing was queued
	// for upload (and no ingress rate applies).
	UpBypassPackets uint64
	OversizeDrops   uint64 // packets larger than wireguard-go's buffer
}

func (q *queue) dirStats() DirStats {
	return DirStats{
		ActiveMembers:   q.queuedMembers,
		ActiveFlows:     q.activeFlows,
		QueuedBytes:     q.bytes,
		QueuedPackets:   q.pkts,
		LimitBytes:      q.lim.bytes,
		LimitPackets:    q.lim.packets,
		EnqueuedPackets: q.c.enqPkts,
		SentPackets:     q.c.sentPkts,
		SentBytes:       q.c.sentBytes,
		OverflowDrops:   q.c.overflowDrops,
		CoDelDrops:      q.c.codelDrops,
		CEMarks:         q.c.marks,
	}
}

func (m *mstate) stats() MemberDirStats {
	return MemberDirStats{
		QueuedBytes:   m.bytes,
		QueuedPackets: m.pkts,
		SentPackets:   m.sentPkts(),
		SentBytes:     m.sentBytes,
		OverflowDrops: m.c.overflowDrops,
		CoDelDrops:    m.c.codelDrops,
		CEMarks:       m.c.marks,
		Sojourn:       m.c.hist,
	}
}

// Stats returns the device-wide counters. It takes each queue lock once.
func (d *Device) Stats() Stats {
	p := d.cfg.Load()
	st := Stats{
		Discipline:       disciplineName(p),
		Members:          d.reg.len(),
		EgressRate:       p.egressRate,
		IngressRate:      p.ingressRate,
		InflightLimit:    p.inflightLimit,
		InnerReadErrors:  d.innerReadErrors.Load(),
		InnerWriteErrors: d.innerWriteErrors.Load(),
		UpBypassPackets:  d.upBypassPkts.Load(),
		OversizeDrops:    d.oversizeDrops.Load(),
	}
	st.InflightBytes, st.InflightForgivenBytes = d.infl.load()
	d.downMu.Lock()
	st.Down = d.down.dirStats()
	d.downMu.Unlock()
	d.upMu.Lock()
	st.Up = d.up.dirStats()
	d.upMu.Unlock()
	return st
}

// MemberStats returns member id's counters (UnknownMember for the shared
// unknown class), or false if id is not registered.
func (d *Device) MemberStats(id uint32) (MemberStats, bool) {
	e := d.reg.get(id)
	if e == nil {
		return MemberStats{}, false
	}
	ms := MemberStats{Weight: int(e.weight())}
	d.downMu.Lock()
	ms.Down = e.down.stats()
	d.downMu.Unlock()
	d.upMu.Lock()
	ms.Up = e.up.stats()
	d.upMu.Unlock()
	return ms, true
}

// statsChunk bounds how long ForEachMember holds a queue lock.
const statsChunk = 256

// ForEachMember calls fn for every registered member and then for
// UnknownMember, in no particular order, outside all locks. Queue locks
// are taken per chunk of 256 members, so a scrape of 20,000 members never
// holds up the data path for long.
func (d *Device) ForEachMember(fn func(id uint32, st MemberStats)) {
	ents := d.reg.snapshot()
	var buf [statsChunk]MemberStats
	for start := 0; start < len(ents); start += statsChunk {
		chunk := ents[start:min(start+statsChunk, len(ents))]
		d.downMu.Lock()
		for i, e := range chunk {
			buf[i].Down = e.down.stats()
		}
		d.downMu.Unlock()
		d.upMu.Lock()
		for i, e := range chunk {
			buf[i].Up = e.up.stats()
			buf[i].Weight = int(e.weight())
		}
		d.upMu.Unlock()
		for i, e := range chunk {
			fn(e.id, buf[i])
		}
	}
}
