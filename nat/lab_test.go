package nat

// Traffic tests through the real ruleset. Three namespaces joined by veth:
//
//	[member] m0 10.8.0.2/24 (+10.99.0.2 to spoof) --- r0 10.8.0.1/24 [router: exitd table,
//	   tun = "r0", wan = "w0"]  w0 198.51.100.1/24 --- t0 198.51.100.2/24 + 192.168.77.2/32 [target]
//
// The router reaches the blocked 192.168.77.2 through the target. The
// target counts what arrives in its own nft table ("probe").

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"exitd/internal/testenv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

type lab struct {
	member, router, target netns.NsHandle
	cfg                    Config
	m                      *Manager // the router's
	probe                  *Manager // reads the target's counters
}

var (
	labGateway   = netip.MustParseAddr("10.8.0.1")
	labMember    = netip.MustParseAddr("10.8.0.2")
	labOther     = netip.MustParseAddr("10.8.0.3")  // another member, not present
	labSpoof     = netip.MustParseAddr("10.99.0.2") // outside the member prefix
	labWAN       = netip.MustParseAddr("198.51.100.1")
	labTarget    = netip.MustParseAddr("198.51.100.2")
	labBlocked   = netip.MustParseAddr("192.168.77.2")
	probeRuleset = `table inet probe {
	counter blocked {}
	counter natted {}
	counter unnatted {}
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		ip daddr 192.168.77.2 icmp type echo-request counter name "blocked"
		ip saddr 198.51.100.1 ip daddr 198.51.100.2 icmp type echo-request counter name "natted"
		ip saddr { 10.8.0.0/24, 10.99.0.0/24 } counter name "unnatted"
	}
}
`
)

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{member: testenv.NewNetNS(t), router: testenv.NewNetNS(t), target: testenv.NewNetNS(t)}
	hs := map[netns.NsHandle]*netlink.Handle{}
	for _, ns := range []netns.NsHandle{l.member, l.router, l.target} {
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close) // a handle's sockets would keep the namespace alive
		hs[ns] = h
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	r := hs[l.router]
	must(r.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "r0"}, PeerName: "m0", PeerNamespace: netlink.NsFd(l.member)}))
	must(r.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "w0"}, PeerName: "t0", PeerNamespace: netlink.NsFd(l.target)}))
	addrs := map[netns.NsHandle]map[string][]string{
		l.member: {"m0": {"10.8.0.2/32", "10.99.0.2/32"}}, // like a tunnel: no on-link peers
		l.router: {"r0": {"10.8.0.1/24"}, "w0": {"198.51.100.1/24"}},
		l.target: {"t0": {"198.51.100.2/24", "192.168.77.2/32"}},
	}
	for ns, links := range addrs {
		h := hs[ns]
		lo, err := h.LinkByName("lo")
		must(err)
		must(h.LinkSetUp(lo))
		for name, as := range links {
			link, err := h.LinkByName(name)
			must(err)
			for _, a := range as {
				addr, err := netlink.ParseAddr(a)
				must(err)
				addr.Flags = unix.IFA_F_NODAD
				must(h.AddrAdd(link, addr))
			}
			must(h.LinkSetUp(link))
		}
	}
	route := func(h *netlink.Handle, dev, dst, via string) {
		t.Helper()
		link, err := h.LinkByName(dev)
		must(err)
		_, ipnet, err := net.ParseCIDR(dst)
		must(err)
		must(h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipnet, Gw: net.ParseIP(via)}))
	}
	onlink, err := hs[l.member].LinkByName("m0")
	must(err)
	must(hs[l.member].RouteAdd(&netlink.Route{LinkIndex: onlink.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: net.IP(labGateway.AsSlice()), Mask: net.CIDRMask(32, 32)}}))
	route(hs[l.member], "m0", "0.0.0.0/0", "10.8.0.1")
	route(hs[l.router], "w0", "192.168.77.0/24", "198.51.100.2")
	route(hs[l.target], "t0", "10.8.0.0/24", "198.51.100.1") // only for the WAN → member probe
	testenv.Do(t, l.router, func() {
		for _, kv := range [][2]string{
			{"ipv4/ip_forward", "1"},
			{"ipv4/conf/all/rp_filter", "0"}, // let the spoofed source reach the forward chain
			{"ipv4/conf/r0/rp_filter", "0"},
		} {
			if err := os.WriteFile(filepath.Join("/proc/sys/net", kv[0]), []byte(kv[1]), 0); err != nil {
				t.Errorf("sysctl %s: %v", kv[0], err)
			}
		}
	})
	nftIn(t, int(l.target), probeRuleset, "-f", "-")

	l.cfg = Config{
		Tun: "r0", WAN: "w0",
		Member4: netip.MustParsePrefix("10.8.0.0/24"), Gateway4: labGateway,
		Member6: netip.MustParsePrefix("fd8a:e2d1:5a3c::/64"), Gateway6: netip.MustParseAddr("fd8a:e2d1:5a3c::1"),
		Isolation: true,
	}
	l.m, err = New(Options{NetNS: int(l.router), Logger: testLogger(t)})
	must(err)
	l.probe, err = New(Options{NetNS: int(l.target), Table: "probe"})
	must(err)
	return l
}

