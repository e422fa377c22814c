package sched

import (
	"exitd/bounds"
	"fmt"
	"strings"
	"time"
)

// Discipline names accepted in Config.Discipline.
const (
	DisciplineSRR  = "srr"  // two-level DRR++ with CoDel (default)
	DisciplineFIFO = "fifo" // one FIFO per direction, same budget and limits
)

// TunnelOverhead is what one inner packet costs on the wire beyond its own
// length: WireGuard data header and tag (32), UDP (8) and outer IPv4 (20).
// Queue limits, quanta and the pacer are all charged in on-wire bytes.
const TunnelOverhead = 32 + 8 + 20

// TunnelOverhead6Extra is what an IPv6 outer header (40 bytes) costs
// beyond IPv4's: the pacer charges it for each data message the bind sends
// to a member's IPv6 endpoint (the family is known only at send time, so
// queue limits and quanta keep TunnelOverhead).
const TunnelOverhead6Extra = 20

// Config is the scheduler configuration, mapped by the composition root from
// the TOML [scheduler] table. The zero value is valid: srr, no pacing,
// defaults for everything. Every field is clamped to a sane range rather than
// rejected; only an unknown Discipline is an error.
type Config struct {
	// Discipline is "srr" (default when empty) or "fifo".
	Discipline string
	// EgressRate paces the download direction (toward members), in bits/s
	// of on-wire bytes. Set it to 90–95 % of the real bottleneck. 0 = no
	// pacing: only the in-flight bound applies.
	EgressRate uint64
	// IngressRate paces the upload drain into the TUN, in bits/s. 0 = none.
	IngressRate uint64
	// LimitBytes bounds the queued on-wire bytes of each direction.
	// 0 = max(4 MB, 4 × rate × 100 ms).
	LimitBytes int
	// LimitPackets bounds the queued packets of each direction. 0 = 10240.
	LimitPackets int
	// Quantum is the DRR quantum in on-wire bytes, for members (times their
	// weight) and for flows. 0 = one on-wire packet (inner MTU + overhead).
	Quantum int
	// CoDelTarget and CoDelInterval tune CoDel per flow queue.
	// 0 = 5 ms and 100 ms.
	CoDelTarget, CoDelInterval time.Duration
	// DisableECN drops instead of marking CE on ECN-capable packets.
	DisableECN bool
	// NoUploadBypass always queues uploads, even when nothing is queued and
	// no IngressRate applies. By default such uploads go straight to the
	// TUN (zero copy, GRO intact), as a qdisc bypasses its empty queue; this
	// matters only with an inner device whose Write can block (test fakes).
	NoUploadBypass bool
	// InflightBytes bounds download bytes handed to wireguard-go but not yet
	// sent by the bind. 0 = 1 MiB.
	InflightBytes int
	// InflightExpire forgives in-flight debt not matched by a send within
	// this time (packets wireguard-go staged or dropped). 0 = 20 ms.
	InflightExpire time.Duration
	// Burst is the pacer's bucket depth in time at the configured rate.
	// 0 = 1 ms.
	Burst time.Duration
}

// Clamp ranges. The kernel's fq_codel once looped 2^31 times on a huge
// quantum; nothing here is taken unbounded from the config file.
const (
	minRate         = bounds.MinRate
	maxRate         = bounds.MaxRate
	minLimitBytes   = 64 << 10  // 64 KiB
	maxLimitBytes   = 1 << 30   // 1 GiB
	defLimitBytes   = 4_000_000 // 4 MB
	minLimitPackets = 64
	maxLimitPackets = 1 << 20
	defLimitPackets = 10240
	minQuantum      = 256
	maxQuantum      = 65535 + 60
	minTarget       = 100 * time.Microsecond
	maxTarget       = time.Second
	defTarget       = 5 * time.Millisecond
	minInterval     = time.Millisecond
	maxInterval     = 10 * time.Second
	defInterval     = 100 * time.Millisecond
	minInflight     = 16 << 10
	maxInflight     = 64 << 20
	defInflight     = 1 << 20
	minExpire       = time.Millisecond
	maxExpire       = 30 * time.Millisecond // bounded by the debt ring
	defExpire       = 20 * time.Millisecond
	minBurst        = 100 * time.Microsecond
	maxBurst        = 100 * time.Millisecond
	defBurst        = time.Millisecond
	maxWeight       = bounds.MaxWeight
)

