package sched

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// ipv4Packet builds an IPv4 UDP (proto 17) or other packet of total length
// n (≥ 28) with the given ToS byte, ports and addresses, checksum valid.
func ipv4Packet(src, dst netip.Addr, proto byte, sport, dport uint16, n int, tos byte) []byte {
	n = max(n, 28)
	p := make([]byte, n)
	p[0] = 0x45
	p[1] = tos
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[8] = 64
	p[9] = proto
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:], s4[:])
	copy(p[16:], d4[:])
	binary.BigEndian.PutUint16(p[10:], ipv4Checksum(p[:20]))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	return p
}

func ipv6Packet(src, dst netip.Addr, proto byte, sport, dport uint16, n int, tc byte) []byte {
	n = max(n, 48)
	p := make([]byte, n)
	p[0] = 0x60 | tc>>4
	p[1] = tc << 4
	binary.BigEndian.PutUint16(p[4:], uint16(n-40))
	p[6] = proto
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	binary.BigEndian.PutUint16(p[40:], sport)
	binary.BigEndian.PutUint16(p[42:], dport)
	return p
}

// ipv4Checksum is the plain (non-incremental) header checksum.
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// memberAddr is member i's inner IPv4 address, 10.(i>>8).(i&255).2.
func memberAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 2})
}

var serverAddr = netip.MustParseAddr("198.51.100.7")

// testQueue is a queue with members 0..n-1 for direct (lock-free) tests.
type testQueue struct {
	t   testing.TB
	p   params
	q   *queue
	ms  []*memberEntry
	key flowKey
}

func newTestQueue(t testing.TB, cfg Config, members int) *testQueue {
	t.Helper()
	p, err := cfg.normalize(1420)
	if err != nil {
		t.Fatal(err)
	}
	tq := &testQueue{t: t, p: p, key: flowKey{1, 2, 3}}
	tq.q = newQueue(&tq.p, tq.p.downLimit)
	for i := range members {
		tq.ms = append(tq.ms, newMemberEntry(uint32(i), 1))
	}
	return tq
}

// flowHash is a deterministic hash for (member, flow).
func flowHash(member, flow int) uint64 {
	return mix(uint64(member)<<32|uint64(flow)|1<<60, 0x9e3779b97f4a7c15)
}

// push enqueues an n-byte (inner) packet of member m's flow f at now.
func (tq *testQueue) push(m, f, n int, now int64) {
	tq.pushPkt(m, flowHash(m, f), make([]byte, n), now)
}

func (tq *testQueue) pushPkt(m int, hash uint64, pkt []byte, now int64) {
	q := tq.q
	j := q.alloc()
	s := &q.slots[j]
	if cap(s.buf) < headroom+len(pkt) {
		s.buf = make([]byte, headroom+max(len(pkt), 1500))
	}
	s.buf = s.buf[:cap(s.buf)]
	copy(s.buf[headroom:], pkt)
	s.n = int32(len(pkt))
	q.enqueue(j, &tq.ms[m].down, hash, now)
}

// pop dequeues one packet and returns its member id and inner length,
// or -1 when empty.
func (tq *testQueue) pop(now int64) (member int, n int) {
	q := tq.q
	i := q.dequeue(now)
	if i == 0 {
		return -1, 0
	}
	s := &q.slots[i]
	member, n = int(s.ms.ent.id), int(s.n)
	q.release(i)
	return member, n
}

// check asserts the accounting invariants: every packet enqueued is sent,
// dropped or queued; member and flow backlogs add up to the totals; every
// slot is either free or queued exactly once.
func (tq *testQueue) check() {
	tq.t.Helper()
	q := tq.q
	c := q.c
	if got := c.sentPkts + c.overflowDrops + c.codelDrops + uint64(q.pkts); got != c.enqPkts {
		tq.t.Fatalf("accounting: sent %d + overflow %d + codel %d + queued %d != enqueued %d",
			c.sentPkts, c.overflowDrops, c.codelDrops, q.pkts, c.enqPkts)
	}
	var mb, mp int64
	var msent, mdrops uint64
	active := 0
	for _, e := range append(tq.ms, nil) {
		if e == nil {
			break
		}
		m := &e.down
		mb += m.bytes
		mp += m.pkts
		msent += m.sentPkts()
		mdrops += m.c.overflowDrops + m.c.codelDrops
		if m.pkts > 0 {
			active++
		}
		if m.ft != nil {
			var fb int64
			var fp int64
			for _, f := range m.ft.flows {
				fb += f.bytes
				fp += int64(f.pkts)
			}
			if fb != m.bytes || fp != m.pkts {
				tq.t.Fatalf("member %d: flows hold %d B/%d pkts, member %d B/%d pkts", e.id, fb, fp, m.bytes, m.pkts)
			}
		} else if m.pkts > 0 && !q.p.fifo {
			tq.t.Fatalf("member %d: %d packets queued without a flow table", e.id, m.pkts)
		}
	}
	if mb != q.bytes || mp != q.pkts {
		tq.t.Fatalf("members hold %d B/%d pkts, queue %d B/%d pkts", mb, mp, q.bytes, q.pkts)
	}
	if msent != c.sentPkts || mdrops != c.overflowDrops+c.codelDrops {
		tq.t.Fatalf("member counters sent %d drops %d, queue sent %d drops %d", msent, mdrops, c.sentPkts, c.overflowDrops+c.codelDrops)
	}
	if active != q.queuedMembers {
		tq.t.Fatalf("queuedMembers %d, want %d", q.queuedMembers, active)
	}
	free := 0
	for i := q.free; i != 0; i = q.slots[i].next {
		free++
		if free > len(q.slots) {
			tq.t.Fatal("free list cycle")
		}
	}
	if int64(free)+q.pkts != int64(len(q.slots)-1) {
		tq.t.Fatalf("slab: %d free + %d queued != %d slots", free, q.pkts, len(q.slots)-1)
	}
}

// setConfig installs cfg as a fresh params value, as Device.SetConfig does.
func (tq *testQueue) setConfig(cfg Config) {
	tq.t.Helper()
	p, err := cfg.normalize(1420)
	if err != nil {
		tq.t.Fatal(err)
	}
	tq.q.setParams(&p, p.downLimit)
}
