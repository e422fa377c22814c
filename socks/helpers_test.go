package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests use real sockets on 127.0.0.1 and ::1 only. 127.0.0.2 stands for a
// private destination: the test deny set holds it and nothing listens there.

var (
	lo4     = netip.MustParseAddr("127.0.0.1")
	lo6     = netip.MustParseAddr("::1")
	private = netip.MustParseAddr("127.0.0.2")
)

func testDeny(a netip.Addr) bool { return a == private }

// testResolver maps names to fixed addresses; others are NXDOMAIN.
type testResolver map[string][]netip.Addr

func (r testResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

var defaultResolver = testResolver{
	"echo.test":    {lo4},
	"echo6.test":   {lo6},
	"private.test": {private},
	"mixed.test":   {lo4, private},
}

// dialFunc is a Dialer made of a function.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

func identifyLoopback(src netip.Addr) (string, bool) {
	if src.IsLoopback() {
		return "member-" + src.String(), true
	}
	return "", false
}

// testOptions are the options tests start from.
func testOptions() Options {
	return Options{
		Resolver: defaultResolver,
		Deny:     testDeny,
		Identify: identifyLoopback,
	}
}

var tunnelCfg = ListenerConfig{Tunnel: true}

// startServer serves cfg on a fresh loopback listener (IPv4 unless on6)
// and returns the server and the listener's address. The server is closed
// and checked for leaked goroutines at cleanup.
func startServer(t testing.TB, opts Options, cfg ListenerConfig, on6 bool) (*Server, netip.AddrPort) {
	t.Helper()
	leakCheckOnce(t)
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	network, host := "tcp4", "127.0.0.1:0"
	if on6 {
		network, host = "tcp6", "[::1]:0"
	}
	l, err := net.Listen(network, host)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l, cfg) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, l.Addr().(*net.TCPAddr).AddrPort()
}

var leakChecked sync.Map // testing.TB → true

// leakCheckOnce registers checkNoGoroutines as the test's last cleanup (the
// first registered runs last), after every server of the test has closed.
func leakCheckOnce(t testing.TB) {
	if _, loaded := leakChecked.LoadOrStore(t, true); !loaded {
		t.Cleanup(func() {
			leakChecked.Delete(t)
			checkNoGoroutines(t)
		})
	}
}

// checkNoGoroutines fails if any goroutine is still running code of the
// package (non-test files) a few seconds after the server closed.
func checkNoGoroutines(t testing.TB) {
	t.Helper()
	var leaked []string
	waitFor(t, "package goroutines to exit", func() bool {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, line := range strings.Split(g, "\n") {
				line = strings.TrimSpace(line)
				if strings.Contains(line, "/socks/") && strings.Contains(line, ".go:") && !strings.Contains(line, "_test.go:") {
					leaked = append(leaked, g)
					break
				}
			}
		}
		return len(leaked) == 0
	}, func() string { return strings.Join(leaked, "\n\n") })
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, d := range detail {
				msg = d()
			}
			t.Fatalf("timed out waiting for %s\n%s", what, msg)
		}
		<-tick.C
	}
}

// echoServer echoes every TCP connection on a loopback address and
// half-closes when the client does. It copies with io.Copy, so it splices
// and holds a pipe per connection (see TestIdleSessionsHoldNoPipes).
func echoServer(t testing.TB, ip netip.Addr) netip.AddrPort {
	return echoServerCopy(t, ip, func(c *net.TCPConn) { io.Copy(c, c) })
}

// plainCopy echoes through a user-space buffer (no splice, no pipe).
func plainCopy(c *net.TCPConn) {
	b := make([]byte, 32<<10)
	for {
		n, err := c.Read(b)
		if n > 0 {
			if _, err := c.Write(b[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func echoServerCopy(t testing.TB, ip netip.Addr, copyFn func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				copyFn(c)
				c.CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// closedPort returns a loopback port with no listener.
func closedPort(t testing.TB) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return ap
}

// client is a minimal SOCKS5 client written against the RFC.
type client struct {
	net.Conn
	br *bufio.Reader
}

func dialClient(t testing.TB, proxy netip.AddrPort) *client {
	t.Helper()
	c, err := net.Dial("tcp", proxy.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{Conn: c, br: bufio.NewReader(c)}
}

// greet offers methods and returns the server's choice.
func (c *client) greet(methods ...byte) (byte, error) {
	if _, err := c.Write(appendGreeting(nil, methods...)); err != nil {
		return 0, err
	}
	var b [2]byte
	if _, err := io.ReadFull(c.br, b[:]); err != nil {
		return 0, err
	}
	if b[0] != socksVersion {
		return 0, fmt.Errorf("method reply version %#x", b[0])
	}
	return b[1], nil
}

// auth runs RFC 1929 and returns the status byte (0 = success).
func (c *client) auth(user, pass string) (byte, error) {
	if _, err := c.Write(appendUserPass(nil, user, pass)); err != nil {
		return 0, err
	}
	var b [2]byte
	if _, err := io.ReadFull(c.br, b[:]); err != nil {
		return 0, err
	}
	return b[1], nil
}

func (c *client) request(cmd byte, dst addr) (reply, addr, error) {
	if _, err := c.Write(appendRequest(nil, cmd, dst)); err != nil {
		return 0, addr{}, err
	}
	return readReply(c.br)
}

// Read reads through the buffered reader (bytes may follow the reply).
func (c *client) Read(b []byte) (int, error) { return c.br.Read(b) }

// connect runs a no-auth CONNECT and returns the reply.
func connect(t testing.TB, proxy netip.AddrPort, dst addr) (*client, reply) {
	t.Helper()
	c := dialClient(t, proxy)
	m, err := c.greet(methodNoAuth)
	if err != nil || m != methodNoAuth {
		t.Fatalf("greeting: method %#x, err %v", m, err)
	}
	rep, _, err := c.request(cmdConnect, dst)
	if err != nil {
		t.Fatalf("request %v: %v", dst, err)
	}
	return c, rep
}

// mustConnect runs a CONNECT that has to succeed.
func mustConnect(t testing.TB, proxy netip.AddrPort, dst addr) *client {
	t.Helper()
	c, rep := connect(t, proxy, dst)
	if rep != replySucceeded {
		t.Fatalf("CONNECT %v: reply %v", dst, rep)
	}
	return c
}

func ipAddr(ap netip.AddrPort) addr { return addr{ip: ap.Addr(), port: ap.Port()} }

// roundTrip writes msg and reads the echo.
func roundTrip(t testing.TB, c io.ReadWriter, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// fakeClock is a settable clock for the connect-rate limiter.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
