package sched

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

func TestQueueEqualShareTwoMembers(t *testing.T) {
	tq := newTestQueue(t, Config{}, 2)
	for i := range 100 {
		tq.push(0, 0, 1400, 0)
		tq.push(1, i%8, 1400, 0)
	}
	var got [2]int
	for range 100 {
		m, _ := tq.pop(0)
		got[m]++
	}
	if got[0] != 50 || got[1] != 50 {
		t.Fatalf("first 100 packets split %v, want 50/50", got)
	}
	tq.check()
}

func TestQueueWeights(t *testing.T) {
	tq := newTestQueue(t, Config{}, 2)
	tq.ms[1].setWeight(3)
	for range 400 {
		tq.push(0, 0, 1400, 0)
		tq.push(1, 0, 1400, 0)
	}
	var got [2]int
	for range 400 {
		m, _ := tq.pop(0)
		got[m]++
	}
	if got[0] < 95 || got[0] > 105 {
		t.Fatalf("weight 1 vs 3 got %v, want about 100/300", got)
	}
	tq.check()
}

// A member that becomes active is served before members on the old list
// (sparse priority), and a flow likewise within its member.
func TestQueueSparsePriority(t *testing.T) {
	tq := newTestQueue(t, Config{}, 3)
	for range 50 {
		tq.push(0, 0, 1400, 0)
		tq.push(1, 0, 1400, 0)
	}
	for range 10 { // both now on the old list
		tq.pop(0)
	}
	tq.push(2, 0, 100, 0)
	if m, _ := tq.pop(0); m != 2 {
		t.Fatalf("sparse member not served next, got member %d", m)
	}
	// Within a member: a ping flow behind a bulk flow.
	tq.push(0, 7, 84, 0)
	for range 4 {
		m, n := tq.pop(0)
		if m == 0 && n == 84 {
			tq.check()
			return
		}
	}
	t.Fatal("sparse flow inside a busy member not served within one member round")
}

// RFC 8290 §4.2: a member that empties while on the new list moves to the
// old list instead of leaving, so it cannot be re-prioritized every time.
func TestQueueAntiStarvation(t *testing.T) {
	tq := newTestQueue(t, Config{}, 2)
	for range 20 {
		tq.push(0, 0, 1400, 0)
	}
	tq.pop(0) // member 0 now on the old list after its deficit runs out
	tq.pop(0)
	tq.push(1, 0, 100, 0)
	if m, _ := tq.pop(0); m != 1 {
		t.Fatalf("got %d, want sparse member 1", m)
	}
	if m, _ := tq.pop(0); m != 0 {
		t.Fatalf("got %d, want member 0", m)
	}
	// The last pop visited member 1 empty on the new list; the old list is
	// non-empty, so it must now be on the old list, not gone.
	if got := tq.ms[1].down.list; got != listOld {
		t.Fatalf("emptied new member on list %d, want old (%d)", got, listOld)
	}
	tq.push(1, 0, 100, 0)
	if got := tq.ms[1].down.list; got != listOld {
		t.Fatalf("re-arriving member 1 moved to list %d, want it to stay on old", got)
	}
	tq.check()
}

func TestQueueFIFOOrderAndTailDrop(t *testing.T) {
	tq := newTestQueue(t, Config{Discipline: "fifo", LimitPackets: 64}, 3)
	for i := range 70 {
		tq.push(i%3, i, 100+i, int64(i))
	}
	if tq.q.c.overflowDrops != 6 {
		t.Fatalf("tail drops %d, want 6", tq.q.c.overflowDrops)
	}
	for i := range 64 {
		m, n := tq.pop(100)
		if m != i%3 || n != 100+i {
			t.Fatalf("fifo packet %d: member %d len %d, want %d/%d", i, m, n, i%3, 100+i)
		}
	}
	tq.check()
}

