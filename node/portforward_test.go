package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"exitd/config"
	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/nat"
	"exitd/portforward"
)

// seedForwards saves ms as the port mappings of a previous run in
// state_dir and opens the node's table over them, installing through
// pfInstaller as startPortForward does.
func seedForwards(t *testing.T, n *Node, ms ...portforward.Mapping) *portforward.Table {
	t.Helper()
	path := filepath.Join(n.config().StateDir, portForwardFile)
	if err := portforward.NewFileStore(path).Save(ms); err != nil {
		t.Fatal(err)
	}
	tb, err := portforward.NewTable(portforward.TableOptions{FirstPort: 61000, LastPort: 64999, Now: n.now},
		pfInstaller{n}, portforward.NewFileStore(path))
	if err != nil {
		t.Fatal(err)
	}
	n.pfTable = tb
	return tb
}

// mapping is a mapping of member m's internal port to external, valid for
// an hour from the node's now.
func mapping(n *Node, member string, addr netip.Addr, proto portforward.Proto, internal, external uint16) portforward.Mapping {
	return portforward.Mapping{Member: member, Proto: proto, Internal: netip.AddrPortFrom(addr, internal),
		External: external, Expires: n.now().Add(time.Hour)}
}

// members of a table, sorted.
func tableMembers(tb *portforward.Table) []string {
	var out []string
	for _, m := range tb.List() {
		if !slices.Contains(out, m.Member) {
			out = append(out, m.Member)
		}
	}
	slices.Sort(out)
	return out
}

// TestPfInstallerMapsMappings: each mapping becomes a DNAT of its
// protocol's external port to the member's address and port, on the WAN.
func TestPfInstallerMapsMappings(t *testing.T) {
	n, f, _, _ := quotaNode(t)
	a, b := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3")
	err := pfInstaller{n}.Apply([]portforward.Mapping{
		mapping(n, "alice", a, portforward.UDP, 5000, 61000),
		mapping(n, "alice", a, portforward.TCP, 22, 61001),
		mapping(n, "bob", b, portforward.TCP, 8080, 64999),
	})
	if err != nil {
		t.Fatal(err)
	}
	hist, wans, _ := f.forwardHistory()
	want := []nat.Forward{
		{Proto: unix.IPPROTO_UDP, Port: 61000, To: netip.AddrPortFrom(a, 5000)},
		{Proto: unix.IPPROTO_TCP, Port: 61001, To: netip.AddrPortFrom(a, 22)},
		{Proto: unix.IPPROTO_TCP, Port: 64999, To: netip.AddrPortFrom(b, 8080)},
	}
	if len(hist) != 1 || !slices.Equal(hist[0], want) || wans[0] != "eth0" {
		t.Fatalf("installed %+v on %v; want %+v on eth0", hist, wans, want)
	}
	// Empty: the table is emptied, not left as it was.
	if err := (pfInstaller{n}).Apply(nil); err != nil {
		t.Fatal(err)
	}
	if calls, last := f.forwardCalls(); calls != 2 || len(last) != 0 {
		t.Fatalf("empty set: %d calls, last %v", calls, last)
	}
	// The nat side's error is the Table's to handle.
	f.set(func(f *recNAT) { f.failFwd = errors.New("injected: netlink busy") })
	if err := (pfInstaller{n}).Apply(nil); err == nil || !strings.Contains(err.Error(), "netlink busy") {
		t.Fatalf("error lost: %v", err)
	}
}

