package socks

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.DialTCP("tcp4", nil, l.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestSpliceStepAllocs: relaying a chunk allocates nothing.
func TestSpliceStepAllocs(t *testing.T) {
	client, srcSide := tcpPair(t)
	dstSide, remote := tcpPair(t)
	d, ok := newSpliceDir(srcSide, dstSide, nil, nil).(*spliceDir)
	if !ok {
		t.Fatal("no splice direction for two TCP conns")
	}
	msg := make([]byte, 16<<10)
	got := make([]byte, len(msg))
	move := func() {
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		for moved := 0; moved < len(msg); {
			n, err := d.step()
			if err != nil {
				t.Fatal(err)
			}
			moved += int(n)
		}
		if _, err := io.ReadFull(remote, got); err != nil {
			t.Fatal(err)
		}
	}
	move() // warm the pipe pool
	if a := testing.AllocsPerRun(200, move); a != 0 {
		t.Errorf("%v allocations per chunk, want 0", a)
	}
	// End of stream is reported as io.EOF.
	client.CloseWrite()
	if _, err := d.step(); err != io.EOF {
		t.Errorf("step after CloseWrite: %v, want io.EOF", err)
	}
}

func dialTCP(t testing.TB, ap netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// countPipes counts this process's open pipe descriptors.
func countPipes(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// settledPipes empties Go's pipe pool (sync.Pool drops its objects after
// two GCs; their finalizers close the pipes) and returns the pipe fds left:
// those held by someone.
func settledPipes(t testing.TB) int {
	t.Helper()
	prev, same := -1, 0
	for range 200 {
		runtime.GC()
		runtime.Gosched()
		c := countPipes(t)
		if c == prev {
			if same++; same == 5 {
				return c
			}
		} else {
			prev, same = c, 0
		}
	}
	return prev
}

// TestIdleSessionsHoldNoPipes: sessions that have relayed data and are now
// idle hold their two sockets only. A plain io.Copy relay pins a splice
// pipe (two fds) per direction as long as the connection lives: the test's
// own io.Copy echo server, in this process, shows it.
func TestIdleSessionsHoldNoPipes(t *testing.T) {
	const n = 20
	msg := strings.Repeat("z", 40000)
	t.Run("io.Copy pins pipes", func(t *testing.T) {
		echo := echoServer(t, lo4)
		before := settledPipes(t)
		for range n {
			roundTrip(t, dialTCP(t, echo), msg)
		}
		if g := settledPipes(t) - before; g != 2*n {
			t.Errorf("io.Copy echo: %d pipe fds held for %d connections, expected %d", g, n, 2*n)
		}
	})
	echo := echoServerCopy(t, lo4, plainCopy)
	_, px := startServer(t, testOptions(), tunnelCfg, false)
	before := settledPipes(t)
	for range n {
		roundTrip(t, mustConnect(t, px, ipAddr(echo)), msg)
	}
	if g := settledPipes(t) - before; g != 0 {
		t.Errorf("%d pipe fds held by %d idle relayed sessions, want 0", g, n)
	}
}

// TestIdleSessionFootprint measures what an idle relayed session costs the
// server: heap plus goroutine stacks, and file descriptors.
func TestIdleSessionFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 sessions")
	}
	const n = 2000
	// The target holds its connections without goroutines or buffers.
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan []net.Conn, 1)
	go func() {
		var cs []net.Conn
		for range n {
			c, err := l.Accept()
			if err != nil {
				break
			}
			cs = append(cs, c)
		}
		held <- cs
	}()
	t.Cleanup(func() {
		l.Close()
		for _, c := range <-held {
			c.Close()
		}
	})
	opts := testOptions()
	opts.MaxSessions, opts.ConnectBurst = n, n
	s, px := startServer(t, opts, tunnelCfg, false)
	target := ipAddr(l.Addr().(*net.TCPAddr).AddrPort())
	mem := func() (uint64, int) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		ents, _ := os.ReadDir("/proc/self/fd")
		return ms.HeapInuse + ms.StackInuse, len(ents)
	}
	mustConnect(t, px, target).Close() // warm up pools; the session stays (half-closed)
	b0, f0 := mem()
	for range n - 1 {
		mustConnect(t, px, target).SetDeadline(time.Time{})
	}
	waitFor(t, "sessions", func() bool { return s.Stats().SessionsActive == n })
	b1, f1 := mem()
	// Client and target hold one fd per session each; the proxy two.
	perSession := float64(b1-b0) / (n - 1)
	t.Logf("idle session: %.0f bytes of heap and stack (incl. the test client's conn and the target's), %.2f fds in this process",
		perSession, float64(f1-f0)/(n-1))
	if fds := float64(f1-f0) / (n - 1); fds > 4.1 {
		t.Errorf("%.2f fds per session in this process, want 4 (client, 2 proxy, target)", fds)
	}
	if perSession > 40<<10 {
		t.Errorf("%.0f bytes per idle session, want < 40 KiB", perSession)
	}
}