// On overflow srr head-drops from the fattest flow of the fattest member;
// a light member keeps everything.
func TestQueueOverflowDropsFattest(t *testing.T) {
	tq := newTestQueue(t, Config{LimitPackets: 100}, 3)
	for i := range 10 {
		tq.push(2, 0, 200, 0) // light
		tq.push(1, i, 1400, 0)
	}
	for range 200 {
		tq.push(0, 0, 1400, 0) // one fat flow
	}
	if tq.q.pkts > 100 {
		t.Fatalf("queued %d > limit 100", tq.q.pkts)
	}
	if d := tq.ms[2].down.c.overflowDrops; d != 0 {
		t.Fatalf("light member lost %d packets", d)
	}
	if d := tq.ms[1].down.c.overflowDrops; d != 0 {
		t.Fatalf("member 1 (10 packets over 10 flows) lost %d packets", d)
	}
	if tq.ms[0].down.c.overflowDrops == 0 {
		t.Fatal("fat member lost nothing")
	}
	tq.check()
	// Byte limit too.
	tq2 := newTestQueue(t, Config{LimitBytes: 100_000}, 2)
	for range 200 {
		tq2.push(0, 0, 1400, 0)
	}
	tq2.push(1, 0, 1400, 0)
	if tq2.q.bytes > 100_000 || tq2.ms[1].down.pkts != 1 {
		t.Fatalf("byte limit: queued %d B, member 1 has %d packets", tq2.q.bytes, tq2.ms[1].down.pkts)
	}
	tq2.check()
}

func TestFatIndexFindsFattest(t *testing.T) {
	var x fatIndex
	ms := make([]mstate, 50)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		m := &ms[rng.IntN(len(ms))]
		m.bytes = max(0, m.bytes+int64(rng.IntN(20000)-9000))
		x.update(m)
		var best int64
		for i := range ms {
			best = max(best, ms[i].bytes)
		}
		f := x.fattest()
		if best == 0 {
			if f != nil {
				t.Fatal("fattest of empty index not nil")
			}
			continue
		}
		if f == nil || f.bytes*2 <= best {
			t.Fatalf("round %d: fattest has %v bytes, max is %d", round, f, best)
		}
	}
}

func TestFlowTableSetAssociative(t *testing.T) {
	var ft flowTable
	// 8 hashes in the same set get 8 distinct ways; a 9th collides.
	seen := map[int8]bool{}
	for w := range 8 {
		h := uint64(3)<<61 | uint64(w)<<8
		fi := ft.pick(h)
		ft.flow(fi).pkts = 1
		if seen[fi] {
			t.Fatalf("way %d reused for a distinct flow", fi)
		}
		seen[fi] = true
		if again := ft.pick(h); again != fi {
			t.Fatalf("same hash picked way %d then %d", fi, again)
		}
	}
	if fi := ft.pick(uint64(3)<<61 | 0x10000); !seen[fi] {
		t.Fatalf("9th flow of a full set got a new way %d", fi)
	}
	// An emptied way is reclaimed by a new flow.
	ft.flows[(3*8)+2].pkts = 0
	if fi := ft.pick(uint64(3)<<61 | 0x20000); fi != 3*8+2+1 {
		t.Fatalf("empty way not reclaimed, got %d", fi)
	}
}

// flist against a slice: random pushes, pops and rotations keep the same
// order, and its cached second queue is always the head's successor.
func TestFlistMatchesSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var ft flowTable
	var l flist
	var ref []int8
	onList := map[int8]bool{}
	for step := range 20000 {
		switch op := rng.IntN(3); {
		case op == 0 && len(ref) < flowsPerMember:
			fi := int8(1 + rng.IntN(flowsPerMember))
			if onList[fi] {
				continue
			}
			l.push(&ft, fi, listOld)
			ref = append(ref, fi)
			onList[fi] = true
		case op == 1 && len(ref) > 0:
			if got := l.pop(&ft); got != ref[0] {
				t.Fatalf("step %d: pop %d, want %d", step, got, ref[0])
			}
			delete(onList, ref[0])
			ref = ref[1:]
		case op == 2 && len(ref) > 0:
			l.spent = true
			l.rotate(&ft)
			ref = append(ref[1:], ref[0])
		}
		var want flist
		if len(ref) > 0 {
			want.head, want.tail = ref[0], ref[len(ref)-1]
		}
		if len(ref) > 1 {
			want.second = ref[1]
		}
		if l.head != want.head || l.tail != want.tail || l.second != want.second || l.spent {
			t.Fatalf("step %d: list %+v, want %+v (%v)", step, l, want, ref)
		}
		for k, fi := 0, l.head; fi != 0; k, fi = k+1, ft.flow(fi).next {
			if k >= len(ref) || ref[k] != fi {
				t.Fatalf("step %d: links disagree with %v at %d", step, ref, k)
			}
		}
	}
}

