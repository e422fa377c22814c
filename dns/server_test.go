package dns

import (
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// waitGoroutines polls (no fixed sleep) until at most n goroutines are left.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, want ≤ %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

func TestListenServesUDPAndTCP(t *testing.T) {
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}}, Options{})
	before := runtime.NumGoroutine()
	srv, err := r.Listen([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addrs()[0]
	if addr.Port() == 0 || addr.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("bound %v", addr)
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
			got, _, err := c.Exchange(question("www.example.", mdns.TypeA, 1232, false), addr.String())
			if err != nil {
				t.Fatal(err)
			}
			if got.Rcode != mdns.RcodeSuccess || len(got.Answer) != 1 || !got.RecursionAvailable {
				t.Errorf("reply %v", got)
			}
		})
	}

	// Malformed input is counted. UDP: a short packet, then a good query
	// whose answer proves the first was read (one socket is read in order).
	udp, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	good, _ := question("www.example.", mdns.TypeA, 0, false).Pack()
	if _, err := udp.Write([]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, udp, good, false); got.Rcode != mdns.RcodeSuccess {
		t.Errorf("good query after garbage: %v", got)
	}
	// TCP: one connection is served in order, so a reply (ignored) and then
	// a query whose body does not unpack (FORMERR from miekg's server).
	tcp, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	reply := question("www.example.", mdns.TypeA, 0, false)
	reply.Response = true
	replyWire, _ := reply.Pack()
	if _, err := tcp.Write(append([]byte{0, byte(len(replyWire))}, replyWire...)); err != nil {
		t.Fatal(err)
	}
	bad := []byte{0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 'e', 'x'}
	if got := roundTrip(t, tcp, bad, true); got.Id != 0xabcd || got.Rcode != mdns.RcodeFormatError {
		t.Errorf("reply to a malformed query: %v", got)
	}
	if st := r.Stats(); st.Malformed != 3 || st.Queries != 6 {
		t.Errorf("malformed %d queries %d, want 3 and 6", st.Malformed, st.Queries)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	waitGoroutines(t, before)
	c := &mdns.Client{Net: "tcp", Timeout: time.Second}
	if _, _, err := c.Exchange(question("www.example.", mdns.TypeA, 0, false), addr.String()); err == nil {
		t.Error("still answering after Close")
	}
}

// roundTrip writes one message (length-prefixed for TCP) and reads one.
func roundTrip(t *testing.T, c net.Conn, msg []byte, tcp bool) *mdns.Msg {
	t.Helper()
	if tcp {
		msg = append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if tcp {
		buf, n = buf[2:], n-2 // loopback delivers a small reply in one read
	}
	m := new(mdns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestListenErrors(t *testing.T) {
	r := testResolver(t, newClock(), Config{Upstreams: []string{"192.0.2.53"}}, Options{})
	first, err := r.Listen([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	taken := first.Addrs()[0]
	tests := []struct {
		name  string
		addrs []netip.AddrPort
	}{
		{"port taken", []netip.AddrPort{taken}},
		{"second address fails", []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), taken}},
		{"address not local", []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			srv, err := r.Listen(tt.addrs)
			if err == nil {
				srv.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.HasPrefix(err.Error(), "dns: listen") {
				t.Errorf("err %q, want it to start with \"dns: listen\"", err)
			}
			waitGoroutines(t, before)
		})
	}
}
