package socks

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// udpEcho echoes datagrams on a loopback address.
func udpEcho(t testing.TB, ip netip.Addr) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(b[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// associate opens a UDP association and returns the control connection,
// the relay address and a client UDP socket on 127.0.0.1.
func associate(t testing.TB, px netip.AddrPort, hint addr) (*client, netip.AddrPort, *net.UDPConn) {
	t.Helper()
	c := dialClient(t, px)
	if m, err := c.greet(methodNoAuth); err != nil || m != methodNoAuth {
		t.Fatal(m, err)
	}
	rep, bnd, err := c.request(cmdUDPAssociate, hint)
	if err != nil || rep != replySucceeded {
		t.Fatalf("UDP ASSOCIATE: %v, %v", rep, err)
	}
	if bnd.ip != px.Addr() || bnd.port == 0 {
		t.Fatalf("relay address %v, want %v and a port", bnd, px.Addr())
	}
	uc := udpClient(t)
	return c, netip.AddrPortFrom(bnd.ip, bnd.port), uc
}

func udpClient(t testing.TB) *net.UDPConn {
	t.Helper()
	uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	return uc
}

func sendVia(t testing.TB, uc *net.UDPConn, relay netip.AddrPort, frag byte, dst addr, payload string) {
	t.Helper()
	b := appendAddr([]byte{0, 0, frag}, dst)
	if _, err := uc.WriteToUDPAddrPort(append(b, payload...), relay); err != nil {
		t.Fatal(err)
	}
}

// recvVia reads one relayed datagram and checks where it came from.
func recvVia(t testing.TB, uc *net.UDPConn, relay, wantSrc netip.AddrPort, want string) {
	t.Helper()
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64<<10)
	n, from, err := uc.ReadFromUDPAddrPort(b)
	if err != nil {
		t.Fatal(err)
	}
	if from != relay {
		t.Errorf("datagram from %v, want the relay %v", from, relay)
	}
	src, frag, payload, err := parseUDPHeader(b[:n])
	if err != nil || frag != 0 {
		t.Fatalf("reply header: frag %d, %v", frag, err)
	}
	if got := netip.AddrPortFrom(src.ip, src.port); got != wantSrc {
		t.Errorf("reply from %v, want %v", got, wantSrc)
	}
	if string(payload) != want {
		t.Errorf("payload %q, want %q", payload, want)
	}
}

func TestUDPAssociate(t *testing.T) {
	echo4 := udpEcho(t, lo4)
	echo6 := udpEcho(t, lo6)
	s, px := startServer(t, testOptions(), tunnelCfg, false)
	ctl, relay, uc := associate(t, px, addr{ip: netip.IPv4Unspecified()})

	sendVia(t, uc, relay, 0, ipAddr(echo4), "to ipv4")
	recvVia(t, uc, relay, echo4, "to ipv4")
	sendVia(t, uc, relay, 0, ipAddr(echo6), "to ipv6")
	recvVia(t, uc, relay, echo6, "to ipv6")
	sendVia(t, uc, relay, 0, addr{name: "echo.test", port: echo4.Port()}, "by name")
	recvVia(t, uc, relay, echo4, "by name")
	big := string(bytes.Repeat([]byte("x"), 60000))
	sendVia(t, uc, relay, 0, ipAddr(echo4), big)
	recvVia(t, uc, relay, echo4, big)

	// Dropped: a fragment, a denied destination, a denied name, port 0,
	// a header with ATYP 5, and a datagram from another port of the
	// client's address. Each is followed by nothing, so the next datagram
	// read must be the marker.
	sendVia(t, uc, relay, 1, ipAddr(echo4), "fragment")
	sendVia(t, uc, relay, 0, ipAddr(netip.AddrPortFrom(private, echo4.Port())), "private")
	sendVia(t, uc, relay, 0, addr{name: "private.test", port: echo4.Port()}, "private name")
	sendVia(t, uc, relay, 0, addr{ip: lo4}, "port 0")
	uc.WriteToUDPAddrPort([]byte{0, 0, 0, 5, 1, 2, 3, 4, 0, 1}, relay)
	other := udpClient(t)
	sendVia(t, other, relay, 0, ipAddr(echo4), "stranger")
	sendVia(t, uc, relay, 0, ipAddr(echo4), "marker")
	recvVia(t, uc, relay, echo4, "marker")

	// Counters are bumped after the send, so the client may be ahead.
	waitFor(t, "counters", func() bool {
		st := s.Stats()
		return st.UDPDropped == 6 && st.UDPAssociations == 1 && st.UDPDatagramsUp == 5 && st.UDPDatagramsDown == 5
	}, func() string { return fmt.Sprintf("%+v", s.Stats()) })
	// The association ends with its control connection.
	ctl.Close()
	waitFor(t, "association end", func() bool { return s.Stats().SessionsActive == 0 })
}

// TestUDPForeignSource: a datagram from an address the client never sent
// to is not relayed to the client.
func TestUDPForeignSource(t *testing.T) {
	echo := udpEcho(t, lo4)
	s, px := startServer(t, testOptions(), tunnelCfg, false)
	_, relay, uc := associate(t, px, addr{ip: netip.IPv4Unspecified()})
	sendVia(t, uc, relay, 0, ipAddr(echo), "hello")
	recvVia(t, uc, relay, echo, "hello")
	stranger := udpClient(t)
	// The relay sees the stranger's datagram as coming from a destination
	// (same IP as the client, another port) it never sent to.
	stranger.WriteToUDPAddrPort([]byte("unsolicited"), relay)
	waitFor(t, "drop", func() bool { return s.Stats().UDPDropped == 1 })
	sendVia(t, uc, relay, 0, ipAddr(echo), "after")
	recvVia(t, uc, relay, echo, "after")
}

// TestUDPHintPort: with a port in the request only that port is the client.
func TestUDPHintPort(t *testing.T) {
	echo := udpEcho(t, lo4)
	s, px := startServer(t, testOptions(), tunnelCfg, false)
	uc := udpClient(t)
	ucAddr := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	c := dialClient(t, px)
	c.greet(methodNoAuth)
	rep, bnd, err := c.request(cmdUDPAssociate, ipAddr(ucAddr))
	if err != nil || rep != replySucceeded {
		t.Fatal(rep, err)
	}
	relay := netip.AddrPortFrom(bnd.ip, bnd.port)
	other := udpClient(t)
	sendVia(t, other, relay, 0, ipAddr(echo), "not the client")
	waitFor(t, "drop", func() bool { return s.Stats().UDPDropped == 1 })
	sendVia(t, uc, relay, 0, ipAddr(echo), "the client")
	recvVia(t, uc, relay, echo, "the client")
}

func TestUDPIdleTimeout(t *testing.T) {
	opts := testOptions()
	opts.UDPIdleTimeout = 60 * time.Millisecond
	s, px := startServer(t, opts, tunnelCfg, false)
	ctl, _, _ := associate(t, px, addr{ip: netip.IPv4Unspecified()})
	start := time.Now()
	if _, err := ctl.Read(make([]byte, 1)); err == nil {
		t.Fatal("control connection still open")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("ended after %v, before the idle timeout", d)
	}
	waitFor(t, "association end", func() bool { return s.Stats().SessionsActive == 0 })
}

// TestUDPPortRange: relay sockets bind inside Options.UDPPorts, so a
// firewall can open exactly that range; an empty range is refused.
func TestUDPPortRange(t *testing.T) {
	echo4 := udpEcho(t, lo4)
	opts := testOptions()
	opts.UDPPorts = [2]uint16{41000, 41009}
	_, px := startServer(t, opts, tunnelCfg, false)
	for range 3 {
		_, relay, uc := associate(t, px, addr{ip: netip.IPv4Unspecified()})
		if p := relay.Port(); p < 41000 || p > 41009 {
			t.Fatalf("relay port %d outside 41000-41009", p)
		}
		sendVia(t, uc, relay, 0, ipAddr(echo4), "in range")
		recvVia(t, uc, relay, echo4, "in range")
	}
	bad := testOptions()
	bad.UDPPorts = [2]uint16{5000, 4000}
	if _, err := New(bad); err == nil {
		t.Fatal("empty UDP port range accepted")
	}
}
