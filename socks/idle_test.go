package socks

import (
	"io"
	"net"
	"net/netip"
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
