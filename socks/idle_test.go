package socks

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestIdleTimeout(t *testing.T) {
	echo := echoServer(t, lo4)
	opts := testOptions()
	opts.IdleTimeout = 60 * time.Millisecond
	s, px := startServer(t, opts, tunnelCfg, false)
	c := mustConnect(t, px, ipAddr(echo))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
	waitFor(t, "session end", func() bool { return s.Stats().SessionsActive == 0 })
}

// TestIdleKeptAlive: traffic in either direction keeps a session open past
// several idle timeouts.
func TestIdleKeptAlive(t *testing.T) {
	const idle = 200 * time.Millisecond
	opts := testOptions()
	opts.IdleTimeout = idle
	t.Run("echo both ways", func(t *testing.T) {
		echo := echoServer(t, lo4)
		_, px := startServer(t, opts, tunnelCfg, false)
		c := mustConnect(t, px, ipAddr(echo))
		tick := time.NewTicker(idle / 4)
		defer tick.Stop()
		for range 12 { // 3 idle timeouts
			<-tick.C
			roundTrip(t, c, "ping")
		}
	})
	t.Run("upload only", func(t *testing.T) {
		// The destination only reads, then answers once: the download
		// direction stays idle for 3 timeouts while the upload is busy.
		l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			b := make([]byte, 4)
			for {
				if _, err := io.ReadFull(c, b); err != nil || string(b) == "done" {
					break
				}
			}
			c.Write([]byte("bye"))
		}()
		_, px := startServer(t, opts, tunnelCfg, false)
		c := mustConnect(t, px, ipAddr(l.Addr().(*net.TCPAddr).AddrPort()))
		tick := time.NewTicker(idle / 4)
		defer tick.Stop()
		for range 12 {
			<-tick.C
			if _, err := c.Write([]byte("data")); err != nil {
				t.Fatal(err)
			}
		}
		c.Write([]byte("done"))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "bye" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
}

// TestIdleStuckWriter: the client half-closes and stops reading while the
// destination keeps sending; once the buffers are full nothing moves and
// the session is closed after the idle timeout.
func TestIdleStuckWriter(t *testing.T) {
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	wrote := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			wrote <- err
			return
		}
		defer c.Close()
		b := make([]byte, 64<<10)
		for {
			if _, err := c.Write(b); err != nil {
				wrote <- err
				return
			}
		}
	}()
	opts := testOptions()
	opts.IdleTimeout = 100 * time.Millisecond
	s, px := startServer(t, opts, tunnelCfg, false)
	c := mustConnect(t, px, ipAddr(l.Addr().(*net.TCPAddr).AddrPort()))
	c.Conn.(*net.TCPConn).CloseWrite()
	waitFor(t, "stuck session to close", func() bool { return s.Stats().SessionsActive == 0 })
	if err := <-wrote; err == nil {
		t.Error("destination write did not fail")
	}
}

// TestHandshakeDeadlineEnds: the handshake's read deadline on the client
// connection does not outlive the handshake: a relayed session and a UDP
// association both stay open for several handshake timeouts.
func TestHandshakeDeadlineEnds(t *testing.T) {
	const hs = 30 * time.Millisecond
	opts := testOptions()
	opts.HandshakeTimeout = hs
	// stillOpen waits 5 handshake timeouts for the proxy to close c.
	stillOpen := func(t *testing.T, c *client) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * hs))
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read %d, %v; want our own deadline, the proxy closed the session", n, err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
	}
	t.Run("connect", func(t *testing.T) {
		echo := echoServer(t, lo4)
		_, px := startServer(t, opts, tunnelCfg, false)
		c := mustConnect(t, px, ipAddr(echo))
		stillOpen(t, c)
		roundTrip(t, c, "still relaying")
	})
	t.Run("udp associate", func(t *testing.T) {
		echo := udpEcho(t, lo4)
		_, px := startServer(t, opts, tunnelCfg, false)
		ctl, relay, uc := associate(t, px, addr{ip: netip.IPv4Unspecified()})
		stillOpen(t, ctl)
		sendVia(t, uc, relay, 0, ipAddr(echo), "still relaying")
		recvVia(t, uc, relay, echo, "still relaying")
	})
}

// goroutinesIn counts goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// halfClosingTarget accepts one connection, sends "bye", half-closes, and
// then neither reads nor closes until the test ends.
func halfClosingTarget(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan *net.TCPConn, 1)
	go func() {
		c, err := l.AcceptTCP()
		if err == nil {
			c.Write([]byte("bye"))
			c.CloseWrite()
		}
		held <- c
	}()
	t.Cleanup(func() {
		l.Close()
		if c := <-held; c != nil {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// TestRelayDownEndsEarly: when the destination has finished sending, the
// download goroutine ends while the upload goes on; a half-closed
// session is one goroutine, not two.
func TestRelayDownEndsEarly(t *testing.T) {
	s, px := startServer(t, testOptions(), tunnelCfg, false)
	c := mustConnect(t, px, ipAddr(halfClosingTarget(t)))
	if got, err := io.ReadAll(c); err != nil || string(got) != "bye" {
		t.Fatalf("download %q, %v", got, err)
	}
	waitFor(t, "the download goroutine to end", func() bool {
		return goroutinesIn("RoutineRelayDown") == 0
	})
	if s.Stats().SessionsActive != 1 || goroutinesIn("RoutineSession") != 1 {
		t.Fatalf("session gone: %+v", s.Stats())
	}
	if _, err := c.Write([]byte("upload goes on")); err != nil {
		t.Fatal(err)
	}
}

// TestIdleStuckUploader is TestIdleStuckWriter the other way round: the
// destination half-closes and stops reading while the client keeps
// sending; with the download goroutine gone, the watch timer closes the
// session after the idle timeout.
func TestIdleStuckUploader(t *testing.T) {
	opts := testOptions()
	opts.IdleTimeout = 100 * time.Millisecond
	s, px := startServer(t, opts, tunnelCfg, false)
	c := mustConnect(t, px, ipAddr(halfClosingTarget(t)))
	wrote := make(chan error, 1)
	go func() {
		b := make([]byte, 64<<10)
		for {
			if _, err := c.Write(b); err != nil {
				wrote <- err
				return
			}
		}
	}()
	waitFor(t, "stuck session to close", func() bool { return s.Stats().SessionsActive == 0 })
	if err := <-wrote; err == nil {
		t.Error("client write did not fail")
	}
}
