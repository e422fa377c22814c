package netlab

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestExitAddrs checks the plan of several exits: exit 0 is the single
// exit's constants, every exit's addresses are distinct and in their
// prefixes, no exit holds the floating address, names fit IFNAMSIZ.
func TestExitAddrs(t *testing.T) {
	p0, err := ExitAddrs(0)
	if err != nil {
		t.Fatal(err)
	}
	if p0.Underlay4.String() != ExitUnderlay4 || p0.WAN4.String() != ExitWAN4 || p0.WAN6.String() != ExitWAN6 ||
		p0.LAN4.String() != ExitLAN4 || p0.Mgmt6.String() != Mgmt6 || p0.hubPort != HubExitPort {
		t.Errorf("exit 0 plan %+v differs from the single exit's constants", p0)
	}
	p2, _ := ExitAddrs(2)
	for got, want := range map[netip.Addr]string{
		p2.Underlay4: "198.18.0.3", p2.Underlay6: "2001:2:0:2::3",
		p2.WAN4: "203.0.113.7", p2.WAN6: "2001:2:0:1::7", p2.router4: "203.0.113.6",
		p2.LAN4: "10.200.2.1", p2.LAN6: "fd00:200:0:2::1", p2.Mgmt4: "10.200.2.2",
	} {
		if got.String() != want {
			t.Errorf("exit 2: %s, want %s", got, want)
		}
	}
	seen := map[netip.Addr]int{
		netip.MustParseAddr(Internet4): -1, netip.MustParseAddr(routerInet4): -1,
		netip.MustParseAddr(Internet6): -1, netip.MustParseAddr(routerInet6): -1,
		netip.MustParseAddr(FloatingUnderlay4): -1,
	}
	for i := range MaxExits {
		p, err := ExitAddrs(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			a      netip.Addr
			prefix string
		}{
			{p.Underlay4, UnderlayPrefix4}, {p.Underlay6, UnderlayPrefix6},
			{p.WAN4, WANPrefix4}, {p.WAN6, WANPrefix6}, {p.router4, WANPrefix4}, {p.router6, WANPrefix6},
			{p.LAN4, "10.200.0.0/16"}, {p.Mgmt4, "10.200.0.0/16"}, {p.LAN6, "fd00:200::/48"}, {p.Mgmt6, "fd00:200::/48"},
		} {
			if !netip.MustParsePrefix(c.prefix).Contains(c.a) {
				t.Errorf("exit %d: %s not in %s", i, c.a, c.prefix)
			}
			if j, dup := seen[c.a]; dup {
				t.Errorf("exit %d: %s also used by %d", i, c.a, j)
			}
			seen[c.a] = i
		}
		if netip.MustParsePrefix(MgmtServicePrefix4).Contains(p.LAN4) {
			t.Errorf("exit %d LAN %s inside the mgmt service prefix", i, p.LAN4)
		}
		// The WAN link is a /31 with the router on the even address.
		if w := p.WAN4.As4(); w[3]%2 != 1 || p.router4.Next() != p.WAN4 {
			t.Errorf("exit %d WAN %s / router %s is not a /31 pair", i, p.WAN4, p.router4)
		}
		for _, name := range []string{p.hubPort, p.routerPort, p.mgmtIface} {
			if len(name) > 15 || name == "" {
				t.Errorf("exit %d: interface name %q", i, name)
			}
		}
	}
	for _, i := range []int{-1, MaxExits} {
		if _, err := ExitAddrs(i); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("ExitAddrs(%d) error = %v", i, err)
		}
	}
}

