package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"exitd/internal/testenv"
)

// cmsg builds one control message as the kernel lays it out, padded.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// pktinfo4 is struct in_pktinfo: ifindex, spec_dst, addr.
func pktinfo4(ifindex uint32, specDst, addr string) []byte {
	b := binary.NativeEndian.AppendUint32(nil, ifindex)
	b = append(b, netip.MustParseAddr(specDst).AsSlice()...)
	return append(b, netip.MustParseAddr(addr).AsSlice()...)
}

// pktinfo6 is struct in6_pktinfo: addr, ifindex.
func pktinfo6(addr string, ifindex uint32) []byte {
	return binary.NativeEndian.AppendUint32(netip.MustParseAddr(addr).AsSlice(), ifindex)
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// stickyEndpoint is an endpoint to dst whose datagram arrived at src on
// interface ifindex.
func stickyEndpoint(dst, src string, ifindex int32) *endpoint {
	e := &endpoint{ap: netip.MustParseAddrPort(dst)}
	a := netip.MustParseAddr(src)
	c := rxControl{family: 4, ifindex: ifindex}
	if a.Is6() {
		c.family = 6
	}
	c.addr = a.As16()
	if a.Is4() {
		a4 := a.As4()
		c.addr = [16]byte{}
		copy(c.addr[:], a4[:])
	}
	e.setSrc(c)
	return e
}

func TestParseControl(t *testing.T) {
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(1380)) // the kernel puts an int
	v4 := cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pktinfo4(3, "198.18.0.2", "198.18.0.2"))
	v6 := cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pktinfo6("2001:2:0:2::2", 3))
	ll := cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pktinfo6("fe80::1", 9))
	other := cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16))
	tests := []struct {
		name    string
		oob     []byte
		gro     int
		dst     string // "" for none
		ifindex int32
		err     bool
	}{
		{"nothing", nil, 0, "", 0, false},
		{"GRO only", gro, 1380, "", 0, false},
		{"IPv4 PKTINFO only", v4, 0, "198.18.0.2", 3, false},
		{"GRO then IPv4 PKTINFO (the kernel's order)", cat(gro, v4), 1380, "198.18.0.2", 3, false},
		{"IPv4 PKTINFO then GRO", cat(v4, gro), 1380, "198.18.0.2", 3, false},
		{"GRO then IPv6 PKTINFO", cat(gro, v6), 1380, "2001:2:0:2::2", 3, false},
		{"IPv6 link-local", ll, 0, "fe80::1", 9, false},
		{"unknown message skipped", cat(other, v4), 0, "198.18.0.2", 3, false},
		{"short PKTINFO ignored", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, make([]byte, 8)), 0, "", 0, false},
		{"truncated", cat(gro, v4[:unix.CmsgLen(0)+4]), 1380, "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseControl(tc.oob)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if c.gro != tc.gro {
				t.Errorf("gro %d, want %d", c.gro, tc.gro)
			}
			var want netip.Addr
			if tc.dst != "" {
				want = netip.MustParseAddr(tc.dst)
			}
			if c.dst() != want || c.ifindex != tc.ifindex {
				t.Errorf("dst %v if %d, want %v if %d", c.dst(), c.ifindex, want, tc.ifindex)
			}
		})
	}
}