// pinger sends ICMP echo requests from a raw socket opened in a namespace.
type pinger struct {
	fd  int
	id  uint16
	seq uint16
}

func newPinger(t *testing.T, ns netns.NsHandle, src netip.Addr) *pinger {
	t.Helper()
	p := &pinger{id: uint16(os.Getpid())}
	testenv.Do(t, ns, func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		if err != nil {
			t.Fatal(err)
		}
		p.fd = fd
	})
	t.Cleanup(func() { unix.Close(p.fd) })
	if src.IsValid() {
		if err := unix.Bind(p.fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			t.Fatal(err)
		}
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return p
}

// send sends one echo request to dst.
func (p *pinger) send(dst netip.Addr) error {
	p.seq++
	pkt := make([]byte, 16)
	pkt[0] = 8 // echo request
	binary.BigEndian.PutUint16(pkt[4:], p.id)
	binary.BigEndian.PutUint16(pkt[6:], p.seq)
	copy(pkt[8:], "exitdnat")
	binary.BigEndian.PutUint16(pkt[2:], icmpChecksum(pkt))
	return unix.Sendto(p.fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
}

// waitReply reads until an echo reply from src arrives (true) or the
// socket's receive timeout passes (false).
func (p *pinger) waitReply(src netip.Addr) bool {
	buf := make([]byte, 1500)
	for {
		n, from, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil {
			return false
		}
		sa, ok := from.(*unix.SockaddrInet4)
		if !ok || netip.AddrFrom4(sa.Addr) != src || n < 28 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n >= ihl+8 && buf[ihl] == 0 && binary.BigEndian.Uint16(buf[ihl+4:]) == p.id {
			return true
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// waitCounter polls m's counter until it reaches min or the deadline passes.
func waitCounter(t *testing.T, m *Manager, name string, min uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, err := m.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if got := cs[name].Packets; got >= min || time.Now().After(deadline) {
			return got
		}
	}
}

func counter(t *testing.T, m *Manager, name string) uint64 {
	t.Helper()
	cs, err := m.Counters()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := cs[name]
	if !ok {
		t.Fatalf("no counter %s in %v", name, cs)
	}
	return c.Packets
}

// TestLabTraffic sends one packet of every kind through the router and
// checks where it went and which counter saw it.
func TestLabTraffic(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	if err := l.m.Apply(l.cfg); err != nil {
		t.Fatal(err)
	}
	member := newPinger(t, l.member, netip.Addr{})

	// Allowed: out of the WAN, masqueraded, and the reply comes back
	// (established state lets it through the drop policy).
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if !member.waitReply(labTarget) {
		t.Fatal("no echo reply from the internet side")
	}
	if got := counter(t, l.probe, "natted"); got != 1 {
		t.Errorf("target saw %d masqueraded requests, want 1", got)
	}
	// The gateway answers echo.
	if err := member.send(labGateway); err != nil {
		t.Fatal(err)
	}
	if !member.waitReply(labGateway) {
		t.Error("no echo reply from the gateway address")
	}

	for _, step := range []struct {
		name    string
		pinger  *pinger
		dst     netip.Addr
		counter string
	}{
		{"blocked destination", member, labBlocked, CounterLeakDrop},
		{"another member", member, labOther, CounterMemberIsolationDrop},
		{"the exit's WAN address", member, labWAN, CounterGatewayInputDrop},
		{"spoofed source", newPinger(t, l.member, labSpoof), labTarget, CounterSpoofDrop},
		{"new flow from the WAN", newPinger(t, l.target, netip.Addr{}), labMember, CounterForwardPolicyDrop},
	} {
		before := counter(t, l.m, step.counter)
		if err := step.pinger.send(step.dst); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := waitCounter(t, l.m, step.counter, before+1); got != before+1 {
			t.Errorf("%s: counter %s went %d → %d, want +1", step.name, step.counter, before, got)
		}
	}
	if got := counter(t, l.probe, "blocked"); got != 0 {
		t.Errorf("target received %d packets for the blocked address", got)
	}
	if got := counter(t, l.probe, "unnatted"); got != 0 {
		t.Errorf("target received %d packets with a member or spoofed source", got)
	}
}

// TestLabReapplyUnderFlood re-applies the ruleset 50 times while the member
// floods a blocked and an allowed destination: not one blocked or un-NATed
// packet may reach the target. In both layouts: the split one replaces
// three tables in the one transaction.
func TestLabReapplyUnderFlood(t *testing.T) {
	testenv.RequireRoot(t)
	for _, layout := range []Layout{LayoutAuto, LayoutSplit} {
		t.Run(layout.String(), func(t *testing.T) { reapplyUnderFlood(t, layout) })
	}
}

func reapplyUnderFlood(t *testing.T, layout Layout) {
	l := newLab(t)
	l.cfg.Layout = layout
	if err := l.m.Apply(l.cfg); err != nil {
		t.Fatal(err)
	}
	member := newPinger(t, l.member, netip.Addr{})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent int
	wg.Go(func() { // the flood: one request each 200µs, alternating
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			dst := labBlocked
			if sent%2 == 1 {
				dst = labTarget
			}
			if member.send(dst) == nil {
				sent++
			}
		}
	})
	cfgs := []Config{l.cfg, l.cfg}
	cfgs[1].Isolation = false // alternate, so every apply is a real change
	for i := range 50 {
		if err := l.m.Apply(cfgs[i%2]); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()

	// The flood got through the router during the re-applies...
	if got := waitCounter(t, l.probe, "natted", 1); got == 0 {
		t.Fatalf("no allowed packet reached the target (%d sent): the test proves nothing", sent)
	}
	blocked, unnatted := counter(t, l.probe, "blocked"), counter(t, l.probe, "unnatted")
	t.Logf("sent %d requests over 50 re-applies; target saw %d natted, %d blocked, %d un-NATed",
		sent, counter(t, l.probe, "natted"), blocked, unnatted)
	if blocked != 0 || unnatted != 0 {
		t.Fatalf("leaked: %d to the blocked address, %d un-NATed", blocked, unnatted)
	}
	// ...and the leak rule is live after the last apply.
	if err := member.send(labBlocked); err != nil {
		t.Fatal(err)
	}
	if got := waitCounter(t, l.m, CounterLeakDrop, 1); got == 0 {
		cs, _ := l.m.Counters()
		pc, _ := l.probe.Counters()
		t.Fatalf("leak_drop did not count after the last apply: router %v, target %v", cs, pc)
	}
}

// TestLabFlushConntrack: after Remove, FlushConntrack deletes the members'
// flows and leaves the others.
func TestLabFlushConntrack(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	if err := l.m.Apply(l.cfg); err != nil {
		t.Fatal(err)
	}
	member := newPinger(t, l.member, netip.Addr{})
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if !member.waitReply(labTarget) {
		t.Fatal("no reply")
	}
	// A flow of the router's own, not a member's.
	router := newPinger(t, l.router, netip.Addr{})
	if err := router.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if !router.waitReply(labTarget) {
		t.Fatal("no reply to the router")
	}
	if err := l.m.Remove(); err != nil {
		t.Fatal(err)
	}
	n, err := FlushConntrack(int(l.router), l.cfg.Member4, l.cfg.Member6)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Fatalf("FlushConntrack deleted %d entries, want the member's flow", n)
	}
	if n, err := FlushConntrack(int(l.router), l.cfg.Member4, l.cfg.Member6); err != nil || n != 0 {
		t.Fatalf("second FlushConntrack = %d, %v; want 0, nil", n, err)
	}
	h, err := netlink.NewHandleAt(l.router)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	var own int
	for _, f := range flows {
		src, _ := netip.AddrFromSlice(f.Forward.SrcIP)
		if l.cfg.Member4.Contains(src.Unmap()) {
			t.Errorf("member flow left: %s", f)
		}
		if src.Unmap() == labWAN {
			own++
		}
	}
	if own == 0 {
		t.Errorf("the router's own flow was deleted too: %v", flows)
	}
	if n, err := FlushConntrack(int(l.router)); err != nil || n != 0 {
		t.Errorf("FlushConntrack without prefixes = %d, %v", n, err)
	}
}
