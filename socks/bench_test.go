package socks

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Benchmarks compare the proxy with a direct connection in the same run
// (MEASURING.md: ratios side by side, not lone figures):
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./socks/
//
// The relay's allocations show in allocs/op of the socks runs (the client
// and the test servers allocate nothing per op).

const benchChunk = 64 << 10

func benchOptions() Options {
	o := testOptions()
	o.ConnectRate = 1e9
	o.ConnectBurst = 1 << 30
	o.MaxSessions = 1 << 30
	return o
}

// benchTarget accepts connections and runs serve on each.
func benchTarget(b *testing.B, serve func(*net.TCPConn)) netip.AddrPort {
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// BenchmarkRelayThroughput moves b.N × 64 KiB one way over one connection.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, dir := range []string{"up", "down"} {
		for _, via := range []string{"direct", "socks"} {
			b.Run(dir+"/"+via, func(b *testing.B) {
				benchThroughput(b, dir == "up", via == "socks")
			})
		}
	}
}

func benchThroughput(b *testing.B, up, viaSocks bool) {
	got := make(chan int64, 1)
	var target netip.AddrPort
	if up {
		target = benchTarget(b, func(c *net.TCPConn) {
			buf := make([]byte, 256<<10)
			var n int64
			for {
				m, err := c.Read(buf)
				n += int64(m)
				if err != nil {
					got <- n
					return
				}
			}
		})
	} else {
		target = benchTarget(b, func(c *net.TCPConn) {
			var cmd [8]byte
			if _, err := io.ReadFull(c, cmd[:]); err != nil {
				return
			}
			n := int(cmd[0])<<24 | int(cmd[1])<<16 | int(cmd[2])<<8 | int(cmd[3])
			buf := make([]byte, benchChunk)
			for range n {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		})
	}
	var c net.Conn
	if viaSocks {
		_, px := startServer(b, benchOptions(), tunnelCfg, false)
		c = mustConnect(b, px, ipAddr(target)).Conn
	} else {
		var err error
		if c, err = net.Dial("tcp", target.String()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
	}
	c.SetDeadline(time.Time{})
	buf := make([]byte, 256<<10)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	if up {
		for range b.N {
			if _, err := c.Write(buf[:benchChunk]); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		if n := <-got; n != int64(b.N)*benchChunk {
			b.Fatalf("target got %d bytes", n)
		}
	} else {
		n := b.N
		c.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0})
		want := int64(n) * benchChunk
		var total int64
		for total < want {
			m, err := c.Read(buf)
			total += int64(m)
			if err != nil {
				b.Fatalf("read %d of %d: %v", total, want, err)
			}
		}
	}
	b.StopTimer()
}

// BenchmarkConnect measures complete CONNECTs per second: dial the proxy,
// greeting and request in one write, read the reply, close. "direct" is a
// plain dial of the same target.
func BenchmarkConnect(b *testing.B) {
	target := benchTarget(b, func(c *net.TCPConn) {})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			c, err := net.Dial("tcp", target.String())
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
	})
	b.Run("socks", func(b *testing.B) {
		s, px := startServer(b, benchOptions(), tunnelCfg, false)
		req := appendRequest(appendGreeting(nil, methodNoAuth), cmdConnect, ipAddr(target))
		var resp [12]byte
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			c, err := net.Dial("tcp", px.String())
			if err != nil {
				b.Fatal(err)
			}
			c.Write(req)
			if _, err := io.ReadFull(c, resp[:]); err != nil || resp[0] != socksVersion || reply(resp[3]) != replySucceeded {
				b.Fatalf("reply %v, %v", resp, err)
			}
			c.Close()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
		// The counter is bumped after the reply is written: the last
		// session may not have got there yet.
		waitFor(b, "ConnectsOK", func() bool { return s.Stats().ConnectsOK == uint64(b.N) },
			func() string { return fmt.Sprintf("ConnectsOK %d, want %d", s.Stats().ConnectsOK, b.N) })
	})
}