func TestEndpointSource(t *testing.T) {
	tests := []struct {
		name, dst, src string
		ifindex        int32
		want           string // SrcToString
		wantIf         int32  // what goes into the PKTINFO
	}{
		{"IPv4 keeps the interface", "198.18.1.1:5000", "198.18.0.2", 3, "198.18.0.2", 3},
		{"IPv6 global: routing picks the interface", "[2001:2:0:2::1:1]:5000", "2001:2:0:2::2", 3, "2001:2:0:2::2", 0},
		{"IPv6 link-local keeps the interface", "[fe80::2]:5000", "fe80::1", 9, "fe80::1", 9},
		{"v4-mapped source of an IPv4 member", "198.18.1.1:5000", "::ffff:198.18.0.2", 3, "198.18.0.2", 3},
		{"IPv6 source of an IPv4 member: none", "198.18.1.1:5000", "2001:2:0:2::2", 3, "", 0},
		{"IPv4 source of an IPv6 member: none", "[2001:2:0:2::1:1]:5000", "198.18.0.2", 3, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := stickyEndpoint(tc.dst, tc.src, tc.ifindex)
			if got := e.SrcToString(); got != tc.want {
				t.Fatalf("SrcToString %q, want %q", got, tc.want)
			}
			var buf [srcControlMax]byte
			ctl := e.srcControl(&buf)
			if tc.want == "" {
				if ctl != nil || e.SrcIP().IsValid() {
					t.Fatalf("control %x, SrcIP %v without a source", ctl, e.SrcIP())
				}
				return
			}
			if e.SrcIP() != netip.MustParseAddr(tc.want) {
				t.Fatalf("SrcIP %v", e.SrcIP())
			}
			var want []byte
			if e.ap.Addr().Is4() {
				want = cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pktinfo4(uint32(tc.wantIf), tc.want, "0.0.0.0"))
			} else {
				want = cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pktinfo6(tc.want, uint32(tc.wantIf)))
			}
			if !bytes.Equal(ctl, want) {
				t.Fatalf("control\n%x, want\n%x", ctl, want)
			}
			e.ClearSrc()
			if e.SrcIP().IsValid() || e.SrcToString() != "" || e.srcControl(&buf) != nil {
				t.Fatal("ClearSrc left a source")
			}
		})
	}
	if unix.CmsgSpace(unix.SizeofInet6Pktinfo) > srcControlMax {
		t.Fatal("srcControlMax is too small")
	}
	e, _ := (&udpBind{}).ParseEndpoint("198.18.0.1:443")
	if e.SrcIP().IsValid() || e.SrcToString() != "" {
		t.Fatal("a parsed endpoint has a source")
	}
}

// recordWriter is a batchWriter that records each message's control bytes
// and refuses (EINVAL) any carrying a PKTINFO for a source in gone.
type recordWriter struct {
	oobs [][]byte
	gone netip.Addr
}

func (w *recordWriter) WriteBatch(ms []ipv6.Message, _ int) (int, error) {
	for i, m := range ms {
		if c, _ := parseControl(m.OOB); w.gone.IsValid() && c.dst() == w.gone {
			if i == 0 {
				return 0, &os.SyscallError{Syscall: "sendmmsg", Err: unix.EINVAL}
			}
			return i, nil
		}
		w.oobs = append(w.oobs, append([]byte(nil), m.OOB...))
	}
	return len(ms), nil
}

func TestSendControl(t *testing.T) {
	v4 := cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pktinfo4(3, "198.18.0.2", "0.0.0.0"))
	v6 := cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pktinfo6("2001:2:0:2::2", 0))
	seg := func(n uint16) []byte { return cmsg(unix.SOL_UDP, unix.UDP_SEGMENT, u16(n)) }
	tests := []struct {
		name  string
		ep    *endpoint
		gso   bool
		sizes []int
		want  [][]byte // control bytes of each message sent
	}{
		{"IPv4 GSO", stickyEndpoint("198.18.1.1:5000", "198.18.0.2", 3), true, []int{1200, 1200, 300},
			[][]byte{cat(seg(1200), v4)}},
		{"IPv4 GSO two runs", stickyEndpoint("198.18.1.1:5000", "198.18.0.2", 3), true, []int{1200, 500, 1200},
			[][]byte{cat(seg(1200), v4), v4}},
		{"IPv4 no GSO", stickyEndpoint("198.18.1.1:5000", "198.18.0.2", 3), false, []int{1200, 1200},
			[][]byte{v4, v4}},
		{"IPv6 GSO", stickyEndpoint("[2001:2:0:2::1:1]:5000", "2001:2:0:2::2", 3), true, []int{1000, 1000},
			[][]byte{cat(seg(1000), v6)}},
		{"IPv6 no GSO", stickyEndpoint("[2001:2:0:2::1:1]:5000", "2001:2:0:2::2", 3), false, []int{1000},
			[][]byte{v6}},
		{"no source, GSO", &endpoint{ap: netip.MustParseAddrPort("198.18.1.1:5000")}, true, []int{1000, 1000},
			[][]byte{seg(1000)}},
		{"no source, no GSO", &endpoint{ap: netip.MustParseAddrPort("198.18.1.1:5000")}, false, []int{1000},
			[][]byte{{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := sendMsgs(t, tc.ep, tc.gso, tc.sizes)
			w := &recordWriter{}
			var buf [srcControlMax]byte
			if err := writeSticky(w, ms, tc.ep, tc.ep.srcControl(&buf), false); err != nil {
				t.Fatal(err)
			}
			if len(w.oobs) != len(tc.want) {
				t.Fatalf("%d messages, want %d", len(w.oobs), len(tc.want))
			}
			for i := range tc.want {
				if !bytes.Equal(w.oobs[i], tc.want[i]) {
					t.Errorf("message %d control\n%x, want\n%x", i, w.oobs[i], tc.want[i])
				}
			}
		})
	}
}

