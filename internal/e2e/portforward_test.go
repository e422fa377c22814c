package e2e

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// natpmpMapped parses natpmpc's "Mapped public port N protocol P to local
// port M" line.
var natpmpMapped = regexp.MustCompile(`Mapped public port (\d+) protocol (TCP|UDP) to local port (\d+)`)

// natpmpc runs Debian's natpmpc in the member's namespace against the
// gateway and returns the public port it was given.
func natpmpc(t *testing.T, m *harness.Member, args ...string) (int, string) {
	t.Helper()
	out, err := m.NS.Exec(context.Background(), "natpmpc", append([]string{"-g", "10.99.0.1"}, args...)...)
	if err != nil {
		t.Fatalf("natpmpc %v: %v", args, err)
	}
	sm := natpmpMapped.FindStringSubmatch(string(out))
	if sm == nil {
		return 0, string(out)
	}
	port, _ := strconv.Atoi(sm[1])
	return port, string(out)
}

// A member asks for ports with natpmpc through the tunnel; a host on the
// internet reaches the member's TCP and UDP listeners on the exit's WAN
// address; another member cannot take the same port; the mapping ends
// when its lifetime does and when the member is removed.
func TestPortForwardNATPMP(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "natpmpc")
	l := netlab.NewT(t, netlab.Options{Members: 2})
	ctx := context.Background()
	n, err := harness.StartNode(ctx, l, harness.NodeOptions{Bin: bins, Dir: shortTempDir(t),
		Extra: "[portforward]\nenabled = true\nports = \"61000-61009\"\nmax_per_member = 3\n"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Proc.Stop() })
	a, err := n.AddMember(ctx, l.Members[0], "p2p")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddMember(ctx, l.Members[1], "other")
	if err != nil {
		t.Fatal(err)
	}
	inner := netip.MustParseAddr(a.Addr4)

	// The member's listeners, in its namespace on its tunnel address.
	var tcpLn net.Listener
	var udpLn *net.UDPConn
	if err := a.NS.Run(func() error {
		var err error
		if tcpLn, err = net.Listen("tcp4", netip.AddrPortFrom(inner, 7000).String()); err != nil {
			return err
		}
		udpLn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(inner, 7001)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcpLn.Close(); udpLn.Close() })
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("member\n"))
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := udpLn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			udpLn.WriteToUDPAddrPort(append([]byte("member:"), buf[:k]...), from)
		}
	}()

	if _, out := natpmpc(t, a); !regexpContains(out, `Public IP address : `+regexp.QuoteMeta(netlab.ExitWAN4)) {
		t.Fatalf("public address query:\n%s", out)
	}
	tcpPort, out := natpmpc(t, a, "-a", "61000", "7000", "tcp", "3600")
	if tcpPort != 61000 {
		t.Fatalf("TCP mapping: got port %d:\n%s", tcpPort, out)
	}
	udpPort, out := natpmpc(t, a, "-a", "61001", "7001", "udp", "3600")
	if udpPort != 61001 {
		t.Fatalf("UDP mapping: got port %d:\n%s", udpPort, out)
	}
	wan := netip.MustParseAddr(netlab.ExitWAN4)
	if got := dialRead(t, l.Internet, "tcp4", netip.AddrPortFrom(wan, uint16(tcpPort)), nil); got != "member\n" {
		t.Fatalf("the internet host through the TCP mapping read %q", got)
	}
	if got := dialRead(t, l.Internet, "udp4", netip.AddrPortFrom(wan, uint16(udpPort)), []byte("hi")); got != "member:hi" {
		t.Fatalf("the internet host through the UDP mapping read %q", got)
	}
	// Another member asking for the same port gets another one.
	if p, out := natpmpc(t, b, "-a", "61000", "7000", "tcp", "3600"); p == 0 || p == tcpPort {
		t.Fatalf("second member asking for %d got %d:\n%s", tcpPort, p, out)
	}
	// Asking again for the same internal port renews the mapping (RFC 6886
	// §3.3) with the new lifetime: 2 s, then the exit's own closed port
	// answers.
	if p, out := natpmpc(t, a, "-a", "61005", "7000", "tcp", "2"); p != tcpPort {
		t.Fatalf("renewal moved the mapping to %d:\n%s", p, out)
	}
	if got := dialRead(t, l.Internet, "tcp4", netip.AddrPortFrom(wan, uint16(tcpPort)), nil); got != "member\n" {
		t.Fatalf("renewed mapping read %q", got)
	}
	if err := netlab.WaitFor(ctx, 20*time.Second, func() bool {
		return dialRead(t, l.Internet, "tcp4", netip.AddrPortFrom(wan, uint16(tcpPort)), nil) == ""
	}); err != nil {
		t.Fatal("the mapping outlived its 2 s lifetime")
	}
	// The member is removed: its UDP mapping goes at once.
	if _, err := n.Exitctl(ctx, "member", "remove", "p2p"); err != nil {
		t.Fatal(err)
	}
	if got := dialRead(t, l.Internet, "udp4", netip.AddrPortFrom(wan, uint16(udpPort)), []byte("hi")); got != "" {
		t.Fatalf("the removed member's UDP mapping still answers: %q", got)
	}
	st, err := n.Exitctl(ctx, "status")
	if err != nil || !regexpContains(string(st), `portforward\s+on 10\.99\.0\.1:5351; 1 mappings`) {
		t.Fatalf("status (%v):\n%s", err, st)
	}
}

func regexpContains(s, re string) bool { return regexp.MustCompile(re).MatchString(s) }

// dialRead connects from ns to dst over network (tcp4: reads what the
// peer sends; udp4: sends payload and reads one answer) and returns what
// it read, "" when nothing came within 2 s or the connection failed.
func dialRead(t *testing.T, ns *netlab.NS, network string, dst netip.AddrPort, payload []byte) string {
	t.Helper()
	var c net.Conn
	if err := ns.Run(func() error {
		var err error
		c, err = net.DialTimeout(network, dst.String(), 2*time.Second)
		return err
	}); err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if payload != nil {
		if _, err := c.Write(payload); err != nil {
			return ""
		}
	}
	buf := make([]byte, 256)
	k, _ := c.Read(buf)
	return string(buf[:k])
}
