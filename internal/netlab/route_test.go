package netlab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRouteAddDel(t *testing.T) {
	l := newLab(t, Options{})
	m := l.Members[0]
	ctx := t.Context()
	def := netip.MustParsePrefix("0.0.0.0/0")
	gw := netip.MustParseAddr(ExitUnderlay4)

	if err := m.AddRoute(def, gw); err != nil {
		t.Fatal(err)
	}
	out, err := m.Exec(ctx, "ip", "route", "get", Internet4)
	if err != nil || !strings.Contains(string(out), "via "+ExitUnderlay4) {
		t.Fatalf("route get after AddRoute = %q, %v", out, err)
	}
	// Routed but not NATed: the internet host cannot answer the underlay.
	mustNotReach(t, m, Internet4)
	if err := m.AddRoute(def, gw); err == nil || !strings.Contains(err.Error(), "route add 0.0.0.0/0") {
		t.Errorf("duplicate AddRoute error = %v", err)
	}
	if err := m.DelRoute(def, gw); err != nil {
		t.Fatal(err)
	}
	if out, err := m.Exec(ctx, "ip", "route", "get", Internet4); err == nil {
		t.Fatalf("route get after DelRoute = %q, want no route", out)
	}
	if err := m.DelRoute(def, gw); err == nil {
		t.Errorf("DelRoute of a missing route succeeded")
	}
	v6 := netip.MustParsePrefix("::/0")
	if err := m.AddRoute(v6, netip.MustParseAddr(ExitUnderlay6)); err != nil {
		t.Fatal(err)
	}
	if out, err := m.Exec(ctx, "ip", "-6", "route", "get", Internet6); err != nil || !strings.Contains(string(out), "via "+ExitUnderlay6) {
		t.Fatalf("v6 route get = %q, %v", out, err)
	}
}

// TestExitForwards proves the exit routes between the underlay and the
// WAN in both families, once the test gives the internet host and the WAN
// router a return route (the lab itself never does).
func TestExitForwards(t *testing.T) {
	l := newLab(t, Options{})
	m := l.Members[0]
	for _, c := range []struct {
		member, internet            netip.Prefix
		exitUnder, exitWAN, routerI netip.Addr
		dst                         string
	}{
		{netip.MustParsePrefix(WANPrefix4), netip.PrefixFrom(m.Addr4, 32),
			netip.MustParseAddr(ExitUnderlay4), netip.MustParseAddr(ExitWAN4), netip.MustParseAddr(routerInet4), Internet4},
		{netip.MustParsePrefix(WANPrefix6), netip.PrefixFrom(m.Addr6, 128),
			netip.MustParseAddr(ExitUnderlay6), netip.MustParseAddr(ExitWAN6), netip.MustParseAddr(routerInet6), Internet6},
	} {
		mustNotReach(t, m, c.dst)
		if err := m.AddRoute(c.member, c.exitUnder); err != nil {
			t.Fatal(err)
		}
		if err := l.Internet.AddRoute(c.internet, c.routerI); err != nil {
			t.Fatal(err)
		}
		if err := l.router.AddRoute(c.internet, c.exitWAN); err != nil {
			t.Fatal(err)
		}
		mustPing(t, m, c.dst)
	}
}
