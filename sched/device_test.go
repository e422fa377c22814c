package sched

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// wgOffset is the offset wireguard-go uses for Read and Write.
const wgOffset = 16

func newTestDevice(t *testing.T, inner tun.Device, cfg Config, members int) *Device {
	t.Helper()
	d, err := NewDevice(inner, cfg, Options{Rand: fixedSource(1)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range members {
		v6 := netip.MustParseAddr(fmt.Sprintf("fd00::%x", i))
		if err := d.UpsertMember(uint32(i), []netip.Addr{memberAddr(i), v6}, 1); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

type fixedSource uint64

func (s fixedSource) Uint64() uint64 { return uint64(s) * 0x9e3779b97f4a7c15 }

// wgBufs allocates n buffers as wireguard-go does (large, with headroom).
func wgBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	return bufs, make([]int, n)
}

// readPackets calls d.Read until n packets were handed out and returns them.
func readPackets(t *testing.T, d *Device, n int) [][]byte {
	t.Helper()
	bufs, sizes := wgBufs(8)
	var out [][]byte
	for len(out) < n {
		k, err := d.Read(bufs[:min(8, n-len(out))], sizes, wgOffset)
		if err != nil {
			t.Fatalf("Read after %d packets: %v", len(out), err)
		}
		for i := range k {
			out = append(out, append([]byte(nil), bufs[i][wgOffset:wgOffset+sizes[i]]...))
		}
	}
	return out
}

func dstMember(p []byte) int { return int(p[17])<<8 | int(p[18]) }

func srcMember(p []byte) int { return int(p[13])<<8 | int(p[14]) }

// Download: the reader queues packets eagerly; Read hands them out in DRR
// order across members, with the payload intact at wireguard-go's offset.
func TestDeviceDownloadScheduledOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{}, 2)
		defer d.Close()
		// Full-size packets: one quantum each, so members strictly alternate.
		for i := range 20 {
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 1420, byte(i<<2))
		}
		for range 5 {
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(1), protoUDP, 2, 2, 1420, 0)
		}
		synctest.Wait()
		got := readPackets(t, d, 25)
		var order []int
		for _, p := range got {
			order = append(order, dstMember(p))
		}
		for i, m := range order[:10] {
			if m != i%2 {
				t.Fatalf("order %v: members do not alternate", order)
			}
		}
		var seq []byte
		for _, p := range got {
			if dstMember(p) == 0 {
				seq = append(seq, p[1]>>2)
			}
		}
		for i, s := range seq {
			if int(s) != i {
				t.Fatalf("member 0 packets reordered: %v", seq)
			}
		}
		st, _ := d.MemberStats(0)
		if st.Down.SentPackets != 20 || st.Down.QueuedPackets != 0 {
			t.Fatalf("member 0 stats %+v", st.Down)
		}
	})
}

// Upload: Write returns at once even while the real TUN does not accept
// anything; the drain then writes in DRR order; overflow is counted.
func TestDeviceWriteNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{LimitPackets: 64, NoUploadBypass: true}, 2)
		defer d.Close()
		bufs := make([][]byte, 0, 100)
		for range 100 {
			p := ipv4Packet(memberAddr(0), serverAddr, protoTCP, 5, 80, 1420, 0)
			bufs = append(bufs, append(make([]byte, wgOffset), p...))
		}
		start := time.Now()
		if n, err := d.Write(bufs, wgOffset); n != 100 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		one := [][]byte{append(make([]byte, wgOffset), ipv4Packet(memberAddr(1), serverAddr, protoTCP, 6, 80, 100, 0)...)}
		if _, err := d.Write(one, wgOffset); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 0 {
			t.Fatal("Write waited")
		}
		synctest.Wait()
		// The drain holds one member-0 packet, blocked in the TUN write;
		// member 1's packet is next, ahead of the 60-odd member-0 packets.
		first, second := <-ch.Inbound, <-ch.Inbound
		if srcMember(first) != 0 || srcMember(second) != 1 {
			t.Fatalf("drain order: %d then %d, want 0 then 1", srcMember(first), srcMember(second))
		}
		st := d.Stats()
		if st.Up.OverflowDrops == 0 || st.Up.EnqueuedPackets != 101 {
			t.Fatalf("up stats %+v: want overflow drops at limit 64", st.Up)
		}
		for st.Up.QueuedPackets > 0 {
			<-ch.Inbound
			synctest.Wait()
			st = d.Stats()
		}
		if got := st.Up.SentPackets + st.Up.OverflowDrops; got != 101 {
			t.Fatalf("sent %d + dropped %d != 101", st.Up.SentPackets, st.Up.OverflowDrops)
		}
	})
}