// TestForgetForwards: a member's mappings go, the others stay; unknown
// members and a node without port forwarding change nothing.
func TestForgetForwards(t *testing.T) {
	n, f, _, _ := quotaNode(t)
	n.forgetForwards("alice") // off: no table, nothing to do
	if calls, _ := f.forwardCalls(); calls != 0 {
		t.Fatal("no table, yet forwards were applied")
	}
	ms := addLabels(t, n, "alice", "bob")
	tb := seedForwards(t, n,
		mapping(n, ms[0].PublicKey, ms[0].IPv4, portforward.UDP, 5000, 61000),
		mapping(n, ms[0].PublicKey, ms[0].IPv4, portforward.TCP, 5000, 61000),
		mapping(n, ms[1].PublicKey, ms[1].IPv4, portforward.UDP, 7000, 62000))
	if calls, last := f.forwardCalls(); calls != 1 || len(last) != 3 {
		t.Fatalf("restore installed %d forwards in %d calls", len(last), calls)
	}
	n.forgetForwards("nobody")
	if calls, _ := f.forwardCalls(); calls != 1 {
		t.Fatal("forgetting a member without mappings applied the table")
	}
	n.forgetForwards(ms[0].PublicKey)
	calls, last := f.forwardCalls()
	if calls != 2 || len(last) != 1 || last[0].To != netip.AddrPortFrom(ms[1].IPv4, 7000) || last[0].Port != 62000 {
		t.Fatalf("after forgetting alice: %d calls, %+v", calls, last)
	}
	if got := tableMembers(tb); !slices.Equal(got, []string{ms[1].PublicKey}) {
		t.Fatalf("table holds %v", got)
	}
	// The removal stands when the nat side refuses; the table retries.
	f.set(func(f *recNAT) { f.failFwd = errors.New("injected") })
	n.forgetForwards(ms[1].PublicKey)
	if tb.Len() != 0 {
		t.Fatal("a refused Apply kept the mappings")
	}
	f.set(func(f *recNAT) { f.failFwd = nil })
	if err := tb.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, last := f.forwardCalls(); len(last) != 0 {
		t.Fatalf("retry installed %v, want none", last)
	}
}