// sendMsgs lays bufs of sizes out as Send does, GSO-coalesced or one each.
func sendMsgs(t *testing.T, e *endpoint, gso bool, sizes []int) []ipv6.Message {
	t.Helper()
	ms := make([]ipv6.Message, len(sizes))
	for i := range ms {
		ms[i].Buffers = make(net.Buffers, 1)
		ms[i].OOB = make([]byte, 0, oobSize)
	}
	bufs := make([][]byte, len(sizes))
	for i, n := range sizes {
		bufs[i] = make([]byte, n, 1<<16)
	}
	ua := net.UDPAddrFromAddrPort(e.ap)
	if gso {
		return ms[:coalesce(ua, e.ap.Addr().Is6(), bufs, ms)]
	}
	for i := range bufs {
		ms[i].Addr, ms[i].Buffers[0] = ua, bufs[i]
	}
	return ms
}

func TestSendSourceGoneRetriesWithout(t *testing.T) {
	seg := cmsg(unix.SOL_UDP, unix.UDP_SEGMENT, u16(1000))
	for _, tc := range []struct {
		name string
		gso  bool
		want [][]byte
	}{
		{"GSO", true, [][]byte{seg}},
		{"no GSO", false, [][]byte{{}, {}, {}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := stickyEndpoint("198.18.1.1:5000", "198.18.0.2", 3)
			ms := sendMsgs(t, e, tc.gso, []int{1000, 1000, 1000})
			w := &recordWriter{gone: netip.MustParseAddr("198.18.0.2")}
			var buf [srcControlMax]byte
			if err := writeSticky(w, ms, e, e.srcControl(&buf), false); err != nil {
				t.Fatal(err)
			}
			if e.SrcIP().IsValid() {
				t.Fatal("source kept after EINVAL")
			}
			if len(w.oobs) != len(tc.want) {
				t.Fatalf("%d messages sent, want %d", len(w.oobs), len(tc.want))
			}
			for i := range tc.want {
				if !bytes.Equal(w.oobs[i], tc.want[i]) {
					t.Errorf("message %d control %x, want %x", i, w.oobs[i], tc.want[i])
				}
			}
		})
	}
	// Another error is returned as is, the source kept.
	e := stickyEndpoint("198.18.1.1:5000", "198.18.0.2", 3)
	ms := sendMsgs(t, e, false, []int{100})
	var buf [srcControlMax]byte
	if err := writeSticky(failWriter{}, ms, e, e.srcControl(&buf), false); err == nil || !e.SrcIP().IsValid() {
		t.Fatalf("err %v, source %v", err, e.SrcIP())
	}
}

// With StrictSource a gone source is an error: nothing leaves from another
// address and the source stays (the member must come back to it, or go to
// the node that holds it now).
func TestSendSourceGoneStrict(t *testing.T) {
	e := stickyEndpoint("198.18.1.1:5000", "198.18.0.254", 3)
	ms := sendMsgs(t, e, false, []int{1000, 1000})
	w := &recordWriter{gone: netip.MustParseAddr("198.18.0.254")}
	var buf [srcControlMax]byte
	if err := writeSticky(w, ms, e, e.srcControl(&buf), true); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("err %v, want EINVAL", err)
	}
	if len(w.oobs) != 0 {
		t.Fatalf("%d messages left from another source", len(w.oobs))
	}
	if e.SrcIP() != netip.MustParseAddr("198.18.0.254") {
		t.Fatalf("source %v after a strict failure", e.SrcIP())
	}
	// wireguard-go's ClearSrc before a handshake retry keeps it too.
	e.strict = true
	e.ClearSrc()
	if e.SrcIP() != netip.MustParseAddr("198.18.0.254") {
		t.Fatalf("strict source cleared by ClearSrc: %v", e.SrcIP())
	}
}

type failWriter struct{}

func (failWriter) WriteBatch([]ipv6.Message, int) (int, error) {
	return 0, &os.SyscallError{Syscall: "sendmmsg", Err: unix.ENETUNREACH}
}