// Offsets and batches: a multi-packet inner read (a split GSO super-packet)
// is queued whole; the drain writes with headroom for the virtio header
// and the packet bytes unchanged; ErrTooManySegments is not fatal.
func TestDeviceOffsetsAndBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := newFakeTUN(4)
		d := newTestDevice(t, ft, Config{}, 3)
		defer d.Close()
		if d.BatchSize() != 4 {
			t.Fatalf("BatchSize %d, want inner's 4", d.BatchSize())
		}
		var batch [][]byte
		for i := range 6 { // 6 > batch 4: two packets lost, reader goes on
			batch = append(batch, ipv4Packet(serverAddr, memberAddr(i%3), protoUDP, uint16(i), 9, 200+i, 0))
		}
		ft.reads <- batch
		ft.reads <- batch[:2]
		synctest.Wait()
		got := readPackets(t, d, 6)
		seen := map[int]bool{}
		for _, p := range got {
			seen[len(p)] = true
		}
		if len(seen) != 4 && len(seen) != 3 {
			t.Fatalf("got packets of lengths %v", seen)
		}
		if d.Stats().InnerReadErrors != 1 {
			t.Fatalf("InnerReadErrors %d, want 1 (ErrTooManySegments)", d.Stats().InnerReadErrors)
		}
		// Upload with a jumbo packet among normal ones.
		pkts := [][]byte{
			ipv4Packet(memberAddr(0), serverAddr, protoUDP, 1, 2, 100, 0),
			ipv4Packet(memberAddr(1), serverAddr, protoUDP, 1, 2, 9000, 0),
			ipv4Packet(memberAddr(2), serverAddr, protoUDP, 1, 2, 1420, 0),
		}
		var bufs [][]byte
		for _, p := range pkts {
			bufs = append(bufs, append(make([]byte, wgOffset), p...))
		}
		d.Write(bufs, wgOffset)
		synctest.Wait()
		written, offs := ft.writtenCopy()
		if len(written) != 3 {
			t.Fatalf("wrote %d packets, want 3", len(written))
		}
		for i, w := range written {
			if offs[i] < 10 {
				t.Fatalf("written at offset %d: no room for the virtio header", offs[i])
			}
			ok := false
			for _, p := range pkts {
				ok = ok || string(p) == string(w)
			}
			if !ok {
				t.Fatalf("written packet %d (len %d) differs from every input", i, len(w))
			}
		}
	})
}

// Packets that wireguard-go reads but never sends (no session) must not
// stall Read forever: their in-flight debt expires.
func TestDeviceInflightLeakExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{InflightBytes: 16 << 10, InflightExpire: 5 * time.Millisecond}, 1)
		defer d.Close()
		for range 40 {
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 1400, 0)
		}
		synctest.Wait()
		start := time.Now()
		readPackets(t, d, 12) // about 16 KiB: the bound
		if time.Since(start) != 0 {
			t.Fatal("first packets waited")
		}
		readPackets(t, d, 28) // never credited: must resume after expiry
		if el := time.Since(start); el < 5*time.Millisecond || el > 20*time.Millisecond {
			t.Fatalf("resumed after %v, want after ≈ the 5 ms expiry, a few times at most", el)
		}
		if st := d.Stats(); st.InflightForgivenBytes == 0 {
			t.Fatalf("no debt forgiven: %+v", st)
		}
	})
}