// TestDisableAndRemoveDropForwards: disabling a member drops its port
// forwards and cuts its flows; enabling brings neither back; removing
// drops the rest.
func TestDisableAndRemoveDropForwards(t *testing.T) {
	n, f, cuts, _ := quotaNode(t)
	b := backend{n}
	ctx := context.Background()
	ms := addLabels(t, n, "alice", "bob")
	tb := seedForwards(t, n,
		mapping(n, ms[0].PublicKey, ms[0].IPv4, portforward.UDP, 5000, 61000),
		mapping(n, ms[0].PublicKey, ms[0].IPv4, portforward.TCP, 22, 61001),
		mapping(n, ms[1].PublicKey, ms[1].IPv4, portforward.UDP, 7000, 62000))
	off, on, w := true, false, 3
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	if got := tableMembers(tb); !slices.Equal(got, []string{ms[1].PublicKey}) {
		t.Fatalf("after disabling alice the table holds %v", got)
	}
	if _, last := f.forwardCalls(); len(last) != 1 || last[0].Port != 62000 {
		t.Fatalf("installed after disable: %+v", last)
	}
	if g := cuts.take(); g != prefixText(ms[0]) {
		t.Fatalf("disable cut %q", g)
	}
	// Policy changes of bob that keep him enabled leave the forwards alone.
	calls, _ := f.forwardCalls()
	for _, req := range []control.UpdateMemberRequest{{Disabled: &on}, {Weight: &w}} {
		if _, err := b.UpdateMember(ctx, "bob", req); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := f.forwardCalls(); c != calls || tb.Len() != 1 {
		t.Fatalf("enable or weight touched the forwards (%d calls, %d mappings)", c-calls, tb.Len())
	}
	if _, err := b.UpdateMember(ctx, "bob", control.UpdateMemberRequest{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 0 {
		t.Fatalf("disabling bob left %v", tb.List())
	}
	cuts.take()
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &on}); err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 0 || cuts.take() != "" {
		t.Fatal("enabling restored mappings or cut flows")
	}
	if _, err := b.RemoveMembers(ctx, []string{"alice", "bob"}); err != nil {
		t.Fatal(err)
	}
	if g := cuts.take(); !strings.Contains(g, ms[0].IPv4.String()) || !strings.Contains(g, ms[1].IPv6.String()) {
		t.Fatalf("removal cut %q", g)
	}
}

// TestPortForwardStatusSummary: NAT-PMP's status line counts mappings,
// requests by kind, answers (refusals apart) and datagrams from sources
// that are not members; nil when port forwarding is off.
func TestPortForwardStatusSummary(t *testing.T) {
	n, _, _, _ := quotaNode(t)
	if n.portForwardStatus() != nil {
		t.Fatal("status line while port forwarding is off")
	}
	tb := seedForwards(t, n)
	member := netip.MustParseAddr("127.0.0.1")
	s, err := portforward.NewServer(tb, portforward.ServerOptions{
		Identify: func(a netip.Addr) (string, bool) { return "alice", a == member },
		Now:      n.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	n.pf = s
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()

	// From outside the membership first: dropped, unanswered.
	stranger := dialFrom(t, netip.MustParseAddr("127.0.0.2"), to)
	send(t, stranger, portforward.Request{Op: portforward.OpPublicAddress})
	c := dialFrom(t, member, to)
	if r := exchange(t, c, portforward.Request{Op: portforward.OpMapUDP, InternalPort: 5000, SuggestedPort: 61500, Lifetime: 60}); r.Result != portforward.ResultSuccess || r.ExternalPort != 61500 {
		t.Fatalf("map: %+v", r)
	}
	if r := exchange(t, c, portforward.Request{Op: portforward.OpPublicAddress}); r.Result != portforward.ResultNetworkFailure {
		t.Fatalf("public address without one: %+v", r)
	}
	waitFor(t, "the stranger's datagram counted", func() bool { return s.Stats().DroppedForeign == 1 })
	st := n.portForwardStatus()
	const want = "1 mappings; requests: 1 map, 1 address, 2 answered (1 refused), 1 from outside dropped"
	if st == nil || st.Summary != want {
		t.Fatalf("summary %+v, want %q", st, want)
	}
	if !slices.Equal(st.Listen, []string{"10.99.0.1:5351"}) {
		t.Fatalf("listen %v, want the IPv4 gateway", st.Listen)
	}
	if full, _ := (backend{n}).Status(context.Background()); full.PortForward == nil || full.PortForward.Summary != want {
		t.Fatalf("status: %+v", full.PortForward)
	}
}

// dialFrom is a UDP socket from address from (any of 127/8 on Linux) to
// to.
func dialFrom(t *testing.T, from netip.Addr, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatalf("socket from %v: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *net.UDPConn, r portforward.Request) {
	t.Helper()
	if _, err := c.Write(portforward.AppendRequest(nil, r)); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits (≤ 10 s) until cond holds: datagrams sent from other
// sockets may reach the server after a later answered one when the
// kernel defers their delivery to another CPU.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: not %s", what)
		}
		runtime.Gosched()
	}
}

// exchange sends r and waits (≤ 10 s) for the answer.
func exchange(t *testing.T, c *net.UDPConn, r portforward.Request) portforward.Response {
	t.Helper()
	send(t, c, r)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	k, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to %+v: %v", r, err)
	}
	resp, err := portforward.ParseResponse(buf[:k])
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestWanAddr4(t *testing.T) {
	if a := wanAddr4("nonexistent0"); a.IsValid() {
		t.Fatalf("an interface that does not exist has %v", a)
	}
	if a := wanAddr4("lo"); a.IsValid() {
		t.Fatalf("lo has no global address, got %v", a)
	}
}

// loopbackPFNode is a node whose member IPv4 prefix is a /24 of 127/8, so
// its NAT-PMP gateway address (.1) and its members' addresses exist
// without root or a TUN: startPortForward runs for real. The WAN is an
// interface that does not exist (no public address).
func loopbackPFNode(t *testing.T) (*Node, *recNAT, netip.Prefix) {
	t.Helper()
	var p netip.Prefix
	for range 20 { // a /24 nobody else serves NAT-PMP on
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(100)), byte(1 + rand.IntN(254)), 0}), 24)
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Addr().Next(), portforward.ServerPort)))
		if err == nil {
			c.Close()
			break
		}
	}
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf("[tunnel]\nipv4 = %q\nipv6 = \"fd00:99::/64\"\n[wan]\ninterface = \"nonexist0\"\n[portforward]\nenabled = true\n", p)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = t.TempDir()
	clock := &manualClock{}
	clock.set(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	n := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: clock.now})
	reg, err := members.Open(filepath.Join(t.TempDir(), "members.db"), members.Options{Prefix4: cfg.Tunnel.Prefix4, Prefix6: cfg.Tunnel.Prefix6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	n.priv, _ = keys.Generate(nil)
	n.reg = reg
	n.plane = testPlane(t, cfg, n.priv, clock.now)
	f := newRecNAT()
	n.nat = f
	n.flushCT = (&cutRecorder{}).flush
	n.countCT = func([]netip.Prefix) (map[netip.Addr]int, error) { return nil, nil }
	n.linkSpeed = func(string) (uint64, bool) { return 0, false }
	return n, f, p
}

// hostAt is the i-th address of p.
func hostAt(p netip.Prefix, i int) netip.Addr {
	a := p.Addr()
	for range i {
		a = a.Next()
	}
	return a
}

// TestStartPortForwardServesMembers: at start the mappings of members
// removed or disabled while exitd was down go, the rest are installed;
// enabled members get mappings over NAT-PMP on the gateway address,
// anybody else is not answered; disabling a member drops its mappings;
// the stop removes the port-forward table.
func TestStartPortForwardServesMembers(t *testing.T) {
	n, f, p := loopbackPFNode(t)
	ms, err := n.reg.AddBatch([]members.AddRequest{{Label: "alice"}, {Label: "bob"}, {Label: "carol", Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol := ms[0], ms[1], ms[2]
	ghost, _ := keys.Generate(nil)
	path := filepath.Join(n.config().StateDir, portForwardFile)
	exp := n.now().Add(time.Hour)
	if err := portforward.NewFileStore(path).Save([]portforward.Mapping{
		{Member: alice.PublicKey.String(), Proto: portforward.UDP, Internal: netip.AddrPortFrom(alice.IPv4, 5000), External: 61000, Expires: exp},
		{Member: carol.PublicKey.String(), Proto: portforward.TCP, Internal: netip.AddrPortFrom(carol.IPv4, 22), External: 61001, Expires: exp},
		{Member: ghost.Public().String(), Proto: portforward.UDP, Internal: netip.AddrPortFrom(hostAt(p, 5), 7), External: 61002, Expires: exp},
	}); err != nil {
		t.Fatal(err)
	}

	stop, err := n.startPortForward()
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	if n.pf == nil || n.pfTable == nil {
		t.Fatal("port forwarding not set up")
	}
	if got := tableMembers(n.pfTable); !slices.Equal(got, []string{alice.PublicKey.String()}) {
		t.Fatalf("after start the table holds %v, want alice's only", got)
	}
	hist, wans, _ := f.forwardHistory()
	if last := hist[len(hist)-1]; len(hist) < 2 || len(hist[0]) != 3 || len(last) != 1 || last[0].To != netip.AddrPortFrom(alice.IPv4, 5000) || wans[0] != "nonexist0" {
		t.Fatalf("installed %v", hist)
	}

	gw := netip.AddrPortFrom(p.Addr().Next(), portforward.ServerPort)
	// Not members (a free address) and disabled members: unanswered.
	for _, from := range []netip.Addr{hostAt(p, 6), carol.IPv4} {
		c := dialFrom(t, from, gw)
		send(t, c, portforward.Request{Op: portforward.OpMapTCP, InternalPort: 22, Lifetime: 60})
	}
	ca := dialFrom(t, alice.IPv4, gw)
	r := exchange(t, ca, portforward.Request{Op: portforward.OpMapTCP, InternalPort: 8080, SuggestedPort: 62000, Lifetime: 3600})
	if r.Result != portforward.ResultSuccess || r.ExternalPort != 62000 || r.Lifetime != 3600 {
		t.Fatalf("alice's mapping: %+v", r)
	}
	if _, last := f.forwardCalls(); !slices.Contains(last, nat.Forward{Proto: unix.IPPROTO_TCP, Port: 62000, To: netip.AddrPortFrom(alice.IPv4, 8080)}) {
		t.Fatalf("mapping not installed: %+v", last)
	}
	if r := exchange(t, ca, portforward.Request{Op: portforward.OpPublicAddress}); r.Result != portforward.ResultNetworkFailure {
		t.Fatalf("the WAN has no address, yet: %+v", r)
	}
	waitFor(t, "the unanswered datagrams counted", func() bool { return n.pf.Stats().DroppedForeign == 2 })
	want := "2 mappings; requests: 1 map, 1 address, 2 answered (1 refused), 2 from outside dropped"
	if st := n.portForwardStatus(); st == nil || st.Summary != want || st.Listen[0] != gw.String() {
		t.Fatalf("status %+v, want %q on %s", st, want, gw)
	}

	// Disabled: alice's mappings go, and she is no longer answered.
	off := true
	if _, err := (backend{n}).UpdateMember(context.Background(), "alice", control.UpdateMemberRequest{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	if _, last := f.forwardCalls(); n.pfTable.Len() != 0 || len(last) != 0 {
		t.Fatalf("after disabling alice: %d mappings, installed %v", n.pfTable.Len(), last)
	}
	send(t, ca, portforward.Request{Op: portforward.OpMapUDP, InternalPort: 1, Lifetime: 60})
	cb := dialFrom(t, bob.IPv4, gw)
	if r := exchange(t, cb, portforward.Request{Op: portforward.OpPublicAddress}); r.Result != portforward.ResultNetworkFailure {
		t.Fatalf("bob: %+v", r)
	}
	waitFor(t, "3 datagrams dropped (a stranger, carol, alice disabled)", func() bool { return n.pf.Stats().DroppedForeign == 3 })

	stop()
	stopped = true
	if _, _, removals := f.forwardHistory(); removals != 1 {
		t.Fatalf("stop removed the port-forward table %d times", removals)
	}
	saved, err := portforward.NewFileStore(path).Load()
	if err != nil || len(saved) != 0 {
		t.Fatalf("state after stop: %v %v", saved, err)
	}
}

// TestStartPortForwardOffAndBadState: off, nothing starts; a state file
// that cannot be read fails the start with an error naming the file.
func TestStartPortForwardOffAndBadState(t *testing.T) {
	n, f, _, _ := quotaNode(t)
	if stop, err := n.startPortForward(); stop != nil || err != nil || n.pf != nil {
		t.Fatalf("off: %v %v", stop != nil, err)
	}
	n2, f2, _ := loopbackPFNode(t)
	path := filepath.Join(n2.config().StateDir, portForwardFile)
	os.WriteFile(path, []byte("{not json"), 0o600)
	stop, err := n2.startPortForward()
	if err == nil || stop != nil || !strings.HasPrefix(err.Error(), "portforward: ") || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad state: %v", err)
	}
	if n2.pf != nil || n2.pfTable != nil {
		t.Fatal("a failed start left port forwarding set up")
	}
	if calls, _ := f2.forwardCalls(); calls != 0 {
		t.Fatal("forwards installed from an unreadable state")
	}
	if calls, _ := f.forwardCalls(); calls != 0 {
		t.Fatal("forwards installed while off")
	}
}
