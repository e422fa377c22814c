package e2e

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// curlSOCKS fetches url through the member's SOCKS proxy at proxy
// (host:port), names resolved by the proxy.
func curlSOCKS(ctx context.Context, ns *netlab.NS, proxy, url string) (string, error) {
	out, err := ns.Exec(ctx, "curl", "-sS", "--max-time", "5", "--socks5-hostname", proxy, url)
	return strings.TrimSpace(string(out)), err
}

// socksConnect opens a SOCKS5 session from inside ns to dst through proxy
// (no authentication) and returns the connection and the reply code.
func socksConnect(ns *netlab.NS, proxy string, cmd byte, dst netip.AddrPort) (net.Conn, byte, netip.AddrPort, error) {
	var c net.Conn
	if err := ns.Run(func() error {
		var err error
		c, err = net.DialTimeout("tcp", proxy, 5*time.Second)
		return err
	}); err != nil {
		return nil, 0, netip.AddrPort{}, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := []byte{5, 1, 0, 5, cmd, 0}
	if dst.Addr().Is4() {
		req = append(req, 1)
	} else {
		req = append(req, 4)
	}
	req = append(req, dst.Addr().AsSlice()...)
	req = binary.BigEndian.AppendUint16(req, dst.Port())
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, 0, netip.AddrPort{}, err
	}
	var hdr [2 + 4]byte // method reply, then VER REP RSV ATYP
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		c.Close()
		return nil, 0, netip.AddrPort{}, err
	}
	n := 4
	if hdr[5] == 4 {
		n = 16
	}
	rest := make([]byte, n+2)
	if _, err := io.ReadFull(c, rest); err != nil {
		c.Close()
		return nil, hdr[3], netip.AddrPort{}, err
	}
	a, _ := netip.AddrFromSlice(rest[:n])
	c.SetDeadline(time.Time{})
	return c, hdr[3], netip.AddrPortFrom(a, binary.BigEndian.Uint16(rest[n:])), nil
}

func TestSOCKSInsideTheTunnel(t *testing.T) {
	testenv.RequireTools(t, "curl")
	l := newLab(t, 1, "[socks]\nmax_sessions = 4\n")
	serveAuthority(t, l.Lab)
	ctx := context.Background()
	m, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	proxy4, proxy6 := "10.99.0.1:1080", "[fd00:99::1]:1080"
	t.Run("CONNECT by IPv4, IPv6 and name leaves from the WAN address", func(t *testing.T) {
		for _, tc := range []struct{ proxy, url, want string }{
			{proxy4, "http://" + netlab.Internet4 + "/ip", netlab.ExitWAN4},
			{proxy6, "http://[" + netlab.Internet6 + "]/ip", netlab.ExitWAN6},
			{proxy4, "http://www.exit.test/ip", netlab.ExitWAN4}, // resolved by exitd's resolver
		} {
			got, err := curlSOCKS(ctx, m.NS, tc.proxy, tc.url)
			if err != nil || got != tc.want {
				t.Errorf("curl via %s %s: %q %v, want %s", tc.proxy, tc.url, got, err, tc.want)
			}
		}
	})
	t.Run("private, metadata, node and rebinding names are refused with 0x02", func(t *testing.T) {
		for _, dst := range []string{"192.168.1.1:80", netlab.Metadata4 + ":80", "10.99.0.1:22", netlab.ExitWAN4 + ":22"} {
			c, rep, _, err := socksConnect(m.NS, proxy4, 1, netip.MustParseAddrPort(dst))
			if c != nil {
				c.Close()
			}
			if err != nil && rep == 0 || rep != 2 {
				t.Errorf("CONNECT %s: reply %d %v, want 2 (not allowed by ruleset)", dst, rep, err)
			}
		}
		out, err := m.NS.Exec(ctx, "curl", "-sS", "--max-time", "5", "--socks5-hostname", proxy4, "http://rebind.exit.test/")
		if err == nil || !strings.Contains(string(out), "(2)") {
			t.Errorf("name pointing at a private address: %s %v; want SOCKS reply 2", out, err)
		}
	})
	t.Run("a member over its session limit is refused", func(t *testing.T) {
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for i := range 4 {
			c, rep, _, err := socksConnect(m.NS, proxy4, 1, netip.MustParseAddrPort(netlab.Internet4+":80"))
			if err != nil || rep != 0 {
				t.Fatalf("session %d: reply %d %v", i, rep, err)
			}
			open = append(open, c)
		}
		if _, err := curlSOCKS(ctx, m.NS, proxy4, "http://"+netlab.Internet4+"/ip"); err == nil {
			t.Fatal("a fifth session passed max_sessions = 4")
		}
		out, _ := l.node.Exitctl(ctx, "status")
		if !strings.Contains(string(out), "limit 1") {
			t.Fatalf("status does not count the refusal:\n%s", out)
		}
	})
	t.Run("UDP ASSOCIATE carries a DNS query", func(t *testing.T) {
		ctl, rep, relay, err := socksConnect(m.NS, proxy4, 3, netip.MustParseAddrPort("0.0.0.0:0"))
		if err != nil || rep != 0 {
			t.Fatalf("UDP ASSOCIATE: reply %d %v", rep, err)
		}
		defer ctl.Close()
		if relay.Addr().IsUnspecified() {
			relay = netip.AddrPortFrom(netip.MustParseAddr("10.99.0.1"), relay.Port())
		}
		q := new(mdns.Msg)
		q.SetQuestion("www.exit.test.", mdns.TypeA)
		wire, _ := q.Pack()
		dgram := append([]byte{0, 0, 0, 1}, netip.MustParseAddr(netlab.Internet4).AsSlice()...)
		dgram = binary.BigEndian.AppendUint16(dgram, 53)
		dgram = append(dgram, wire...)
		var uc *net.UDPConn
		if err := m.NS.Run(func() error {
			var err error
			uc, err = net.ListenUDP("udp", nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		buf := make([]byte, 2048)
		var answer *mdns.Msg
		for try := 0; try < 3 && answer == nil; try++ {
			if _, err := uc.WriteToUDPAddrPort(dgram, relay); err != nil {
				t.Fatal(err)
			}
			uc.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := uc.Read(buf)
			if err != nil || n < 10 {
				continue
			}
			r := new(mdns.Msg)
			if r.Unpack(buf[10:n]) == nil {
				answer = r
			}
		}
		if answer == nil || len(answer.Answer) != 1 || !strings.Contains(answer.Answer[0].String(), netlab.Internet4) {
			t.Fatalf("answer through the UDP relay: %v", answer)
		}
	})
}