// Sends of data messages through the wrapped bind release the in-flight
// bound at once; handshakes and keepalives are passed on and not counted.
func TestDeviceBindCreditsDataOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{InflightBytes: 16 << 10}, 1)
		defer d.Close()
		binds := bindtest.NewChannelBinds()
		b := d.WrapBind(binds[0])
		ep := bindtest.ChannelEndpoint(1)
		for range 30 {
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 1400, 0)
		}
		synctest.Wait()
		readPackets(t, d, 12)
		before, _ := d.infl.load()
		handshake := make([]byte, 148)
		handshake[0] = 1
		keepalive := make([]byte, 32)
		keepalive[0] = 4
		if err := b.Send([][]byte{handshake, keepalive}, ep); err != nil {
			t.Fatal(err)
		}
		if after, _ := d.infl.load(); after != before {
			t.Fatalf("handshake/keepalive changed in-flight %d → %d", before, after)
		}
		done := make(chan int)
		go func() {
			n := len(readPackets(t, d, 1))
			done <- n
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Read did not wait for the in-flight bound")
		default:
		}
		start := time.Now()
		data := make([]byte, wgMessageLen(1400, 1420))
		data[0] = 4
		if err := b.Send([][]byte{data, data}, ep); err != nil {
			t.Fatal(err)
		}
		<-done
		if time.Since(start) != 0 {
			t.Fatal("credit did not wake Read immediately")
		}
		if b.BatchSize() != binds[0].BatchSize() {
			t.Fatal("wrapper does not forward BatchSize")
		}
	})
}

// At EgressRate the hand-out rate follows the pacer, within one burst.
func TestDevicePacesEgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{EgressRate: 10_000_000}, 1)
		defer d.Close()
		binds := bindtest.NewChannelBinds()
		b := d.WrapBind(binds[0])
		for range 200 { // ECT(0): the 200 ms standing queue gets CE marks, not drops
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 1400, 2)
		}
		synctest.Wait()
		start := time.Now()
		bufs, sizes := wgBufs(128)
		msg := make([]byte, wgMessageLen(1400, 1420))
		msg[0] = 4
		for got := 0; got < 200; {
			n, err := d.Read(bufs, sizes, wgOffset)
			if err != nil {
				t.Fatal(err)
			}
			if n > 2 {
				t.Fatalf("Read handed out %d packets at once; burst is 1 ms ≈ 1.05 packets", n)
			}
			got += n
			for range n { // wireguard-go sends them
				b.Send([][]byte{msg}, bindtest.ChannelEndpoint(1))
			}
		}
		want := time.Duration(200 * (1400 + TunnelOverhead) * 8 * int64(time.Second) / 10_000_000)
		if el := time.Since(start); el < want-3*time.Millisecond || el > want+3*time.Millisecond {
			t.Fatalf("200 packets took %v at 10 Mbit/s, want ≈ %v", el, want)
		}
		if st := d.Stats(); st.Down.CEMarks == 0 || st.Down.CoDelDrops != 0 || st.EgressRate != 10_000_000 {
			t.Fatalf("down stats %+v", st)
		}
	})
}

func TestDeviceIngressRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := newFakeTUN(8)
		d := newTestDevice(t, ft, Config{IngressRate: 10_000_000}, 1)
		defer d.Close()
		var bufs [][]byte
		for range 100 {
			// ECT(0), so CoDel marks rather than drops the 117 ms queue.
			bufs = append(bufs, append(make([]byte, wgOffset), ipv4Packet(memberAddr(0), serverAddr, protoUDP, 1, 2, 1400, 2)...))
		}
		start := time.Now()
		d.Write(bufs, wgOffset)
		for d.Stats().Up.QueuedPackets > 0 {
			time.Sleep(100 * time.Microsecond) // virtual time (synctest), not a real wait
		}
		synctest.Wait()
		if w, _ := ft.writtenCopy(); len(w) != 100 {
			t.Fatalf("wrote %d of 100", len(w))
		}
		want := time.Duration(100 * (1400 + TunnelOverhead) * 8 * int64(time.Second) / 10_000_000)
		if el := time.Since(start); el < want-3*time.Millisecond || el > want+3*time.Millisecond {
			t.Fatalf("drain took %v at 10 Mbit/s, want ≈ %v", el, want)
		}
	})
}

