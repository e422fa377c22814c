package nat

// Traffic tests for the deny set's reach and the chains' scope, on the lab of
// lab_test.go. Extra namespaces hang off the router for traffic that is not
// exitd's:
//
//	[a] a1 192.0.2.2/26 --- a0 192.0.2.1/26 [router] b0 192.0.2.65/26 --- b1 192.0.2.66/26 [b]
//	[c] c1 192.0.2.129/26 --- c0 [router: bridge br9] d0 --- d1 192.0.2.130/26 [d]

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"exitd/internal/testenv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// peerNS adds a namespace joined to the router by a veth (routerEnd in the
// router, "<routerEnd>p" in the new namespace) and gives the new end addr.
// With gw valid it becomes the new namespace's default gateway.
func (l *lab) peerNS(t *testing.T, routerEnd string, addr string, gw netip.Addr) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	ns := testenv.NewNetNS(t)
	r, err := netlink.NewHandleAt(l.router)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	peer := routerEnd + "p"
	if err := r.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: routerEnd}, PeerName: peer, PeerNamespace: netlink.NsFd(ns)}); err != nil {
		t.Fatal(err)
	}
	for _, hl := range []struct {
		h    *netlink.Handle
		name string
	}{{r, routerEnd}, {h, peer}, {h, "lo"}} {
		link, err := hl.h.LinkByName(hl.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := hl.h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	link, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, a); err != nil {
		t.Fatal(err)
	}
	if gw.IsValid() {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice()),
			Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}); err != nil {
			t.Fatal(err)
		}
	}
	return ns, h
}

func routerAddr(t *testing.T, l *lab, dev, addr string) {
	t.Helper()
	r, err := netlink.NewHandleAt(l.router)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	link, err := r.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := r.AddrAdd(link, a); err != nil {
		t.Fatal(err)
	}
}

// TestLabUnrelatedForwarding: with exitd's table in place, forwarding that
// neither enters nor leaves the TUN (a routed path, and a bridged one when
// br_netfilter hands bridged IPv4 to the inet hooks) passes untouched, while
// the member's traffic towards those paths, and new flows from them towards
// the member, are still dropped and counted.
func TestLabUnrelatedForwarding(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	a, _ := l.peerNS(t, "a0", "192.0.2.2/26", netip.MustParseAddr("192.0.2.1"))
	b, _ := l.peerNS(t, "b0", "192.0.2.66/26", netip.MustParseAddr("192.0.2.65"))
	routerAddr(t, l, "a0", "192.0.2.1/26")
	routerAddr(t, l, "b0", "192.0.2.65/26")
	if err := l.m.Apply(l.cfg); err != nil {
		t.Fatal(err)
	}
	aAddr, bAddr := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.66")

	t.Run("routed", func(t *testing.T) {
		p := newPinger(t, a, netip.Addr{})
		for i := range 3 { // new flow, then established
			if err := p.send(bAddr); err != nil {
				t.Fatal(err)
			}
			if !p.waitReply(bAddr) {
				t.Fatalf("echo %d from a to b through the router: no reply (exitd's table drops unrelated forwarding)", i)
			}
		}
	})

	t.Run("bridged", func(t *testing.T) {
		c, _ := l.peerNS(t, "c0", "192.0.2.129/26", netip.Addr{})
		l.peerNS(t, "d0", "192.0.2.130/26", netip.Addr{})
		r, err := netlink.NewHandleAt(l.router)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := r.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br9"}}); err != nil {
			t.Fatal(err)
		}
		br, err := r.LinkByName("br9")
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range []string{"c0", "d0"} {
			pl, err := r.LinkByName(port)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.LinkSetMaster(pl, br); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.LinkSetUp(br); err != nil {
			t.Fatal(err)
		}
		// br_netfilter's switch is per namespace; loading the module
		// would be host-wide, so only use it when it is already there.
		var brnf bool
		testenv.Do(t, l.router, func() {
			path := "/proc/sys/net/bridge/bridge-nf-call-iptables"
			if _, err := os.Stat(path); err != nil {
				return
			}
			brnf = os.WriteFile(path, []byte("1"), 0) == nil
		})
		if brnf {
			t.Log("br_netfilter is on in the router's namespace: bridged IPv4 passes the inet forward hook")
		} else {
			t.Log("br_netfilter is not loaded: the bridged path does not reach the inet hooks; checking plain bridging only")
		}
		dAddr := netip.MustParseAddr("192.0.2.130")
		p := newPinger(t, c, netip.Addr{})
		for i := range 3 {
			if err := p.send(dAddr); err != nil {
				t.Fatal(err)
			}
			if !p.waitReply(dAddr) {
				t.Fatalf("echo %d from c to d over the bridge (br_netfilter %v): no reply", i, brnf)
			}
		}
	})

	t.Run("members stay fail-closed", func(t *testing.T) {
		member := newPinger(t, l.member, netip.Addr{})
		for _, step := range []struct {
			name   string
			pinger *pinger
			dst    netip.Addr
		}{
			{"member to the routed path", member, aAddr},
			{"new flow from the routed path to the member", newPinger(t, b, netip.Addr{}), labMember},
		} {
			before := counter(t, l.m, CounterForwardPolicyDrop)
			if err := step.pinger.send(step.dst); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if got := waitCounter(t, l.m, CounterForwardPolicyDrop, before+1); got != before+1 {
				t.Errorf("%s: fwd_policy_drop went %d → %d, want +1", step.name, before, got)
			}
		}
	})
}