func TestSplitCoalescedCopiesControl(t *testing.T) {
	oob := cat(cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(100)),
		cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pktinfo6("2001:2:0:2::2", 3)))
	ms := make([]ipv6.Message, 8)
	for i := range ms {
		ms[i].Buffers = net.Buffers{make([]byte, 1<<16)}
		ms[i].OOB = make([]byte, oobSize)
	}
	at := len(ms) - 2
	m := &ms[at]
	m.N = 450 // 4 × 100 + 50
	m.NN = copy(m.OOB, oob)
	m.Addr = &net.UDPAddr{IP: net.ParseIP("2001:2:0:2::1:1"), Port: 5000}
	n, err := splitCoalesced(ms, at)
	if err != nil || n != 5 {
		t.Fatalf("split into %d: %v", n, err)
	}
	for i := range n {
		c, err := parseControl(ms[i].OOB[:ms[i].NN])
		if err != nil || c.dst() != netip.MustParseAddr("2001:2:0:2::2") || c.ifindex != 3 {
			t.Fatalf("datagram %d: control %+v %v", i, c, err)
		}
	}
}

// receiveOne calls fn until a datagram arrives and returns it with its
// endpoint.
func receiveOne(t *testing.T, fn conn.ReceiveFunc) ([]byte, conn.Endpoint) {
	t.Helper()
	bufs := make([][]byte, conn.IdealBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 1<<16)
	}
	sizes := make([]int, len(bufs))
	eps := make([]conn.Endpoint, len(bufs))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		n, err := fn(bufs, sizes, eps)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		for i := range n {
			if sizes[i] > 0 {
				return bufs[i][:sizes[i]], eps[i]
			}
		}
	}
	t.Fatal("nothing received")
	return nil, nil
}

func sockoptOn(t *testing.T, c *net.UDPConn, level, opt int) bool {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v == 1
}

// No root: a socket made without PKTINFO (as an older process's adopted
// one) gets it, and the endpoint of a received datagram carries the
// address it was sent to.
func TestUDPBindReceivesSource(t *testing.T) {
	b, c := loopbackBind(t)
	if !sockoptOn(t, c, unix.IPPROTO_IP, unix.IP_PKTINFO) {
		t.Fatal("IP_PKTINFO not enabled on the bind's socket")
	}
	fns, _, err := b.Open(uint16(b.port))
	if err != nil {
		t.Fatal(err)
	}
	send, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	stop := keepSending(send, []byte("hello"), netip.AddrPort{})
	_, ep := receiveOne(t, fns[0])
	stop()
	if ep.SrcIP() != netip.MustParseAddr("127.0.0.1") || ep.SrcToString() != "127.0.0.1" {
		t.Fatalf("source %v %q", ep.SrcIP(), ep.SrcToString())
	}
	if lo, _ := net.InterfaceByName("lo"); lo != nil && ep.(*endpoint).ifindex != int32(lo.Index) {
		t.Fatalf("ifindex %d, want lo's %d", ep.(*endpoint).ifindex, lo.Index)
	}
	// The reply goes out with the PKTINFO.
	if err := b.Send([][]byte{[]byte("reply")}, ep); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	send.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := send.Read(buf); err != nil || string(buf[:n]) != "reply" {
		t.Fatalf("reply %q %v", buf[:n], err)
	}
}

func TestUDPBindSendStickyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	a, _ := loopbackBind(t)
	b, bc := loopbackBind(t)
	a.Open(uint16(a.port))
	b.Open(uint16(b.port))
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo:", err)
	}
	ep := stickyEndpoint(bc.LocalAddr().String(), "127.0.0.1", int32(lo.Index))
	bufs := batch(4, 1000)
	if n := testing.AllocsPerRun(100, func() {
		if err := a.Send(bufs, ep); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Send with a sticky source: %v allocs", n)
	}
	if !ep.SrcIP().IsValid() {
		t.Fatal("a working source was cleared")
	}
}