// TestLabExits builds three exits and checks each: its addresses, members
// reach its underlay, it reaches the internet host with its own WAN source
// and the mgmt host over its own LAN link, and the single-exit names are
// unchanged.
func TestLabExits(t *testing.T) {
	l := newLab(t, Options{Exits: 3, DownRate: 50e6, UpRate: 20e6, OffloadsOff: true})
	if len(l.Exits) != 3 || l.Exits[0] != l.Exit || len(l.NSes()) != 8 {
		t.Fatalf("%d exits (first is Exit: %v), %d namespaces; want 3, true, 8", len(l.Exits), l.Exits[0] == l.Exit, len(l.NSes()))
	}
	if l.Exits[1].Name != l.Prefix+"-exit1" || l.Exits[2].Role != "exit2" || l.Exit.Name != l.Prefix+"-exit" {
		t.Errorf("exit names %s %s %s", l.Exit.Name, l.Exits[1].Name, l.Exits[2].Role)
	}
	srv, err := l.Internet.ServeHTTP(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	m := l.Members[0]
	for i, e := range l.Exits {
		p, _ := ExitAddrs(i)
		if e.Addr4 != p.Underlay4 || e.Addr6 != p.Underlay6 {
			t.Errorf("exit %d Addr4/6 = %s %s, want %s %s", i, e.Addr4, e.Addr6, p.Underlay4, p.Underlay6)
		}
		if got := readSysctl(t, e, "net/ipv4/ip_forward"); got != "1" {
			t.Errorf("exit %d ip_forward = %s", i, got)
		}
		mustPing(t, m, p.Underlay4.String())
		mustPing(t, m, p.Underlay6.String())
		mustPing(t, l.Mgmt, p.LAN4.String())
		mustPing(t, l.Mgmt, p.LAN6.String())
		if _, body := get(t, e, "http://"+Internet4+"/ip"); body != p.WAN4.String()+"\n" {
			t.Errorf("exit %d: GET /ip = %q, want its WAN %s", i, body, p.WAN4)
		}
		if _, body := get(t, e, "http://["+Internet6+"]/ip"); body != p.WAN6.String()+"\n" {
			t.Errorf("exit %d: GET /ip over IPv6 = %q, want its WAN %s", i, body, p.WAN6)
		}
		out, err := e.Exec(t.Context(), "tc", "qdisc", "show", "dev", ExitUnderlayIface)
		if err != nil || !strings.Contains(string(out), "tbf") {
			t.Errorf("exit %d underlay not shaped: %q %v", i, out, err)
		}
		out, err = l.Hub.Exec(t.Context(), "tc", "qdisc", "show", "dev", p.hubPort)
		if err != nil || !strings.Contains(string(out), "rate 20Mbit") {
			t.Errorf("hub port %s towards exit %d not shaped: %q %v", p.hubPort, i, out, err)
		}
		out, err = e.Exec(t.Context(), "ethtool", "-k", ExitUnderlayIface)
		if err != nil || !strings.Contains(string(out), "generic-receive-offload: off") {
			t.Errorf("exit %d underlay offloads still on: %v", i, err)
		}
	}
	mustNotReach(t, l.Internet, l.Exits[2].Addr4.String())
	mustNotReach(t, m, "10.200.1.1")
}

// TestFloatingAddress moves FloatingUnderlay4 from exit 0 to exit 1 as a
// failover would: after DelAddr, AddAddr and Announce the member's
// neighbour entry points at exit 1 and its traffic reaches exit 1's server.
func TestFloatingAddress(t *testing.T) {
	l := newLab(t, Options{Exits: 2})
	m, a, b := l.Members[0], l.Exits[0], l.Exits[1]
	fl := netip.MustParsePrefix(FloatingUnderlay4 + "/32")
	ctx := t.Context()
	if err := a.AddAddr(ExitUnderlayIface, fl); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*NS{a, b} {
		srv, err := e.ServeHTTP(ctx, netip.MustParseAddrPort("0.0.0.0:80"))
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
	}
	if _, body := get(t, m, "http://"+FloatingUnderlay4+"/"); body != "netlab exit\n" {
		t.Fatalf("floating address on exit 0 served %q", body)
	}
	if err := a.DelAddr(ExitUnderlayIface, fl); err != nil {
		t.Fatal(err)
	}
	if err := a.DelAddr(ExitUnderlayIface, fl); err == nil {
		t.Errorf("deleting a missing address succeeded")
	}
	if err := b.AddAddr(ExitUnderlayIface, fl); err != nil {
		t.Fatal(err)
	}
	if err := b.Announce(ExitUnderlayIface, fl.Addr()); err != nil {
		t.Fatal(err)
	}
	bMAC := linkMAC(t, b, ExitUnderlayIface)
	if err := WaitFor(ctx, 5*time.Second, func() bool {
		out, err := m.Exec(ctx, "ip", "neigh", "show", FloatingUnderlay4)
		return err == nil && strings.Contains(string(out), bMAC.String())
	}); err != nil {
		out, _ := m.Exec(ctx, "ip", "neigh", "show")
		t.Fatalf("member's neighbour entry did not move to exit 1 (%s): %v\n%s", bMAC, err, out)
	}
	if _, body := get(t, m, "http://"+FloatingUnderlay4+"/"); body != "netlab exit1\n" {
		t.Fatalf("floating address on exit 1 served %q", body)
	}
	if err := b.Announce(ExitUnderlayIface, netip.MustParseAddr(ExitUnderlay6)); err == nil {
		t.Errorf("Announce of an IPv6 address succeeded")
	}
	if err := b.Announce("nosuch0", fl.Addr()); err == nil {
		t.Errorf("Announce on a missing link succeeded")
	}
}

// TestGARPFrame pins the gratuitous ARP bytes (as `arping -U` sends them).
func TestGARPFrame(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	got := garpFrame(mac, netip.MustParseAddr("198.18.0.254"))
	want := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06, // Ethernet, ARP
		0, 1, 0x08, 0, 6, 4, 0, 1, // Ethernet/IPv4, request
		0x02, 0, 0, 0, 0, 0x01, 198, 18, 0, 254, // sender
		0, 0, 0, 0, 0, 0, 198, 18, 0, 254, // target
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("frame\n% x\nwant\n% x", got, want)
	}
}

func linkMAC(t *testing.T, n *NS, dev string) net.HardwareAddr {
	t.Helper()
	ln, err := n.nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	return ln.Attrs().HardwareAddr
}