// Unknown addresses and garbage are scheduled in the shared class; a
// removed member's address falls back to it too.
func TestDeviceUnknownClass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{}, 2)
		defer d.Close()
		ch.Outbound <- ipv4Packet(serverAddr, memberAddr(77), protoUDP, 1, 1, 100, 0)
		ch.Outbound <- []byte{0xff, 1, 2}
		if !d.RemoveMember(1) || d.RemoveMember(1) {
			t.Fatal("RemoveMember result wrong")
		}
		ch.Outbound <- ipv4Packet(serverAddr, memberAddr(1), protoUDP, 1, 1, 100, 0)
		ch.Outbound <- ipv6Packet(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fd00::0"), protoUDP, 1, 1, 100, 0)
		synctest.Wait()
		readPackets(t, d, 4)
		u, ok := d.MemberStats(UnknownMember)
		if !ok || u.Down.SentPackets != 3 {
			t.Fatalf("unknown class sent %d, want 3", u.Down.SentPackets)
		}
		if m0, _ := d.MemberStats(0); m0.Down.SentPackets != 1 {
			t.Fatalf("member 0 (via IPv6) sent %d, want 1", m0.Down.SentPackets)
		}
		if _, ok := d.MemberStats(1); ok {
			t.Fatal("removed member still has stats")
		}
		if err := d.UpsertMember(UnknownMember, nil, 1); !errors.Is(err, ErrReservedID) {
			t.Fatalf("upsert of the reserved id: %v", err)
		}
		if err := d.UpsertMember(5, []netip.Addr{{}}, 1); err == nil {
			t.Fatal("invalid address accepted")
		}
	})
}

// An address moved to another member leaves the first; weights update in
// place and queued packets survive an upsert.
func TestDeviceUpsertMovesAddress(t *testing.T) {
	d := newTestDevice(t, newFakeTUN(1), Config{}, 2)
	defer d.Close()
	a := memberAddr(0)
	if err := d.UpsertMember(1, []netip.Addr{a}, 9); err != nil {
		t.Fatal(err)
	}
	d.reg.mu.RLock()
	owner := d.reg.byAddr[keyFromAddr(a)].id
	left := len(d.reg.byID[0].addrs)
	d.reg.mu.RUnlock()
	if owner != 1 || left != 1 {
		t.Fatalf("address owner %d, member 0 keeps %d addrs; want 1 and 1 (its IPv6)", owner, left)
	}
	if st, _ := d.MemberStats(1); st.Weight != 9 {
		t.Fatalf("weight %d, want 9", st.Weight)
	}
	if got := d.reg.get(1); got.weight() != 9 || len(got.addrs) != 1 {
		t.Fatal("upsert did not replace the addresses")
	}
}

// Switching discipline at run time drops nothing that is queued.
func TestDeviceSetConfigKeepsQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{}, 4)
		defer d.Close()
		for i := range 50 {
			ch.Outbound <- ipv4Packet(serverAddr, memberAddr(i%4), protoUDP, uint16(i), 1, 500, 0)
		}
		synctest.Wait()
		readPackets(t, d, 5)
		for _, c := range []Config{{Discipline: "fifo"}, {Discipline: "srr", EgressRate: 1e9}, {Discipline: "fifo"}, {}} {
			if err := d.SetConfig(c); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.SetConfig(Config{Discipline: "red"}); err == nil {
			t.Fatal("bad discipline accepted")
		}
		if d.Stats().Discipline != "srr" {
			t.Fatal("failed SetConfig changed the config")
		}
		readPackets(t, d, 45)
		if st := d.Stats(); st.Down.SentPackets != 50 || st.Down.OverflowDrops+st.Down.CoDelDrops != 0 {
			t.Fatalf("stats after switches: %+v", st.Down)
		}
	})
}