// One flow with a standing queue: CoDel drops non-ECT packets and marks
// ECT ones, and the sojourn histogram sees the delay. Already-CE packets
// count as marked and are delivered, as Linux's INET_ECN_set_ce reports
// them marked (a CE packet has been congestion-signalled already).
func TestQueueCoDel(t *testing.T) {
	m6 := netip.MustParseAddr("fd00::1")
	s6 := netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		name      string
		v6        bool
		tos       byte
		ecnOff    bool
		wantMarks bool
	}{
		{"not-ect drops", false, 0, false, false},
		{"ect0 marks", false, 2, false, true},
		{"ect1 marks", false, 1, false, true},
		{"ce marks", false, 3, false, true},
		{"ecn disabled drops", false, 2, true, false},
		{"ecn disabled ce drops", false, 3, true, false},
		{"ipv6 not-ect drops", true, 0, false, false},
		{"ipv6 ect0 marks", true, 2, false, true},
		{"ipv6 ect1 marks", true, 1, false, true},
		{"ipv6 ce marks", true, 3, false, true},
		{"ipv6 ecn disabled ce drops", true, 3, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tq := newTestQueue(t, Config{DisableECN: tc.ecnOff}, 1)
			pkt := ipv4Packet(serverAddr, memberAddr(0), protoTCP, 80, 1000, 1400, tc.tos)
			if tc.v6 {
				pkt = ipv6Packet(s6, m6, protoTCP, 80, 1000, 1400, tc.tos)
			}
			// Arrivals at twice the service rate: 1 packet per 60 µs in,
			// served 1 per 120 µs (≈ 100 Mbit/s) for 2 s.
			var now int64
			for step := range 40000 {
				now = int64(step) * 60_000
				tq.pushPkt(0, 42, pkt, now)
				if step%2 == 0 {
					tq.pop(now)
				}
			}
			c := tq.q.c
			if tc.wantMarks {
				if c.marks == 0 || c.codelDrops != 0 {
					t.Fatalf("marks %d drops %d, want marks and no CoDel drops", c.marks, c.codelDrops)
				}
			} else if c.codelDrops == 0 || c.marks != 0 {
				t.Fatalf("marks %d drops %d, want drops only", c.marks, c.codelDrops)
			}
			tq.check()
		})
	}
}

// With drops only (unresponsive source, well below the limits), CoDel keeps
// the standing queue near target: after warm-up, sojourn is bounded.
func TestQueueCoDelBoundsDelayOfResponsiveLoad(t *testing.T) {
	tq := newTestQueue(t, Config{}, 1)
	pkt := ipv4Packet(serverAddr, memberAddr(0), protoTCP, 80, 1000, 1400, 0)
	var now int64
	// Source sends only while its (window) backlog is below 200 packets and
	// halves the window on each drop (a crude AIMD); service 1 per 120 µs.
	window := 200.0
	lastDrops := uint64(0)
	for step := range 50000 {
		now = int64(step) * 120_000
		for float64(tq.q.pkts) < window {
			tq.pushPkt(0, 42, pkt, now)
		}
		tq.pop(now)
		if d := tq.q.c.codelDrops; d != lastDrops {
			window = max(2, window/2)
			lastDrops = d
		} else {
			window += 0.05
		}
	}
	h := Histogram(tq.ms[0].down.c.hist)
	if p50 := h.Quantile(0.5); p50 > 16*time.Millisecond {
		t.Fatalf("CoDel p50 sojourn %v, want ≲ target scale", p50)
	}
	tq.check()
}

