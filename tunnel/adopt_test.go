package tunnel

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"exitd/internal/testenv"
	"exitd/keys"
)

// loopbackBind is a udpBind on 127.0.0.1 only (no root needed).
func loopbackBind(t *testing.T) (*udpBind, *net.UDPConn) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := newUDPBind(c, nil, c.LocalAddr().(*net.UDPAddr).Port)
	t.Cleanup(func() { b.release() })
	return b, c
}

func batch(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = bytes.Repeat([]byte{byte(i + 1)}, size)
	}
	return bufs
}

// receiveAll calls fn until want datagrams arrived or 5 s passed.
func receiveAll(t *testing.T, fn conn.ReceiveFunc, want int) [][]byte {
	t.Helper()
	var got [][]byte
	bufs := make([][]byte, conn.IdealBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, 1<<16)
	}
	sizes := make([]int, len(bufs))
	eps := make([]conn.Endpoint, len(bufs))
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		n, err := fn(bufs, sizes, eps)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		for i := range n {
			if sizes[i] > 0 {
				got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
			}
		}
	}
	return got
}

func TestUDPBindSendReceive(t *testing.T) {
	a, _ := loopbackBind(t)
	b, bc := loopbackBind(t)
	fnsB, portB, err := b.Open(uint16(b.port))
	if err != nil {
		t.Fatal(err)
	}
	if int(portB) != b.port || len(fnsB) != 1 {
		t.Fatalf("open: port %d fns %d", portB, len(fnsB))
	}
	if _, _, err := a.Open(uint16(a.port)); err != nil {
		t.Fatal(err)
	}
	ep, err := a.ParseEndpoint(bc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Equal sizes with a short tail: the GSO path coalesces them.
	bufs := batch(10, 1200)
	bufs[9] = bufs[9][:300]
	if err := a.Send(bufs, ep); err != nil {
		t.Fatal(err)
	}
	got := receiveAll(t, fnsB[0], 10)
	if len(got) != 10 {
		t.Fatalf("received %d datagrams, want 10", len(got))
	}
	for i, g := range got {
		if !bytes.Equal(g, bufs[i]) {
			t.Fatalf("datagram %d: %d bytes of %d, want %d bytes of %d", i, len(g), g[0], len(bufs[i]), bufs[i][0])
		}
	}
}

func TestUDPBindCloseKeepsSocket(t *testing.T) {
	b, c := loopbackBind(t)
	fns, _, err := b.Open(uint16(b.port))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(uint16(b.port)); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("second open: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 1500)}
		_, err := fns[0](bufs, make([]int, 1), make([]conn.Endpoint, 1))
		errc <- err
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked receive returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the receive function")
	}
	// Reopen: the same socket, receiving again.
	fns, port, err := b.Open(uint16(b.port))
	if err != nil {
		t.Fatal(err)
	}
	if v4, _ := b.Sockets(); v4 != c || int(port) != b.port {
		t.Fatal("reopen replaced the socket")
	}
	send, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	send.Write([]byte("after reopen"))
	if got := receiveAll(t, fns[0], 1); len(got) != 1 || string(got[0]) != "after reopen" {
		t.Fatalf("got %q", got)
	}
	if err := b.release(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(uint16(b.port)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("open after release: %v", err)
	}
	if err := b.release(); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

func TestUDPBindPortChangeOpensNewSockets(t *testing.T) {
	b, c := loopbackBind(t)
	fns, port, err := b.Open(0) // 0 keeps the sockets
	if err != nil || int(port) != b.port || len(fns) != 1 {
		t.Fatalf("open 0: %v port %d", err, port)
	}
	b.Close()
	free, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := free.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	if _, port, err = b.Open(uint16(want)); err != nil {
		t.Fatal(err)
	}
	if int(port) != want {
		t.Fatalf("port %d, want %d", port, want)
	}
	if v4, _ := b.Sockets(); v4 == c {
		t.Fatal("kept the old socket on a new port")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("old socket still open")
	}
}

// socketFile returns a duplicate of c's descriptor as a file, as systemd
// would hand it back.
func socketFile(t *testing.T, c interface{ File() (*os.File, error) }, name string) *os.File {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	// A second *os.File on f's descriptor would close it again from f's
	// finalizer, possibly after the number was reused (a netns handle of
	// a later test): name a duplicate instead and close f now.
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), name)
}

func TestAdoptUDPKeepsQueuedDatagrams(t *testing.T) {
	old, c := loopbackBind(t)
	port := old.port
	f := socketFile(t, c, "udp4")
	old.release() // the old process exits; the store keeps f
	send, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	if _, err := send.Write([]byte("while down")); err != nil {
		t.Fatal(err)
	}
	v4, v6, problems := adoptUDP([]*os.File{f}, port)
	if v4 == nil || v6 != nil || len(problems) != 0 {
		t.Fatalf("adopt: %v %v %v", v4, v6, problems)
	}
	b := newUDPBind(v4, v6, port)
	defer b.release()
	fns, p, err := b.Open(uint16(port))
	if err != nil || int(p) != port {
		t.Fatalf("open: %v %d", err, p)
	}
	if got := receiveAll(t, fns[0], 1); len(got) != 1 || string(got[0]) != "while down" {
		t.Fatalf("got %q: the datagram sent while no process ran is lost", got)
	}
}

func TestAdoptUDPRejects(t *testing.T) {
	u1, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u1.Close()
	u2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u2.Close()
	tcp, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	port := u1.LocalAddr().(*net.UDPAddr).Port
	files := []*os.File{
		socketFile(t, u1, "udp4"),
		socketFile(t, u2, "udp4"), // wrong port
		socketFile(t, tcp, "udp4"),
		socketFile(t, u1, "udp4"), // a second IPv4 socket
	}
	v4, v6, problems := adoptUDP(files, port)
	if v4 == nil || v6 != nil {
		t.Fatalf("v4 %v v6 %v", v4, v6)
	}
	defer v4.Close()
	if len(problems) != 3 {
		t.Fatalf("problems %v, want 3", problems)
	}
}

func TestCoalesceAndSplit(t *testing.T) {
	addr := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}
	tests := []struct {
		name  string
		sizes []int
		msgs  int // GSO buffers coalesce makes
	}{
		{"one", []int{100}, 1},
		{"equal", []int{1200, 1200, 1200}, 1},
		{"short tail", []int{1200, 1200, 500}, 1},
		{"short middle ends the run", []int{1200, 500, 1200}, 2},
		{"bigger starts a run", []int{500, 1200, 1200}, 2},
		{"64 per buffer", make64(70, 100), 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bufs := make([][]byte, len(tc.sizes))
			for i, n := range tc.sizes {
				bufs[i] = make([]byte, n, 1<<16)
				for j := range bufs[i] {
					bufs[i][j] = byte(i)
				}
			}
			ms := make([]ipv6.Message, len(bufs))
			for i := range ms {
				ms[i].Buffers = make(net.Buffers, 1)
				ms[i].OOB = make([]byte, 0, 64)
			}
			n := coalesce(addr, false, cloneBufs(bufs), ms)
			if n != tc.msgs {
				t.Fatalf("%d buffers, want %d", n, tc.msgs)
			}
			// What the kernel's GRO would hand back: the same buffers with
			// UDP_GRO carrying the segment size.
			rx := make([]ipv6.Message, len(bufs))
			for i := range rx {
				rx[i].Buffers = net.Buffers{make([]byte, 1<<16)}
			}
			at := len(rx) - n
			for i := range n {
				m := &rx[at+i]
				m.N = copy(m.Buffers[0], ms[i].Buffers[0])
				seg, _ := groSize(ms[i].OOB) // UDP_SEGMENT and UDP_GRO share the layout
				if seg == 0 {
					seg, _ = segSize(ms[i].OOB)
				}
				if seg > 0 {
					m.OOB = groControl(seg)
					m.NN = len(m.OOB)
				}
				m.Addr = addr
			}
			got, err := splitCoalesced(rx, at)
			if err != nil {
				t.Fatal(err)
			}
			if got != len(bufs) {
				t.Fatalf("split into %d, want %d", got, len(bufs))
			}
			for i := range got {
				if !bytes.Equal(rx[i].Buffers[0][:rx[i].N], bufs[i]) {
					t.Fatalf("datagram %d differs (%d bytes, want %d)", i, rx[i].N, len(bufs[i]))
				}
			}
		})
	}
}

