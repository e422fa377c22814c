package sched

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkEnqueueDequeue is the scheduler core per packet: enqueue,
// DRR++/CoDel dequeue, release; 100 members × 8 flows with a standing
// backlog, no packet copies. "classify" adds the keyed flow hash and the
// member lookup (no last-member cache: every packet is another member).
func BenchmarkEnqueueDequeue(b *testing.B) {
	for _, tc := range []struct {
		name, disc string
		classify   bool
	}{
		{"srr", DisciplineSRR, false},
		{"fifo", DisciplineFIFO, false},
		{"srr+classify", DisciplineSRR, true},
	} {
		disc := tc.disc
		b.Run(tc.name, func(b *testing.B) {
			const members, flows = 100, 8
			tq := newTestQueue(b, Config{Discipline: disc}, members)
			reg := newRegistry()
			var pkts [][]byte
			for m := range members {
				reg.upsert(uint32(m), []netip.Addr{memberAddr(m)}, 1)
				for f := range flows {
					pkts = append(pkts, ipv4Packet(serverAddr, memberAddr(m), protoTCP, 443, uint16(1000+f), 1420, 0))
				}
			}
			// Shuffle arrival order deterministically across members/flows.
			order := make([]int, len(pkts))
			for i := range order {
				order[i] = (i * 337) % len(pkts)
			}
			q := tq.q
			type pre struct {
				e *memberEntry
				h uint64
			}
			pres := make([]pre, len(pkts))
			for i, p := range pkts {
				k, ok, h := classify(p, true, &tq.key)
				pres[i] = pre{reg.lookupRLocked(k, ok), h}
			}
			enq := func(i int, now int64) {
				idx := order[i%len(order)]
				p := pkts[idx]
				e, h := pres[idx].e, pres[idx].h
				if tc.classify {
					k, ok, hh := classify(p, true, &tq.key)
					e, h = reg.lookupRLocked(k, ok), hh
				}
				j := q.alloc()
				s := &q.slots[j]
				if s.buf == nil {
					s.buf = make([]byte, 1500+headroom)
				}
				s.n = int32(len(p))
				q.enqueue(j, &e.down, h, now)
			}
			for i := range 2000 { // standing backlog: 2.5 packets per flow
				enq(i, 0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now := int64(i) * 1000 // 1 µs per packet: sojourn stays below target
				enq(i, now)
				if j := q.dequeue(now); j != 0 {
					q.release(j)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
		})
	}
}

// benchTUN is an inner device that produces download batches instantly and
// discards uploads: the wrapper's own cost, without a kernel.
type benchTUN struct {
	batch  [][]byte
	closed chan struct{}
	once   sync.Once
}

func (f *benchTUN) File() *os.File { return nil }
func (f *benchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-f.closed:
		return 0, os.ErrClosed
	default:
	}
	n := min(len(bufs), len(f.batch))
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], f.batch[i])
	}
	return n, nil
}
func (f *benchTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (f *benchTUN) MTU() (int, error)                            { return 1420, nil }
func (f *benchTUN) Name() (string, error)                        { return "bench0", nil }
func (f *benchTUN) Events() <-chan tun.Event                     { return nil }
func (f *benchTUN) BatchSize() int                               { return 128 }
func (f *benchTUN) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// BenchmarkDeviceRead is the download path as wireguard-go drives it: Read
// batches (one copy per packet) and bind credits, while RoutineReadInner
// keeps the queue full from an inner device that never blocks. Throughput
// is reported as inner-packet MB/s.
func BenchmarkDeviceRead(b *testing.B) {
	var batch [][]byte
	for i := range 128 {
		batch = append(batch, ipv4Packet(serverAddr, memberAddr(i%100), protoTCP, 443, uint16(i%8), 1420, 2))
	}
	inner := &benchTUN{batch: batch, closed: make(chan struct{})}
	d, err := NewDevice(inner, Config{}, Options{Rand: fixedSource(1)})
	if err != nil {
		b.Fatal(err)
	}
	for m := range 100 {
		d.UpsertMember(uint32(m), []netip.Addr{memberAddr(m)}, 1)
	}
	cred := &bindWrapper{d: d}
	bufs, sizes := wgBufs(128)
	b.SetBytes(1420)
	b.ReportAllocs()
	b.ResetTimer()
	var sent int
	for sent < b.N {
		n, err := d.Read(bufs[:min(128, b.N-sent)], sizes, wgOffset)
		if err != nil {
			b.Fatal(err)
		}
		sent += n
		var debt int64
		for i := range n {
			debt += wgMessageLen(sizes[i], 1420)
		}
		cred.d.infl.credit(debt) // what the bind wrapper does after Send
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
	d.Close()
}

// BenchmarkDeviceWrite is the upload path: Write (one copy) from 2
// concurrent callers and the drain into a discarding inner device.
func BenchmarkDeviceWrite(b *testing.B) {
	inner := &benchTUN{closed: make(chan struct{})}
	// The inner Read must not spin: feed it nothing.
	inner.batch = nil
	d, err := NewDevice(inner, Config{}, Options{Rand: fixedSource(1)})
	if err != nil {
		b.Fatal(err)
	}
	for m := range 100 {
		d.UpsertMember(uint32(m), []netip.Addr{memberAddr(m)}, 1)
	}
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = append(make([]byte, wgOffset), ipv4Packet(memberAddr(i%100), serverAddr, protoTCP, uint16(i%8), 443, 1420, 0)...)
	}
	b.SetBytes(1420)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Write(bufs[:1], wgOffset)
		}
	})
	b.StopTimer()
	d.Close()
	st := d.Stats().Up
	if st.SentPackets+st.OverflowDrops+st.CoDelDrops+uint64(st.QueuedPackets) != st.EnqueuedPackets {
		b.Fatal(fmt.Sprintf("accounting: %+v", st))
	}
}