// Every packet enqueued is dequeued or counted dropped, across random
// traffic, CoDel, overflow, ECN and fifo↔srr switches.
func TestQueueAccountingInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	tq := newTestQueue(t, Config{LimitPackets: 500, LimitBytes: 400_000}, 40)
	var now int64
	for step := range 60000 {
		now += int64(rng.IntN(100_000))
		switch r := rng.IntN(1000); {
		case r < 550:
			m := rng.IntN(len(tq.ms))
			if rng.IntN(4) == 0 {
				m = 0 // a heavy member
			}
			pkt := ipv4Packet(serverAddr, memberAddr(m), protoUDP, uint16(rng.IntN(20)), 53, 28+rng.IntN(1400), byte(rng.IntN(4)))
			tq.pushPkt(m, flowHash(m, rng.IntN(3)), pkt, now)
		case r < 999:
			tq.pop(now)
		default:
			cfg := Config{LimitPackets: 100 + rng.IntN(800), LimitBytes: 100_000 + rng.IntN(500_000)}
			if rng.IntN(2) == 0 {
				cfg.Discipline = "fifo"
			}
			tq.setConfig(cfg)
		}
		if step%97 == 0 {
			tq.check()
		}
	}
	for {
		if m, _ := tq.pop(now); m < 0 {
			break
		}
	}
	tq.check()
	if tq.q.pkts != 0 || tq.q.bytes != 0 || tq.q.activeFlows != 0 || tq.q.queuedMembers != 0 {
		t.Fatalf("drained queue not empty: %+v", tq.q.dirStats())
	}
	c := tq.q.c
	if c.overflowDrops == 0 || c.codelDrops+c.marks == 0 {
		t.Fatalf("test did not exercise drops: %+v", c)
	}
}

// Switching fifo↔srr keeps every queued packet; srr→fifo restores arrival
// order.
func TestQueueSwitchDisciplineKeepsPackets(t *testing.T) {
	tq := newTestQueue(t, Config{}, 4)
	for i := range 200 {
		tq.push(i%4, i%5, 100+i, int64(i))
	}
	set := func(c Config) {
		tq.setConfig(c)
		tq.check()
	}
	set(Config{Discipline: "fifo"})
	for i := range 50 {
		m, n := tq.pop(1000)
		if m != i%4 || n != 100+i {
			t.Fatalf("after switch to fifo, packet %d is member %d len %d", i, m, n)
		}
	}
	set(Config{Discipline: "srr"})
	set(Config{Discipline: "srr"}) // no-op switch
	got := 0
	for {
		m, _ := tq.pop(1000)
		if m < 0 {
			break
		}
		got++
	}
	if got != 150 {
		t.Fatalf("drained %d packets after switches, want 150", got)
	}
	tq.check()
}

// refDRR is the textbook deficit round robin (Shreedhar & Varghese 1996):
// slow, obviously correct, no flows, no AQM. Sizes are on-wire bytes.
type refDRR struct {
	quantum int
	weight  []int
	q       [][]int
	deficit []int
	active  []int
	cur     int
	inList  []bool
}

func newRefDRR(quantum int, weights []int) *refDRR {
	n := len(weights)
	return &refDRR{quantum: quantum, weight: weights, q: make([][]int, n),
		deficit: make([]int, n), cur: -1, inList: make([]bool, n)}
}

func (r *refDRR) push(m, size int) {
	r.q[m] = append(r.q[m], size)
	if !r.inList[m] && m != r.cur {
		r.inList[m] = true
		r.active = append(r.active, m)
	}
}