func make64(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func cloneBufs(b [][]byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = append(make([]byte, 0, 1<<16), b[i]...)
	}
	return out
}

// segSize reads a UDP_SEGMENT control message written by setGSO.
func segSize(oob []byte) (int, error) {
	ms, err := parseCmsgs(oob)
	for _, m := range ms {
		if m.Header.Type == 103 { // UDP_SEGMENT
			return int(m.Data[0]) | int(m.Data[1])<<8, nil
		}
	}
	return 0, err
}

func TestUDPBindSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race")
	}
	a, _ := loopbackBind(t)
	b, bc := loopbackBind(t)
	a.Open(uint16(a.port))
	b.Open(uint16(b.port))
	ep, _ := a.ParseEndpoint(bc.LocalAddr().String())
	bufs := batch(4, 1000)
	if n := testing.AllocsPerRun(100, func() {
		if err := a.Send(bufs, ep); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Send: %v allocs", n)
	}
}

// Root: the whole Tunnel hands its TUN and UDP socket to a successor.
func TestHandoverAdoptsTUNAndSocket(t *testing.T) {
	ns := testenv.NewNetNS(t)
	o := baseOptions(t, 51910)
	a, err := openIn(t, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*os.File{}
	for name, c := range a.Handover() {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var dup int
		var derr error
		rc.Control(func(fd uintptr) { dup, derr = dupCloexec(int(fd)) })
		if derr != nil {
			t.Fatal(derr)
		}
		files[name] = os.NewFile(uintptr(dup), name)
	}
	if len(files) != 3 {
		t.Fatalf("handover has %d files, want tun, udp4, udp6", len(files))
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before, err := h.LinkByName(o.Name)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	// The stored TUN keeps the interface (and its addresses) alive.
	still, err := h.LinkByName(o.Name)
	if err != nil {
		t.Fatalf("TUN gone after the first process closed: %v", err)
	}
	if still.Attrs().Index != before.Attrs().Index {
		t.Fatal("interface index changed")
	}
	o.TUN = files[HandoverTUN]
	o.UDP = []*os.File{files[HandoverUDP4], files[HandoverUDP6]}
	b, err := openIn(t, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	after, err := h.LinkByName(o.Name)
	if err != nil || after.Attrs().Index != before.Attrs().Index {
		t.Fatalf("successor made a new TUN: %v", err)
	}
	v4, v6 := b.ub.Sockets()
	if v4 == nil || v6 == nil || v4.LocalAddr().(*net.UDPAddr).Port != 51910 {
		t.Fatalf("successor sockets %v %v", v4, v6)
	}
	addrs, _ := h.AddrList(after, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.99.0.1/16" {
		t.Fatalf("addresses %v", addrs)
	}
}

// Root: an inherited TUN of another name is not adopted; a fresh one is made.
func TestAdoptWrongTUNFallsBack(t *testing.T) {
	ns := testenv.NewNetNS(t)
	other := baseOptions(t, 51920)
	x, err := openIn(t, ns, other)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := x.raw.File().SyscallConn()
	var dup int
	var derr error
	rc.Control(func(fd uintptr) { dup, derr = dupCloexec(int(fd)) })
	if derr != nil {
		t.Fatal(derr)
	}
	o := baseOptions(t, 51921)
	o.TUN = os.NewFile(uintptr(dup), "tun")
	y, err := openIn(t, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := y.raw.Name(); n != o.Name {
		t.Fatalf("tunnel runs on %q, want %q", n, o.Name)
	}
}

// Root: SetEndpoints and Initiate make the node start the handshake with a
// member whose endpoint it knows; the member sends nothing.
func TestRejoinInitiatesHandshake(t *testing.T) {
	ns := testenv.NewNetNS(t)
	testenv.Do(t, ns, func() {
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
	})
	nodeOpts := baseOptions(t, 51930)
	memberOpts := baseOptions(t, 51931)
	memberOpts.Addrs = []netip.Prefix{netip.MustParsePrefix("10.98.0.2/16")}
	node, err := openIn(t, ns, nodeOpts)
	if err != nil {
		t.Fatal(err)
	}
	member, err := openIn(t, ns, memberOpts)
	if err != nil {
		t.Fatal(err)
	}
	nodePub, memberPub := nodeOpts.PrivateKey.Public(), memberOpts.PrivateKey.Public()
	if err := node.AddPeers([]Peer{{PublicKey: memberPub, Allowed: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}); err != nil {
		t.Fatal(err)
	}
	if err := member.AddPeers([]Peer{{PublicKey: nodePub, Allowed: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}}); err != nil {
		t.Fatal(err)
	}
	set, err := node.SetEndpoints(map[keys.Key]netip.AddrPort{
		memberPub:   netip.MustParseAddrPort("127.0.0.1:51931"),
		nodePub:     netip.MustParseAddrPort("127.0.0.1:1"), // not a peer of the node
		keys.Key{1}: {},
	})
	if err == nil {
		t.Fatal("SetEndpoints reported no error for an unknown peer and a bad endpoint")
	}
	if len(set) != 1 || set[0] != memberPub {
		t.Fatalf("SetEndpoints set %v, want only the member", set)
	}
	node.Initiate(append(set, keys.Key{2})) // an unknown key is skipped
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		st, err := member.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if len(st) == 1 && !st[0].LastHandshake.IsZero() {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling a device; no event to wait on
	}
	t.Fatal("no handshake within 5 s of Initiate")
}