// Close is idempotent, safe concurrently, wakes a blocked Read, makes
// Read and Write fail with os.ErrClosed, and leaves no goroutine behind
// (synctest.Test fails if any is still running or blocked).
func TestDeviceClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{NoUploadBypass: true}, 1)
		readErr := make(chan error)
		go func() {
			bufs, sizes := wgBufs(1)
			_, err := d.Read(bufs, sizes, wgOffset)
			readErr <- err
		}()
		// A pending upload blocked in the inner Write must not hold Close.
		d.Write([][]byte{append(make([]byte, wgOffset), ipv4Packet(memberAddr(0), serverAddr, protoUDP, 1, 2, 100, 0)...)}, wgOffset)
		synctest.Wait()
		done := make(chan struct{})
		for range 3 {
			go func() { d.Close(); done <- struct{}{} }()
		}
		for range 3 {
			<-done
		}
		if err := <-readErr; !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked Read returned %v", err)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := d.Write([][]byte{make([]byte, 40)}, 0); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
		bufs, sizes := wgBufs(1)
		if _, err := d.Read(bufs, sizes, wgOffset); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	})
}

// A persistently failing inner device is reported through Read (as
// wireguard-go would have seen it) after a run of failures; one-off
// failures are skipped.
func TestDeviceInnerReadError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := newFakeTUN(1)
		d := newTestDevice(t, ft, Config{}, 1)
		defer d.Close()
		boom := errors.New("boom")
		ft.errs <- boom
		ft.reads <- [][]byte{ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 100, 0)}
		synctest.Wait()
		readPackets(t, d, 1)
		for range maxReadErrors {
			ft.errs <- boom
		}
		bufs, sizes := wgBufs(1)
		if _, err := d.Read(bufs, sizes, wgOffset); !errors.Is(err, boom) {
			t.Fatalf("Read = %v, want the inner error", err)
		}
	})
}

// A wireguard-go buffer too small for the packet is a counted drop, not a
// panic.
func TestDeviceReadSmallBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{}, 1)
		defer d.Close()
		ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 1400, 0)
		ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 100, 0)
		synctest.Wait()
		bufs := [][]byte{make([]byte, 500), make([]byte, 500)}
		n, err := d.Read(bufs, make([]int, 2), wgOffset)
		if err != nil || n != 1 || d.Stats().OversizeDrops != 1 {
			t.Fatalf("Read = %d, %v; oversize drops %d", n, err, d.Stats().OversizeDrops)
		}
	})
}

// Passthrough methods.
func TestDevicePassthrough(t *testing.T) {
	ch := tuntest.NewChannelTUN()
	d := newTestDevice(t, ch.TUN(), Config{}, 0)
	defer d.Close()
	if mtu, _ := d.MTU(); mtu != tuntest.DefaultMTU {
		t.Fatalf("MTU %d", mtu)
	}
	if name, _ := d.Name(); name == "" {
		t.Fatal("no name")
	}
	if ev := <-d.Events(); ev != tun.EventUp {
		t.Fatalf("event %v", ev)
	}
	if d.File() != nil {
		t.Fatal("file")
	}
}

// 20,000 members are added one by one without copying maps, and a stats
// scrape visits each once.
func TestDeviceManyMembers(t *testing.T) {
	d := newTestDevice(t, newFakeTUN(1), Config{}, 0)
	defer d.Close()
	const n = 20000
	for i := range n {
		v6 := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 8), byte(i)})
		if err := d.UpsertMember(uint32(i), []netip.Addr{memberAddr(i), v6}, 1); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[uint32]bool, n+1)
	d.ForEachMember(func(id uint32, st MemberStats) {
		if seen[id] {
			t.Fatalf("member %d visited twice", id)
		}
		seen[id] = true
	})
	if len(seen) != n+1 || !seen[UnknownMember] {
		t.Fatalf("visited %d members, want %d plus unknown", len(seen), n)
	}
	if got := d.Stats().Members; got != n {
		t.Fatalf("Stats().Members = %d", got)
	}
}