func (r *refDRR) next() (int, int) {
	for {
		if r.cur < 0 {
			if len(r.active) == 0 {
				return -1, 0
			}
			r.cur, r.active = r.active[0], r.active[1:]
			r.inList[r.cur] = false
			r.deficit[r.cur] += r.quantum * r.weight[r.cur]
		}
		m := r.cur
		if len(r.q[m]) > 0 && r.q[m][0] <= r.deficit[m] {
			size := r.q[m][0]
			r.q[m] = r.q[m][1:]
			r.deficit[m] -= size
			return m, size
		}
		if len(r.q[m]) == 0 {
			r.deficit[m] = 0
		} else {
			r.inList[m] = true
			r.active = append(r.active, m)
		}
		r.cur = -1
	}
}

// The scheduler's per-member (and, in one member, per-flow) byte shares
// track the reference DRR fed the same seeded random traffic, within DRR's
// bound, at every point of the drain.
func TestQueueMatchesReferenceDRR(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 99))
		members := 2 + rng.IntN(30)
		flowLevel := seed%2 == 1 // odd seeds: one member, ≤ 8 flows
		if flowLevel {
			members = 2 + rng.IntN(7)
		}
		weights := make([]int, members)
		for i := range weights {
			weights[i] = 1
			if !flowLevel {
				weights[i] = 1 + rng.IntN(4)
			}
		}
		tq := newTestQueue(t, Config{LimitPackets: 1 << 20, LimitBytes: 1 << 30}, members)
		for i, w := range weights {
			tq.ms[i].setWeight(w)
		}
		quantum := int(tq.p.quantum)
		ref := newRefDRR(quantum, weights)
		hashes := make([]uint64, members)
		for i := range hashes {
			hashes[i] = rng.Uint64()
		}
		for range 20000 {
			m := rng.IntN(members)
			if rng.IntN(3) == 0 {
				m = 0 // skew the backlog
			}
			n := 40 + rng.IntN(1381)
			if flowLevel {
				tq.pushPkt(0, hashes[m], make([]byte, n), 0)
				// map results back through the flow's queue index
			} else {
				tq.push(m, rng.IntN(8), n, 0)
			}
			ref.push(m, n+TunnelOverhead)
		}
		flowOf := map[int]int{}
		if flowLevel {
			for m, h := range hashes {
				flowOf[int(tq.ms[0].down.ft.pick(h))] = m
			}
		}
		got := make([]int, members)
		want := make([]int, members)
		var gotTotal, wantTotal int
		maxWire := 1420 + TunnelOverhead
		for {
			if wantTotal <= gotTotal {
				m, size := ref.next()
				if m >= 0 {
					want[m] += size
					wantTotal += size
					continue
				}
			}
			q := tq.q
			i := q.dequeue(0)
			if i == 0 {
				break
			}
			m := int(q.slots[i].ms.ent.id)
			if flowLevel {
				m = flowOf[int(tq.ms[0].down.ft.pick(q.slots[i].hash))]
			}
			w := int(q.slots[i].wire())
			q.release(i)
			got[m] += w
			gotTotal += w
			for k := range members {
				bound := 2*quantum*weights[k] + 3*maxWire
				if d := got[k] - want[k]; d > bound || -d > bound {
					t.Fatalf("seed %d (flows %v): member %d served %d B, reference %d B (bound %d) at total %d",
						seed, flowLevel, k, got[k], want[k], bound, gotTotal)
				}
			}
		}
		if gotTotal != wantTotal {
			t.Fatalf("seed %d: totals %d vs %d", seed, gotTotal, wantTotal)
		}
		tq.check()
	}
}

func TestQueueEnqueueDequeueAllocs(t *testing.T) {
	tq := newTestQueue(t, Config{}, 100)
	// Warm up: slab and flow tables exist.
	for i := range 4000 {
		tq.push(i%100, i%8, 1400, 0)
	}
	for tq.q.pkts > 0 {
		tq.pop(0)
	}
	pkt := make([]byte, 1400)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		for range 8 {
			m := i % 100
			tq.pushPkt(m, flowHash(m, i%8), pkt, int64(i))
			i++
		}
		for range 8 {
			tq.pop(int64(i))
		}
	})
	if allocs != 0 {
		t.Fatalf("enqueue+dequeue allocates %.1f times per run", allocs)
	}
}