// TestLabDenyChangeCutsFlows: an Apply that denies a destination an
// established member flow uses cuts the flow (its conntrack entry goes and
// the next packet is a leak drop); the router's own flow to the same
// destination stays, and an Apply that does not change the deny set cuts
// nothing.
func TestLabDenyChangeCutsFlows(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	if err := l.m.Apply(l.cfg); err != nil {
		t.Fatal(err)
	}
	member := newPinger(t, l.member, netip.Addr{})
	router := newPinger(t, l.router, netip.Addr{})
	for _, p := range []*pinger{member, router} {
		if err := p.send(labTarget); err != nil {
			t.Fatal(err)
		}
		if !p.waitReply(labTarget) {
			t.Fatal("no reply from the target")
		}
	}
	flows := func() (memberFlows, own int) {
		h, err := netlink.NewHandleAt(l.router)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		fs, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			src, _ := netip.AddrFromSlice(f.Forward.SrcIP)
			dst, _ := netip.AddrFromSlice(f.Forward.DstIP)
			switch {
			case src.Unmap() == labMember && dst.Unmap() == labTarget:
				memberFlows++
			case src.Unmap() == labWAN && dst.Unmap() == labTarget:
				own++
			}
		}
		return memberFlows, own
	}

	// No deny change: nothing is cut.
	same := l.cfg
	same.Isolation = false
	if err := l.m.Apply(same); err != nil {
		t.Fatal(err)
	}
	if mf, own := flows(); mf != 1 || own != 1 {
		t.Fatalf("after an Apply without a deny change: %d member flows, %d own flows; want 1, 1", mf, own)
	}

	blocked := l.cfg
	blocked.Block = []netip.Prefix{netip.PrefixFrom(labTarget, 32)}
	if err := l.m.Apply(blocked); err != nil {
		t.Fatal(err)
	}
	if mf, own := flows(); mf != 0 || own != 1 {
		t.Fatalf("after denying the target: %d member flows (want 0: cut), %d own flows (want 1: kept)", mf, own)
	}
	natted := counter(t, l.probe, "natted")
	if err := member.send(labTarget); err != nil { // same ICMP id: the old flow's tuple
		t.Fatal(err)
	}
	if got := waitCounter(t, l.m, CounterLeakDrop, 1); got != 1 {
		t.Errorf("leak_drop = %d after the cut flow's next packet, want 1", got)
	}
	if got := counter(t, l.probe, "natted"); got != natted {
		t.Errorf("the target received %d more requests from the cut flow", got-natted)
	}
}

// TestLabConnectedPrefixes: the WAN's connected prefixes, read with
// ConnectedPrefixes, make its on-link neighbours unreachable for members
// (the lab's target is one); an allow entry opens one neighbour again.
func TestLabConnectedPrefixes(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	routerAddr(t, l, "w0", "2a01:4f8:77::1/64")
	r, err := netlink.NewHandleAt(l.router)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w0, err := r.LinkByName("w0")
	if err != nil {
		t.Fatal(err)
	}
	ptp := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("203.0.113.1"), Mask: net.CIDRMask(32, 32)},
		Peer: &net.IPNet{IP: net.ParseIP("203.0.113.9"), Mask: net.CIDRMask(32, 32)}}
	if err := r.AddrAdd(w0, ptp); err != nil {
		t.Fatal(err)
	}
	var got []netip.Prefix
	testenv.Do(t, l.router, func() { got, err = ConnectedPrefixes("w0") })
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{ // fe80::/64 of w0 is left out: built in
		netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.1/32"),
		netip.MustParsePrefix("203.0.113.9/32"), netip.MustParsePrefix("2a01:4f8:77::/64"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ConnectedPrefixes(w0) = %v, want %v", got, want)
	}
	testenv.Do(t, l.router, func() { _, err = ConnectedPrefixes("nosuch0") })
	if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), `"nosuch0"`) {
		t.Errorf("ConnectedPrefixes(nosuch0) = %v", err)
	}

	cfg := l.cfg
	cfg.WANPrefixes = got
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	member := newPinger(t, l.member, netip.Addr{})
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if n := waitCounter(t, l.m, CounterLeakDrop, 1); n != 1 {
		t.Fatalf("leak_drop = %d for the on-link neighbour, want 1", n)
	}
	if n := counter(t, l.probe, "natted"); n != 0 {
		t.Fatalf("the on-link neighbour received %d requests", n)
	}

	cfg.Allow = []netip.Prefix{netip.PrefixFrom(labTarget, 32)}
	if err := l.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if !member.waitReply(labTarget) {
		t.Fatal("no reply from the allowed neighbour")
	}
}
