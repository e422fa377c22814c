package netlab

import (
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLabTopology builds a two-member lab and checks the addressing plan,
// reachability both ways, isolation, the HTTP helper and that the host's
// root namespace is unchanged.
func TestLabTopology(t *testing.T) {
	linksBefore := rootLinks(t)
	fwdBefore, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward") // root: read only
	l := newLab(t, Options{Members: 2, ExtraMemberAddrs: 3})
	m1, m2 := l.Members[0], l.Members[1]

	t.Run("names", func(t *testing.T) {
		if len(l.Members) != 2 || len(l.NSes()) != 7 {
			t.Fatalf("%d members, %d namespaces; want 2, 7", len(l.Members), len(l.NSes()))
		}
		if got := len(leftovers(t, l.Prefix)); got != 2*7 { // /run/netns + ip netns list
			t.Fatalf("found %d entries for the lab's 7 namespaces, want 14", got)
		}
		for _, n := range l.NSes() {
			if !strings.HasPrefix(n.Name, l.Prefix+"-") || n.Handle < 0 {
				t.Errorf("namespace %q (handle %d) lacks prefix %q or a handle", n.Name, n.Handle, l.Prefix)
			}
		}
		if m1.Addr4.String() != "198.18.1.1" || m2.Addr4.String() != "198.18.1.2" ||
			l.Exit.Addr4.String() != ExitUnderlay4 || l.Internet.Addr6.String() != Internet6 {
			t.Errorf("addresses: member1 %s member2 %s exit %s internet %s", m1.Addr4, m2.Addr4, l.Exit.Addr4, l.Internet.Addr6)
		}
	})

	t.Run("sysctls", func(t *testing.T) {
		for key, want := range map[string]string{
			"net/ipv4/ip_forward":                                "1",
			"net/ipv6/conf/all/forwarding":                       "1",
			"net/ipv6/conf/" + ExitUnderlayIface + "/accept_dad": "0",
		} {
			if got := readSysctl(t, l.Exit, key); got != want {
				t.Errorf("exit %s = %s, want %s", key, got, want)
			}
		}
		if got := readSysctl(t, m1, "net/ipv4/ip_forward"); got != "0" {
			t.Errorf("member ip_forward = %s, want 0", got)
		}
		out, err := l.Exit.Exec(t.Context(), "ip", "-6", "addr", "show", "tentative")
		if err != nil || len(strings.TrimSpace(string(out))) != 0 {
			t.Errorf("tentative IPv6 addresses on the exit: %v %s", err, out)
		}
	})

	t.Run("underlay", func(t *testing.T) {
		mustPing(t, m1, ExitUnderlay4)
		mustPing(t, m1, ExitUnderlay6)
		mustPing(t, l.Exit, m2.Addr4.String())
		mustPing(t, l.Exit, m2.Addr6.String())
		mustPing(t, m1, m2.Addr4.String())
	})

	t.Run("wan and lan", func(t *testing.T) {
		mustPing(t, l.Exit, Internet4)
		mustPing(t, l.Exit, Internet6)
		mustPing(t, l.Internet, ExitWAN4)
		mustPing(t, l.Internet, ExitWAN6)
		mustPing(t, l.Exit, Mgmt4)
		mustPing(t, l.Exit, Mgmt6)
		mustPing(t, l.Exit, Metadata4)
		// The internet host is behind the WAN router, not on the exit's
		// WAN link (exitd denies members the WAN's connected prefixes).
		for _, dst := range []string{Internet4, Internet6} {
			out, err := l.Exit.Exec(t.Context(), "ip", "route", "get", dst)
			if err != nil || !strings.Contains(string(out), " via ") {
				t.Errorf("exit: route to the internet host %s is not via a router: %s %v", dst, out, err)
			}
		}
	})

	t.Run("isolation", func(t *testing.T) {
		mustNotReach(t, l.Internet, m1.Addr4.String()) // no route to the underlay
		mustNotReach(t, l.Internet, ExitUnderlay4)
		mustNotReach(t, l.Internet, Mgmt4)
		mustNotReach(t, l.Internet, m1.Addr6.String())
		mustNotReach(t, m1, Internet4) // members need a tunnel
		mustNotReach(t, m1, Internet6)
		mustNotReach(t, m1, Mgmt4)
		mustNotReach(t, m1, Metadata4)
		mustNotReach(t, l.Mgmt, m1.Addr4.String())
		out, err := l.Internet.Exec(t.Context(), "ip", "route", "get", m1.Addr4.String())
		if err == nil {
			t.Errorf("internet host has a route to the underlay: %s", out)
		}
		out, err = m1.Exec(t.Context(), "ip", "-4", "route")
		if err != nil || strings.TrimSpace(string(out)) != "198.18.0.0/16 dev eth0 proto kernel scope link src 198.18.1.1" {
			t.Errorf("member routes = %q, %v; want the connected underlay only", out, err)
		}
	})

	t.Run("unshaped", func(t *testing.T) {
		out, err := l.Exit.Exec(t.Context(), "tc", "qdisc", "show", "dev", ExitUnderlayIface)
		if err != nil || strings.Contains(string(out), "tbf") {
			t.Errorf("unshaped lab has %q (%v)", out, err)
		}
	})

	t.Run("http source", func(t *testing.T) {
		srv, err := l.Internet.ServeHTTP(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		if code, body := get(t, l.Exit, "http://"+Internet4+"/ip"); code != http.StatusOK || body != ExitWAN4+"\n" {
			t.Errorf("GET /ip over IPv4 = %d %q, want the exit's WAN address", code, body)
		}
		out, err := l.Exit.Exec(t.Context(), "curl", "-sS", "--max-time", "5", "http://["+Internet6+"]/ip")
		if err != nil || string(out) != ExitWAN6+"\n" {
			t.Errorf("curl /ip over IPv6 = %q, %v; want the exit's WAN address", out, err)
		}
		if code, body := get(t, l.Exit, "http://"+Metadata4+"/"); code != http.StatusOK || body != "netlab inet\n" {
			t.Errorf("GET metadata = %d %q", code, body)
		}
		if code, body := get(t, l.Exit, "http://"+Internet4+"/bytes?n=100000"); code != http.StatusOK || len(body) != 100000 {
			t.Errorf("GET /bytes?n=100000 = %d, %d bytes", code, len(body))
		}
		if code, _ := get(t, l.Exit, "http://"+Internet4+"/bytes?n=-1"); code != http.StatusBadRequest {
			t.Errorf("GET /bytes?n=-1 = %d, want 400", code)
		}
		reqs := srv.Requests()
		want := []Request{
			{netip.AddrPort{}, netip.MustParseAddrPort(Internet4 + ":80"), "GET", "/ip"},
			{netip.AddrPort{}, netip.MustParseAddrPort("[" + Internet6 + "]:80"), "GET", "/ip"},
			{netip.AddrPort{}, netip.MustParseAddrPort(Metadata4 + ":80"), "GET", "/"},
			{netip.AddrPort{}, netip.MustParseAddrPort(Internet4 + ":80"), "GET", "/bytes"},
			{netip.AddrPort{}, netip.MustParseAddrPort(Internet4 + ":80"), "GET", "/bytes"},
		}
		if len(reqs) != len(want) {
			t.Fatalf("recorded %d requests, want %d: %+v", len(reqs), len(want), reqs)
		}
		for i, r := range reqs {
			wantSrc := ExitWAN4
			if want[i].Local.Addr().Is6() {
				wantSrc = ExitWAN6
			}
			if r.Remote.Addr().String() != wantSrc || r.Local != want[i].Local || r.Path != want[i].Path || r.Method != "GET" {
				t.Errorf("request %d = %+v, want from %s to %s %s", i, r, wantSrc, want[i].Local, want[i].Path)
			}
		}
	})

	t.Run("mgmt http", func(t *testing.T) {
		srv, err := l.Mgmt.ServeHTTP(t.Context(), netip.MustParseAddrPort(Mgmt4+":80"))
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		if srv.Addrs[0].String() != Mgmt4+":80" {
			t.Errorf("bound %v", srv.Addrs)
		}
		if code, body := get(t, l.Exit, "http://"+Mgmt4+"/ip"); code != http.StatusOK || body != ExitLAN4+"\n" {
			t.Errorf("GET mgmt /ip = %d %q", code, body)
		}
		if c, err := m1.DialContext(t.Context(), "tcp", Mgmt4+":80"); err == nil {
			c.Close()
			t.Errorf("member connected to the mgmt host")
		}
	})

	t.Run("extra addresses", func(t *testing.T) {
		want := []string{"198.18.128.1", "198.18.128.2", "198.18.128.3"}
		var got []string
		for _, a := range m1.ExtraAddrs {
			got = append(got, a.String())
		}
		if !slices.Equal(got, want) || len(m2.ExtraAddrs) != 0 {
			t.Fatalf("member1 extra %v, member2 extra %v; want %v and none", got, m2.ExtraAddrs, want)
		}
		mustPing(t, l.Exit, "198.18.128.3")
		srv, err := l.Exit.ServeHTTP(t.Context(), netip.MustParseAddrPort(ExitUnderlay4+":0"))
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		out, err := m1.Exec(t.Context(), "curl", "-sS", "--max-time", "5", "--interface", "198.18.128.2",
			"http://"+srv.Addrs[0].String()+"/ip")
		if err != nil || string(out) != "198.18.128.2\n" {
			t.Errorf("curl from an extra source = %q, %v", out, err)
		}
	})

	t.Run("ping stats", func(t *testing.T) {
		r, err := Ping(t.Context(), m2, l.Exit.Addr4, 5, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != 5 || r.Received != 5 || r.Loss() != 0 || r.Min <= 0 || r.P50 < r.Min || r.P99 < r.P50 || r.Max < r.P99 {
			t.Errorf("ping stats %+v", r)
		}
	})

	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if left := leftovers(t, l.Prefix); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
	if after := rootLinks(t); !slices.Equal(linksBefore, after) {
		t.Errorf("root namespace links changed:\nbefore %v\nafter  %v", linksBefore, after)
	}
	if fwdAfter, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(fwdAfter) != string(fwdBefore) {
		t.Errorf("root ip_forward changed from %q to %q", fwdBefore, fwdAfter)
	}
}
