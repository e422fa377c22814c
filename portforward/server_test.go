package portforward

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverFixture is a Server on a loopback socket around a table fixture.
type serverFixture struct {
	*fixture
	s    *Server
	addr netip.AddrPort // where the server listens
}

func listen(tb testing.TB, ip netip.Addr) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func newServerFixture(tb testing.TB, mod func(*ServerOptions)) *serverFixture {
	tb.Helper()
	f := &serverFixture{fixture: newFixture(tb, testOptions())}
	opts := ServerOptions{
		Identify:   identify,
		PublicAddr: func() netip.Addr { return wan },
		Now:        f.clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := NewServer(f.t, opts)
	if err != nil {
		tb.Fatal(err)
	}
	f.s = s
	c := listen(tb, lo)
	f.addr = c.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := s.Start(c); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		checkNoGoroutines(tb)
	})
	return f
}

// exchange sends req from c to dst and returns the answer and where it
// came from. The deadline only bounds a broken test.
func exchange(tb testing.TB, c *net.UDPConn, dst netip.AddrPort, req []byte) ([]byte, netip.AddrPort) {
	tb.Helper()
	if _, err := c.WriteToUDPAddrPort(req, dst); err != nil {
		tb.Fatal(err)
	}
	return receive(tb, c)
}

func receive(tb testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		tb.Fatalf("no answer: %v", err)
	}
	return buf[:n], from
}

// queued reports whether a datagram waits on c, without waiting.
func queued(tb testing.TB, c *net.UDPConn) bool {
	tb.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var n int
	var rerr error
	buf := make([]byte, 2048)
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
		return true
	})
	if err != nil {
		tb.Fatal(err)
	}
	return rerr == nil && n >= 0
}

func mapReq(op Opcode, internal, suggested uint16, lifetime uint32) []byte {
	return AppendRequest(nil, Request{Op: op, InternalPort: internal, SuggestedPort: suggested, Lifetime: lifetime})
}

func TestServerExchange(t *testing.T) {
	f := newServerFixture(t, nil)
	c := listen(t, lo)
	f.clock.Advance(1234*time.Second + 999*time.Millisecond)
	for _, tc := range []struct {
		name string
		req  []byte
		want []byte
	}{
		{"public address", []byte{0, 0},
			[]byte{0, 128, 0, 0, 0, 0, 0x04, 0xd2, 203, 0, 113, 1}},
		{"map UDP 6881 → 40005", mapReq(OpMapUDP, 6881, 40005, 7200),
			[]byte{0, 129, 0, 0, 0, 0, 0x04, 0xd2, 0x1a, 0xe1, 0x9c, 0x45, 0, 0, 0x0e, 0x10}}, // clamped to 3600
		{"renew with another suggestion", mapReq(OpMapUDP, 6881, 40001, 60),
			[]byte{0, 129, 0, 0, 0, 0, 0x04, 0xd2, 0x1a, 0xe1, 0x9c, 0x45, 0, 0, 0, 60}},
		{"map TCP 22, no suggestion", mapReq(OpMapTCP, 22, 0, 60),
			[]byte{0, 130, 0, 0, 0, 0, 0x04, 0xd2, 0, 22, 0x9c, 0x42, 0, 0, 0, 60}}, // 22 % 10 = 2
		{"internal port 0 with lifetime: refused", mapReq(OpMapTCP, 0, 0, 60),
			[]byte{0, 130, 0, 2, 0, 0, 0x04, 0xd2, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"delete UDP 6881", mapReq(OpMapUDP, 6881, 40005, 0),
			[]byte{0, 129, 0, 0, 0, 0, 0x04, 0xd2, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0}},
		{"delete it again: same answer", mapReq(OpMapUDP, 6881, 0, 0),
			[]byte{0, 129, 0, 0, 0, 0, 0x04, 0xd2, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0}},
		{"PCP version 2", append([]byte{2, 1}, make([]byte, 58)...),
			[]byte{0, 128, 0, 1, 0, 0, 0x04, 0xd2}},
		{"unsupported opcode echoed", []byte{0, 5, 0, 0, 9, 9},
			[]byte{0, 133, 0, 5, 9, 9}},
		{"trailing bytes ignored", append([]byte{0, 0}, 1, 2, 3),
			[]byte{0, 128, 0, 0, 0, 0, 0x04, 0xd2, 203, 0, 113, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from := exchange(t, c, f.addr, tc.req)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("answer % x\nwant   % x", got, tc.want)
			}
			if from != f.addr {
				t.Errorf("answer from %v, want %v", from, f.addr)
			}
		})
	}
	st := f.s.Stats()
	want := Stats{
		RequestsPublicAddr: 2, RequestsMapUDP: 4, RequestsMapTCP: 2, RequestsOther: 2,
		Answered: [numResults]uint64{ResultSuccess: 7, ResultUnsupportedVersion: 1, ResultRefused: 1, ResultUnsupportedOpcode: 1},
		Mappings: 1,
	}
	if st != want {
		t.Errorf("stats %+v\nwant  %+v", st, want)
	}
	if ms := f.t.List(); len(ms) != 1 || ms[0].Internal != netip.AddrPortFrom(lo, 22) || ms[0].Member != "alice" {
		t.Errorf("table %+v", ms)
	}
}