// rawFD returns c's file descriptor; c must stay open while it is used.
func rawFD(t testing.TB, c *net.TCPConn) uintptr {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestQueued: the MSG_PEEK|MSG_TRUNC probe counts queued bytes up to
// maxChunk without consuming them, and tells no data (EAGAIN) from end of
// stream (0) and from an error.
func TestQueued(t *testing.T) {
	send, recv := tcpPair(t)
	if err := recv.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	fd := rawFD(t, recv)
	probe := func() (int, error) {
		for {
			n, err := queued(fd)
			if err != syscall.EINTR {
				return n, err
			}
		}
	}
	if n, err := probe(); err != syscall.EAGAIN {
		t.Fatalf("nothing sent: %d, %v; want EAGAIN", n, err)
	}
	for _, size := range []int{1, 1000, maxChunk, maxChunk + 5000} {
		if _, err := send.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		want := min(size, maxChunk)
		var n int
		var err error
		waitFor(t, fmt.Sprintf("%d bytes queued", size), func() bool {
			n, err = probe()
			return err == nil && n == want
		}, func() string { return fmt.Sprintf("last probe: %d, %v", n, err) })
		// A second probe sees the same: nothing was consumed.
		if n, err := probe(); n != want || err != nil {
			t.Fatalf("second probe: %d, %v; want %d", n, err, want)
		}
		if _, err := io.ReadFull(recv, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	send.CloseWrite()
	waitFor(t, "end of stream", func() bool {
		n, err := probe()
		return n == 0 && err == nil
	})

	// A reset is the socket's error.
	send2, recv2 := tcpPair(t)
	fd2 := rawFD(t, recv2)
	send2.SetLinger(0)
	send2.Close()
	waitFor(t, "reset", func() bool {
		_, err := queued(fd2)
		return err == syscall.ECONNRESET
	})
}

func keepAliveOn(t testing.TB, c *net.TCPConn) bool {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v != 0
}

// TestNoKeepAlive: the proxy's sockets on both sides carry no TCP
// keep-alive (see Listen); net.Listen's and a zero net.Dialer's would.
func TestNoKeepAlive(t *testing.T) {
	l, err := Listen(t.Context(), netip.AddrPortFrom(lo4, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	out, err := s.dialAddr(t.Context(), l.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in := <-accepted
	if in == nil {
		t.Fatal("accept failed")
	}
	defer in.Close()
	if keepAliveOn(t, in.(*net.TCPConn)) {
		t.Error("accepted connection has SO_KEEPALIVE")
	}
	if keepAliveOn(t, out.(*net.TCPConn)) {
		t.Error("dialed connection has SO_KEEPALIVE")
	}
	// The reference: Go's defaults turn it on.
	a, _ := tcpPair(t)
	if !keepAliveOn(t, a) {
		t.Error("Go's default dial has no SO_KEEPALIVE: the check checks nothing")
	}
}