// An upload with nothing queued goes straight to the TUN in the caller's
// buffers (zero copy, the TUN's GRO sees the whole batch); with an ingress
// rate it is always queued; a queued backlog is never overtaken.
func TestUploadBypass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{}, 2)
		defer d.Close()
		pkt := func(m int, sport uint16) [][]byte {
			return [][]byte{append(make([]byte, wgOffset), ipv4Packet(memberAddr(m), serverAddr, protoTCP, sport, 80, 100, 0)...)}
		}
		done := make(chan struct{})
		go func() {
			d.Write(pkt(0, 1), wgOffset) // bypass: blocks in the channel TUN until read
			close(done)
		}()
		synctest.Wait()
		// The bypass writer holds the TUN; this Write must queue, not wait.
		if n, err := d.Write(pkt(1, 2), wgOffset); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		first := <-ch.Inbound
		<-done
		second := <-ch.Inbound
		if srcMember(first) != 0 || srcMember(second) != 1 {
			t.Fatalf("order %d then %d", srcMember(first), srcMember(second))
		}
		synctest.Wait()
		st := d.Stats()
		if st.UpBypassPackets != 1 || st.Up.EnqueuedPackets != 1 || st.Up.SentPackets != 1 {
			t.Fatalf("bypass %d, enqueued %d, sent %d", st.UpBypassPackets, st.Up.EnqueuedPackets, st.Up.SentPackets)
		}
		// With an ingress rate every upload is scheduled.
		if err := d.SetConfig(Config{IngressRate: 10_000_000}); err != nil {
			t.Fatal(err)
		}
		d.Write(pkt(2, 3), wgOffset)
		<-ch.Inbound
		synctest.Wait()
		if st := d.Stats(); st.UpBypassPackets != 1 || st.Up.EnqueuedPackets != 2 {
			t.Fatalf("with ingress rate: bypass %d, enqueued %d", st.UpBypassPackets, st.Up.EnqueuedPackets)
		}
	})
}

// sinkBind sends nothing (it takes any endpoint type).
type sinkBind struct{ conn.Bind }

func (sinkBind) Send([][]byte, conn.Endpoint) error { return nil }

// endpoint6 is a member endpoint of a given address.
type endpoint6 struct {
	bindtest.ChannelEndpoint
	addr netip.Addr
}

func (e endpoint6) DstIP() netip.Addr { return e.addr }

// Data messages to an IPv6 endpoint cost the pacer 20 bytes more each (a
// 40-byte outer header instead of 20); IPv4 and 4in6 endpoints nothing.
func TestDeviceChargesIPv6Outer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := tuntest.NewChannelTUN()
		d := newTestDevice(t, ch.TUN(), Config{EgressRate: 10_000_000}, 1)
		defer d.Close()
		b := d.WrapBind(sinkBind{bindtest.NewChannelBinds()[0]})
		data := make([]byte, wgMessageLen(1400, 1420))
		data[0] = 4
		keepalive := make([]byte, 32)
		keepalive[0] = 4
		for _, tc := range []struct {
			addr string
			want int64
		}{{"2001:db8::7", 3 * TunnelOverhead6Extra}, {"192.0.2.7", 0}, {"::ffff:192.0.2.7", 0}} {
			d.outer6.Store(0)
			b.Send([][]byte{data, data, keepalive, data}, endpoint6{bindtest.ChannelEndpoint(1), netip.MustParseAddr(tc.addr)})
			if got := d.outer6.Load(); got != tc.want {
				t.Errorf("%s: pacer debt %d bytes, want %d", tc.addr, got, tc.want)
			}
		}
		// The next Read charges the debt to the pacer.
		d.outer6.Store(3 * TunnelOverhead6Extra)
		ch.Outbound <- ipv4Packet(serverAddr, memberAddr(0), protoUDP, 1, 1, 1400, 0)
		synctest.Wait()
		before := d.egress.tokens
		readPackets(t, d, 1)
		if d.outer6.Load() != 0 {
			t.Fatal("Read did not take the IPv6 outer-header debt")
		}
		if spent := before - d.egress.tokens; spent < 1400+TunnelOverhead+3*TunnelOverhead6Extra-100 {
			t.Errorf("pacer charged %d bytes for one 1400-byte packet and 3 IPv6 headers", spent)
		}
	})
}