// TestServerDrops: foreign sources and unanswerable datagrams get no
// answer. Each is followed by a valid request on the same path; the
// server handles a socket's datagrams in order and loopback delivers
// during the send, so once the valid answer is in, a drop is certain.
func TestServerDrops(t *testing.T) {
	f := newServerFixture(t, nil)
	member := listen(t, lo)
	other := listen(t, foreign)
	probe := []byte{0, 0}

	for _, tc := range []struct {
		name string
		from *net.UDPConn
		req  []byte
	}{
		{"foreign source, valid request", other, probe},
		{"foreign source, mapping", other, mapReq(OpMapTCP, 80, 0, 60)},
		{"foreign source, bad version", other, []byte{1, 0}},
		{"empty datagram", member, nil},
		{"one byte", member, []byte{0}},
		{"a response", member, []byte{0, 128, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}},
		{"short mapping request", member, []byte{0, 1, 0, 0, 0, 80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.from.WriteToUDPAddrPort(tc.req, f.addr); err != nil {
				t.Fatal(err)
			}
			got, _ := exchange(t, member, f.addr, probe)
			if !bytes.Equal(got[:2], []byte{0, 128}) || len(got) != 12 {
				t.Fatalf("first answer % x is not the probe's", got)
			}
			if queued(t, other) || queued(t, member) {
				t.Fatal("the dropped datagram was answered")
			}
		})
	}
	st := f.s.Stats()
	if st.DroppedForeign != 3 || st.Malformed != 4 || st.RequestsPublicAddr != 7 || f.t.Len() != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestServerSockets: one server on two gateway addresses answers each
// request from the address it came to.
func TestServerSockets(t *testing.T) {
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, PublicAddr: func() netip.Addr { return wan }})
	if err != nil {
		t.Fatal(err)
	}
	a, b := listen(t, lo), listen(t, netip.MustParseAddr("127.0.0.3"))
	if err := s.Start(a, b); err != nil {
		t.Fatal(err)
	}
	defer checkNoGoroutines(t)
	defer s.Close()
	c := listen(t, lo)
	for _, srv := range []*net.UDPConn{a, b, a} {
		dst := srv.LocalAddr().(*net.UDPAddr).AddrPort()
		if _, from := exchange(t, c, dst, []byte{0, 0}); from != dst {
			t.Errorf("asked %v, answered from %v", dst, from)
		}
	}
}

// packetConn hides *net.UDPConn's extra methods: the generic path.
type packetConn struct{ net.PacketConn }

func TestServerGenericPacketConn(t *testing.T) {
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify})
	if err != nil {
		t.Fatal(err)
	}
	srv := listen(t, lo)
	if err := s.Start(packetConn{srv}); err != nil {
		t.Fatal(err)
	}
	defer checkNoGoroutines(t)
	defer s.Close()
	c := listen(t, lo)
	dst := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	got, from := exchange(t, c, dst, mapReq(OpMapTCP, 80, 40003, 60))
	if r, err := ParseResponse(got); err != nil || r.ExternalPort != 40003 || from != dst {
		t.Fatalf("answer %+v %v from %v", r, err, from)
	}
	// No PublicAddr: opcode 0 is a network failure with 0.0.0.0.
	got, _ = exchange(t, c, dst, []byte{0, 0})
	if want := []byte{0, 128, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("answer % x, want % x", got, want)
	}
}

func TestServerPublicAddr(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr netip.Addr
		want []byte
	}{
		{"IPv4", wan, []byte{0, 128, 0, 0, 0, 0, 0, 0, 203, 0, 113, 1}},
		{"4in6", netip.MustParseAddr("::ffff:203.0.113.9"), []byte{0, 128, 0, 0, 0, 0, 0, 0, 203, 0, 113, 9}},
		{"IPv6 only", netip.MustParseAddr("2001:db8::1"), []byte{0, 128, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"none yet", netip.Addr{}, []byte{0, 128, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, testOptions())
			s, err := NewServer(f.t, ServerOptions{Identify: identify, Now: f.clock.Now,
				PublicAddr: func() netip.Addr { return tc.addr }})
			if err != nil {
				t.Fatal(err)
			}
			got := s.handle([]byte{0, 0}, netip.AddrPortFrom(lo, 5350), nil)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("answer % x, want % x", got, tc.want)
			}
		})
	}
}