// Root: in a namespace with two addresses per family, the bind (on the
// wildcard address) answers from the address each datagram was sent to,
// in GSO batches too; when that address is removed, from the routing
// table's choice.
func TestUDPBindAnswersFromDialledAddress(t *testing.T) {
	ns := testenv.NewNetNS(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"fd00:5::1/128", "fd00:5::2/128"} {
		if err := h.AddrAdd(lo, &netlink.Addr{IPNet: mustIPNet(a), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatal(err)
		}
	}
	var v4, v6 *net.UDPConn
	testenv.Do(t, ns, func() { v4, v6, err = ListenUDP(0) })
	if err != nil {
		t.Fatal(err)
	}
	b := newUDPBind(v4, v6, v4.LocalAddr().(*net.UDPAddr).Port)
	t.Cleanup(func() { b.release() })
	fns, port, err := b.Open(0)
	if err != nil || len(fns) != 2 {
		t.Fatalf("open: %v, %d receive functions", err, len(fns))
	}
	for _, tc := range []struct {
		name   string
		fn     conn.ReceiveFunc
		client string // the member's address: the routing table's source for replies
		dial   string
		remove string // the dialled address as a prefix, to remove; "" to keep
	}{
		{"IPv4", fns[0], "127.0.0.1", "127.0.0.2", ""},
		{"IPv6", fns[1], "fd00:5::1", "fd00:5::2", "fd00:5::2/128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cl *net.UDPConn
			testenv.Do(t, ns, func() {
				cl, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.client), 0)))
			})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			dialled := netip.AddrPortFrom(netip.MustParseAddr(tc.dial), port)
			stop := keepSending(cl, []byte("init"), dialled)
			wake := time.AfterFunc(10*time.Second, func() { b.Close() }) // receiveOne fails
			_, ep := receiveOne(t, tc.fn)
			wake.Stop()
			stop()
			if ep.SrcIP() != dialled.Addr() {
				t.Fatalf("endpoint source %v, want %v", ep.SrcIP(), dialled.Addr())
			}
			bufs := batch(10, 1200) // one GSO buffer where the kernel offers it
			if err := b.Send(bufs, ep); err != nil {
				t.Fatal(err)
			}
			expectFrom(t, cl, 10, dialled)
			if tc.remove == "" {
				return
			}
			// The address goes away: EINVAL, source cleared, sent again.
			if err := h.AddrDel(lo, &netlink.Addr{IPNet: mustIPNet(tc.remove)}); err != nil {
				t.Fatal(err)
			}
			if err := b.Send(bufs[:3], ep); err != nil {
				t.Fatalf("send after the source went away: %v", err)
			}
			if ep.SrcIP().IsValid() {
				t.Fatalf("source %v kept after it went away", ep.SrcIP())
			}
			expectFrom(t, cl, 3, netip.AddrPortFrom(netip.MustParseAddr(tc.client), port))
		})
	}
}

// keepSending writes p from c (to `to`, or c's peer when invalid) every
// 50 ms until stop is called. A new IPv6 address becomes local only when
// the kernel's addrconf worker has run; a datagram sent before is lost.
func keepSending(c *net.UDPConn, p []byte, to netip.AddrPort) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if to.IsValid() {
				c.WriteToUDPAddrPort(p, to)
			} else {
				c.Write(p)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

func mustIPNet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// expectFrom reads n datagrams from c and fails unless each came from want.
func expectFrom(t *testing.T, c *net.UDPConn, n int, want netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 1<<16)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i+1, n, err)
		}
		if from := netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); from != want {
			t.Fatalf("datagram %d came from %v, want %v", i+1, from, want)
		}
	}
}

func BenchmarkUDPBindSend(b *testing.B) {
	for _, sticky := range []bool{false, true} {
		name := "plain"
		if sticky {
			name = "sticky"
		}
		b.Run(name, func(b *testing.B) {
			a, _ := benchBind(b)
			r, rc := benchBind(b)
			a.Open(uint16(a.port))
			r.Open(uint16(r.port))
			ep := &endpoint{ap: rc.LocalAddr().(*net.UDPAddr).AddrPort()}
			if sticky {
				ep = stickyEndpoint(rc.LocalAddr().String(), "127.0.0.1", 1)
			}
			bufs := batch(conn.IdealBatchSize, 1200)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := a.Send(bufs, ep); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bufs)), "ns/packet")
		})
	}
}

func benchBind(b *testing.B) (*udpBind, *net.UDPConn) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	u := newUDPBind(c, nil, c.LocalAddr().(*net.UDPAddr).Port)
	b.Cleanup(func() { u.release() })
	return u, c
}

// FuzzParseControl: any bytes parse without a panic, and a PKTINFO found
// is one of the two families.
func FuzzParseControl(f *testing.F) {
	f.Add(cat(cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(1380)), cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, pktinfo4(3, "198.18.0.2", "198.18.0.2"))))
	f.Add(cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pktinfo6("2001:2:0:2::2", 3)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		// Control messages sit in 8-byte aligned buffers, as the bind's do.
		buf := make([]uint64, (len(oob)+7)/8)
		b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(buf)*8)[:len(oob)]
		copy(b, oob)
		c, err := parseControl(b)
		if err == nil && c.family != 0 && c.family != 4 && c.family != 6 {
			t.Fatalf("family %d", c.family)
		}
	})
}