// params is a normalized, immutable Config. Durations are in nanoseconds.
type params struct {
	fifo          bool
	egressRate    uint64 // bits/s, 0 = none
	ingressRate   uint64
	bypass        bool
	downLimit     limits
	upLimit       limits
	quantum       int32
	target        int64
	interval      int64
	ecn           bool
	mtu           int32 // inner MTU; CoDel never drops the last MTU of a queue
	inflightLimit int64
	expire        int64
	burst         int64
}

// limits is one direction's queue bounds.
type limits struct {
	bytes, packets int64
}

func clampInt[T int | int64 | time.Duration | uint64](v, lo, hi T) T {
	return max(lo, min(v, hi))
}

// normalize validates c and fills defaults for an inner MTU of mtu.
func (c Config) normalize(mtu int) (params, error) {
	var p params
	switch strings.ToLower(strings.TrimSpace(c.Discipline)) {
	case "", DisciplineSRR:
	case DisciplineFIFO:
		p.fifo = true
	default:
		return p, fmt.Errorf("sched: unknown discipline %q (want %q or %q)", c.Discipline, DisciplineSRR, DisciplineFIFO)
	}
	mtu = clampInt(mtu, 576, 65535)
	p.mtu = int32(mtu)
	if c.EgressRate != 0 {
		p.egressRate = clampInt(c.EgressRate, minRate, maxRate)
	}
	if c.IngressRate != 0 {
		p.ingressRate = clampInt(c.IngressRate, minRate, maxRate)
	}
	p.downLimit = c.limitsFor(p.egressRate)
	p.upLimit = c.limitsFor(p.ingressRate)
	q := c.Quantum
	if q <= 0 {
		q = mtu + TunnelOverhead
	}
	p.quantum = int32(clampInt(q, minQuantum, maxQuantum))
	p.target = int64(orDefault(c.CoDelTarget, defTarget, minTarget, maxTarget))
	p.interval = int64(orDefault(c.CoDelInterval, defInterval, minInterval, maxInterval))
	p.target = min(p.target, p.interval)
	p.ecn = !c.DisableECN
	p.bypass = !c.NoUploadBypass
	inf := c.InflightBytes
	if inf <= 0 {
		inf = defInflight
	}
	p.inflightLimit = int64(clampInt(inf, minInflight, maxInflight))
	p.expire = int64(orDefault(c.InflightExpire, defExpire, minExpire, maxExpire))
	p.burst = int64(orDefault(c.Burst, defBurst, minBurst, maxBurst))
	return p, nil
}

func (c Config) limitsFor(rate uint64) limits {
	b := int64(c.LimitBytes)
	if b <= 0 {
		// 4 × rate × 100 ms, in bytes: rate/8 × 0.4 = rate/20.
		b = max(defLimitBytes, int64(min(rate/20, maxLimitBytes)))
	}
	n := int64(c.LimitPackets)
	if n <= 0 {
		n = defLimitPackets
	}
	return limits{
		bytes:   clampInt(b, minLimitBytes, maxLimitBytes),
		packets: clampInt(n, minLimitPackets, maxLimitPackets),
	}
}

func orDefault(v, def, lo, hi time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return clampInt(v, lo, hi)
}

// clampWeight maps a member weight onto 1..64 (0 or negative means 1).
func clampWeight(w int) int32 {
	return int32(clampInt(w, 1, maxWeight))
}