func TestServerSources(t *testing.T) {
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		src    netip.AddrPort
		answer bool
	}{
		{"member", netip.AddrPortFrom(lo, 1), true},
		{"member as 4in6", netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"), true},
		{"foreign", netip.AddrPortFrom(foreign, 1), false},
		{"IPv6", netip.MustParseAddrPort("[::1]:1"), false},
		{"invalid", netip.AddrPort{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.handle([]byte{0, 0}, tc.src, nil); (got != nil) != tc.answer {
				t.Errorf("answer % x", got)
			}
		})
	}
	// The mapping's internal address is the unmapped IPv4 source.
	s.handle(mapReq(OpMapUDP, 9, 0, 60), netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"), nil)
	if ms := f.t.List(); len(ms) != 1 || ms[0].Internal != netip.AddrPortFrom(lo, 9) {
		t.Errorf("table %+v", ms)
	}
}

// TestServerEpoch: seconds since NewServer, by the injected clock; a clock
// going back reads 0.
func TestServerEpoch(t *testing.T) {
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	epoch := func() uint32 {
		r, err := ParseResponse(s.handle([]byte{9, 0}, netip.AddrPortFrom(lo, 1), nil))
		if err != nil {
			t.Fatal(err)
		}
		return r.Epoch
	}
	for _, tc := range []struct {
		advance time.Duration
		want    uint32
	}{
		{0, 0}, {999 * time.Millisecond, 0}, {time.Millisecond, 1}, {time.Hour, 3601},
		{-2 * time.Hour, 0}, {2*time.Hour + 200*365*24*time.Hour, 0xffffffff},
	} {
		f.clock.Advance(tc.advance)
		if got := epoch(); got != tc.want {
			t.Errorf("after %v more: epoch %d, want %d", tc.advance, got, tc.want)
		}
	}
}

func TestServerApplyFailure(t *testing.T) {
	f := newServerFixture(t, nil)
	c := listen(t, lo)
	f.inst.setFail(errBoom)
	got, _ := exchange(t, c, f.addr, mapReq(OpMapTCP, 80, 40000, 60))
	if want := []byte{0, 130, 0, 3, 0, 0, 0, 0, 0, 80, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("answer % x, want % x", got, want)
	}
	if st := f.s.Stats(); st.ApplyErrors != 1 || st.Answered[ResultNetworkFailure] != 1 || st.Mappings != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestServerExpiryLoop: the ticker expires mappings by the injected clock
// and saves renewals; Close saves what is still pending.
func TestServerExpiryLoop(t *testing.T) {
	f := newServerFixture(t, func(o *ServerOptions) { o.ExpiryInterval = time.Millisecond })
	c := listen(t, lo)
	exchange(t, c, f.addr, mapReq(OpMapTCP, 80, 0, 60))
	exchange(t, c, f.addr, mapReq(OpMapTCP, 81, 0, 120))
	if f.t.Len() != 2 {
		t.Fatalf("table %+v", f.t.List())
	}
	f.clock.Advance(time.Minute)
	waitFor(t, "the ticker to expire the first mapping", func() bool { return f.s.Stats().Expired == 1 })
	if ms := f.t.List(); len(ms) != 1 || ms[0].Internal.Port() != 81 {
		t.Fatalf("table %+v", ms)
	}
	// A renewal is saved by the ticker.
	exchange(t, c, f.addr, mapReq(OpMapTCP, 81, 0, 600))
	waitFor(t, "the ticker to save the renewal", func() bool {
		_, saved := f.store.state()
		return len(saved) == 1 && saved[0].Expires.Equal(f.clock.Now().Add(600*time.Second))
	})
}

func TestServerCloseFlushes(t *testing.T) {
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, Now: f.clock.Now, ExpiryInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := listen(t, lo)
	if err := s.Start(srv); err != nil {
		t.Fatal(err)
	}
	c := listen(t, lo)
	dst := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	exchange(t, c, dst, mapReq(OpMapUDP, 80, 0, 60))
	exchange(t, c, dst, mapReq(OpMapUDP, 80, 0, 300)) // renewal: pending
	f.store.setSaveErr(errBoom)
	if err := s.Close(); !errors.Is(err, errBoom) {
		t.Fatalf("Close = %v, want the save error", err)
	}
	if err := s.Close(); !errors.Is(err, errBoom) {
		t.Fatalf("second Close = %v, want the same", err)
	}
	checkNoGoroutines(t)
	// The socket is closed.
	if _, err := srv.WriteToUDPAddrPort([]byte{0}, dst); !errors.Is(err, net.ErrClosed) {
		t.Errorf("socket still open: %v", err)
	}
	f.store.setSaveErr(nil)
	if err := f.t.flush(); err != nil {
		t.Fatal(err)
	}
	if _, saved := f.store.state(); len(saved) != 1 || !saved[0].Expires.Equal(epoch0.Add(300*time.Second)) {
		t.Errorf("saved %+v", saved)
	}
}

func TestServerLifecycle(t *testing.T) {
	f := newFixture(t, testOptions())
	if _, err := NewServer(f.t, ServerOptions{}); err == nil {
		t.Error("NewServer without Identify")
	}
	if _, err := NewServer(nil, ServerOptions{Identify: identify}); err == nil {
		t.Error("NewServer without a table")
	}
	if _, err := NewServer(f.t, ServerOptions{Identify: identify, ExpiryInterval: -1}); err == nil {
		t.Error("negative interval accepted")
	}
	s, err := NewServer(f.t, ServerOptions{Identify: identify})
	if err != nil {
		t.Fatal(err)
	}

	wild, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(wild); err == nil || !strings.Contains(err.Error(), "not bound to an address") {
		t.Errorf("wildcard socket: %v", err)
	}
	if _, err := wild.WriteToUDPAddrPort([]byte{0}, netip.AddrPortFrom(lo, 9)); !errors.Is(err, net.ErrClosed) {
		t.Error("refused socket left open")
	}

	if err := s.Start(listen(t, lo)); err != nil {
		t.Fatal(err)
	}
	extra := listen(t, lo)
	if err := s.Start(extra); err == nil {
		t.Error("second Start accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(listen(t, lo)); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	checkNoGoroutines(t)

	// Close without Start.
	s2, _ := NewServer(f.t, ServerOptions{Identify: identify})
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestServerConcurrent: members request over two sockets while the table
// expires and removes members; run under -race.
func TestServerConcurrent(t *testing.T) {
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, Now: f.clock.Now, ExpiryInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a, b := listen(t, lo), listen(t, netip.MustParseAddr("127.0.0.3"))
	if err := s.Start(a, b); err != nil {
		t.Fatal(err)
	}
	defer checkNoGoroutines(t)
	defer s.Close()
	var wg sync.WaitGroup
	for i, src := range []netip.Addr{lo, loBob, lo, loBob} {
		dst := []*net.UDPConn{a, b}[i%2].LocalAddr().(*net.UDPAddr).AddrPort()
		c := listen(t, src)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				req := mapReq(Opcode(1+j%2), uint16(1+j%7), 0, uint32(j%3*30))
				if _, err := c.WriteToUDPAddrPort(req, dst); err != nil {
					t.Error(err)
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 64)
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Error(err)
					return
				}
				if r, err := ParseResponse(buf[:n]); err != nil || r.InternalPort != uint16(1+j%7) {
					t.Errorf("answer %+v %v", r, err)
					return
				}
			}
		}()
	}
	for range 50 {
		f.clock.Advance(10 * time.Second)
		f.t.RemoveMember("bob")
		f.t.Expire()
		s.Stats()
		f.t.List()
	}
	wg.Wait()
	if err := checkMappings(f.t.List()); err != nil {
		t.Error(err)
	}
}

// TestHandleAllocs: the requests that change nothing allocate nothing.
func TestHandleAllocs(t *testing.T) {
	f := newFixture(t, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, Now: f.clock.Now, PublicAddr: func() netip.Addr { return wan }})
	if err != nil {
		t.Fatal(err)
	}
	src := netip.AddrPortFrom(lo, 5350)
	out := make([]byte, 0, maxPacket+4)
	renew := mapReq(OpMapUDP, 80, 0, 60)
	if s.handle(renew, src, out) == nil {
		t.Fatal("no answer")
	}
	inputs := []struct {
		req []byte
		src netip.AddrPort
	}{
		{[]byte{0, 0}, src},
		{renew, src},
		{mapReq(OpMapUDP, 81, 0, 0), src}, // delete nothing
		{mapReq(OpMapUDP, 0, 0, 60), src}, // refused
		{[]byte{1, 0}, src},
		{[]byte{0, 9, 1, 2, 3}, src},
		{[]byte{0}, src},
		{[]byte{0, 0}, netip.AddrPortFrom(foreign, 1)},
	}
	n := testing.AllocsPerRun(200, func() {
		for _, in := range inputs {
			s.handle(in.req, in.src, out[:0])
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

func BenchmarkHandleRenewal(b *testing.B) {
	f := newFixture(b, testOptions())
	s, err := NewServer(f.t, ServerOptions{Identify: identify, Now: f.clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	src := netip.AddrPortFrom(lo, 5350)
	out := make([]byte, 0, maxPacket)
	req := mapReq(OpMapUDP, 80, 0, 60)
	b.ReportAllocs()
	for b.Loop() {
		s.handle(req, src, out[:0])
	}
}
