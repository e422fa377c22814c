package sched

import (
	"math/rand/v2"
	"testing"
	"time"
)

// simSource is an unresponsive constant-rate flow of one member.
type simSource struct {
	member, flow int
	size         int   // inner bytes
	every        int64 // ns between packets
	next         int64
}

type simResult struct {
	sent      []int64 // on-wire bytes per member after warm-up
	aShare    float64 // member 0 / (member 0 + member 1)
	jain      float64 // over members 0 and 1
	pingLight Histogram
	pingInA   Histogram
}

// simulate runs a 100 Mbit/s link for 3 s of virtual time: member 0 (A)
// has one bulk flow, member 1 (B) has bflows bulk flows, each offering 60
// Mbit/s; member 2 pings every 10 ms; member 0 also pings on its own flow.
// The queue is the real one; only the clock is virtual.
func simulate(t *testing.T, discipline string, bflows int) simResult {
	t.Helper()
	const (
		rate     = 100_000_000
		duration = 3 * int64(time.Second)
		warmup   = int64(500 * time.Millisecond)
		bulkSize = 1420
		pingSize = 84
	)
	tq := newTestQueue(t, Config{Discipline: discipline}, 3)
	rng := rand.New(rand.NewPCG(uint64(bflows), 1))
	bulkEvery := int64(bulkSize+TunnelOverhead) * 8 * int64(time.Second) / 60_000_000
	srcs := []*simSource{{member: 0, flow: 0, size: bulkSize, every: bulkEvery}}
	for f := range bflows {
		srcs = append(srcs, &simSource{member: 1, flow: f, size: bulkSize, every: bulkEvery, next: rng.Int64N(bulkEvery)})
	}
	pings := []*simSource{
		{member: 2, flow: 0, size: pingSize, every: int64(10 * time.Millisecond), next: 3 * ms},
		{member: 0, flow: 99, size: pingSize, every: int64(10 * time.Millisecond), next: 7 * ms},
	}
	all := append(srcs, pings...)
	res := simResult{sent: make([]int64, 3)}
	bulk, ping := make([]byte, bulkSize), make([]byte, pingSize)
	pktOf := func(s *simSource) []byte {
		if s.size == pingSize {
			return ping
		}
		return bulk
	}
	var now int64
	for now < duration {
		// Arrivals in time order, so that under a full FIFO no source is
		// favored by the loop order (tail-drop phase effects).
		for {
			var first *simSource
			for _, s := range all {
				if s.next <= now && (first == nil || s.next < first.next) {
					first = s
				}
			}
			if first == nil {
				break
			}
			tq.pushPkt(first.member, flowHash(first.member, first.flow), pktOf(first), first.next)
			first.next += first.every/2 + rng.Int64N(first.every) // jitter: no phase lock
		}
		q := tq.q
		i := q.dequeue(now)
		if i == 0 {
			now += 10_000
			continue
		}
		sl := &q.slots[i]
		m, n, sojourn := int(sl.ms.ent.id), int(sl.n), now-sl.t
		wire := sl.wire()
		q.release(i)
		if now >= warmup {
			if n == pingSize {
				if m == 2 {
					res.pingLight[histBucket(sojourn)]++
				} else {
					res.pingInA[histBucket(sojourn)]++
				}
			} else {
				res.sent[m] += wire
			}
		}
		now += wire * 8 * int64(time.Second) / rate
	}
	a, b := float64(res.sent[0]), float64(res.sent[1])
	res.aShare = a / (a + b)
	res.jain = (a + b) * (a + b) / (2 * (a*a + b*b))
	tq.check()
	return res
}

// T1: member A with 1 flow against member B with 64 (or 8) flows gets
// half the link under srr and almost nothing under fifo.
func TestSimT1Fairness(t *testing.T) {
	for _, bflows := range []int{8, 64} {
		srr := simulate(t, "srr", bflows)
		if srr.aShare < 0.45 || srr.jain < 0.99 {
			t.Errorf("srr, B %d flows: A share %.3f Jain %.3f, want ≥ 0.45 / ≥ 0.99", bflows, srr.aShare, srr.jain)
		}
		fifo := simulate(t, "fifo", bflows)
		if fifo.aShare > 0.2 || fifo.jain > 0.7 {
			t.Errorf("fifo, B %d flows: A share %.3f Jain %.3f, want the unfair shape", bflows, fifo.aShare, fifo.jain)
		}
		t.Logf("B %d flows: srr A %.1f%% J %.3f | fifo A %.1f%% J %.3f", bflows, 100*srr.aShare, srr.jain, 100*fifo.aShare, fifo.jain)
	}
}

// T2: a light member's pings see almost no queueing while A and B
// saturate the link; under fifo they wait behind the whole queue.
func TestSimT2LightMemberLatency(t *testing.T) {
	srr := simulate(t, "srr", 64)
	if p50, p99 := srr.pingLight.Quantile(0.5), srr.pingLight.Quantile(0.99); p50 > 200*time.Microsecond || p99 > 600*time.Microsecond {
		t.Errorf("srr light ping sojourn p50 ≤ %v p99 ≤ %v, want ≤ 200 µs / 600 µs", p50, p99)
	}
	fifo := simulate(t, "fifo", 64)
	if p50 := fifo.pingLight.Quantile(0.5); p50 < 100*time.Millisecond {
		t.Errorf("fifo light ping p50 ≤ %v, expected the standing FIFO delay (≥ 100 ms)", p50)
	}
	t.Logf("light ping: srr p50 ≤ %v p99 ≤ %v | fifo p50 ≤ %v", srr.pingLight.Quantile(0.5), srr.pingLight.Quantile(0.99), fifo.pingLight.Quantile(0.5))
}

// T3: a ping inside the busy member A sees small delay thanks to the flow
// level (DRR++ sparse flows) and CoDel.
func TestSimT3PingInsideBusyMember(t *testing.T) {
	srr := simulate(t, "srr", 8)
	if p50, p99 := srr.pingInA.Quantile(0.5), srr.pingInA.Quantile(0.99); p50 > time.Millisecond || p99 > 2*time.Millisecond {
		t.Errorf("srr ping inside A p50 ≤ %v p99 ≤ %v, want ≤ 1 ms / 2 ms", p50, p99)
	}
	fifo := simulate(t, "fifo", 8)
	if p50 := fifo.pingInA.Quantile(0.5); p50 < 100*time.Millisecond {
		t.Errorf("fifo ping inside A p50 ≤ %v, expected the standing FIFO delay", p50)
	}
	t.Logf("ping in A: srr p50 ≤ %v p99 ≤ %v | fifo p50 ≤ %v", srr.pingInA.Quantile(0.5), srr.pingInA.Quantile(0.99), fifo.pingInA.Quantile(0.5))
}
