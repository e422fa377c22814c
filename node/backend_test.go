package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"exitd/config"
	"exitd/control"
	"exitd/dataplane"
	"exitd/keys"
	"exitd/members"
)

// testPlane is a data plane over a channel TUN and bind: a real
// wireguard-go device and scheduler, no root, no kernel.
func testPlane(t testing.TB, cfg *config.Config, priv keys.Key, now func() time.Time) *dataplane.Plane {
	t.Helper()
	n := &Node{linkSpeed: func(string) (uint64, bool) { return 0, false }}
	p, err := dataplane.Open(n.planeConfig(cfg, priv), dataplane.Options{
		Logger: slog.New(slog.DiscardHandler), Now: now,
		Device: tuntest.NewChannelTUN().TUN(), Bind: bindtest.NewChannelBinds()[0], NoUAPI: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// testNode is a Node with a registry and a data plane over channel
// devices: what the control backend drives.
func testNode(t testing.TB, quarantine time.Duration) *Node {
	t.Helper()
	n, _ := testNodeClock(t, quarantine)
	return n
}

// testNodeClock is testNode with the clock node and plane share: real
// time until the test sets it.
func testNodeClock(t testing.TB, quarantine time.Duration) (*Node, *manualClock) {
	t.Helper()
	priv, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("t.toml", []byte("[tunnel]\nipv4 = \"10.99.0.0/16\"\nipv6 = \"fd00:99::/64\"\n[wan]\ninterface = \"eth0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = t.TempDir()
	clock := &manualClock{}
	n := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: clock.now})
	n.priv = priv
	reg, err := members.Open(filepath.Join(t.TempDir(), "members.db"), members.Options{
		Prefix4: cfg.Tunnel.Prefix4, Prefix6: cfg.Tunnel.Prefix6, Quarantine: quarantine,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	n.reg = reg
	n.plane = testPlane(t, cfg, priv, clock.now)
	n.flushCT = func(...netip.Prefix) (int, error) { return 0, nil } // never the host's conntrack
	return n, clock
}

// manualClock is a clock tests move by hand, real time until set; safe
// for concurrent readers (the scheduler reads it).
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *manualClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// devicePeers is the set of public keys in the device.
func devicePeers(t testing.TB, n *Node) map[keys.Key]dataplane.PeerStats {
	t.Helper()
	out, err := n.plane.Dump()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackendBatchAddRemove(t *testing.T) {
	n := testNode(t, time.Hour)
	b := backend{n}
	ctx := context.Background()
	var reqs []control.AddMemberRequest
	for i := range 1500 {
		reqs = append(reqs, control.AddMemberRequest{Label: fmt.Sprintf("m%04d", i)})
	}
	reqs[7].Disabled = true
	start := time.Now()
	ms, err := b.AddMembers(ctx, control.AddMembersRequest{Members: reqs})
	if err != nil || len(ms) != 1500 {
		t.Fatalf("%d %v", len(ms), err)
	}
	t.Logf("1,500 members added in %v", time.Since(start))
	if ms[0].Config != "" {
		t.Fatal("config without asking")
	}
	dev := devicePeers(t, n)
	if len(dev) != 1499 {
		t.Fatalf("device has %d peers, want 1499 (one disabled)", len(dev))
	}
	for _, m := range ms {
		k, _ := keys.Parse(m.PublicKey)
		if _, ok := dev[k]; ok == m.Disabled {
			t.Fatalf("%s: in device %v, disabled %v", m.Label, ok, m.Disabled)
		}
	}
	// A failing batch changes nothing.
	if _, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "new"}, {Label: "m0001"}}}); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	if n.reg.Len() != 1500 || len(devicePeers(t, n)) != 1499 {
		t.Fatal("failed batch changed registry or device")
	}
	gone, err := b.RemoveMembers(ctx, []string{"m0000", "m0007", ms[9].PublicKey})
	if err != nil || len(gone) != 3 {
		t.Fatalf("%v %v", gone, err)
	}
	dev = devicePeers(t, n)
	if len(dev) != 1497 || n.reg.Len() != 1497 {
		t.Fatalf("after removal: device %d registry %d", len(dev), n.reg.Len())
	}
	k0, _ := keys.Parse(ms[0].PublicKey)
	if _, ok := dev[k0]; ok {
		t.Fatal("removed member still in the device")
	}
}

func TestBackendSingleAddConfigAndOwnKey(t *testing.T) {
	n := testNode(t, time.Hour)
	b := backend{n}
	ctx := context.Background()
	ms, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "alice"}}, Configs: true})
	if err != nil || ms[0].Config == "" || ms[0].IPv4 != netip.MustParseAddr("10.99.0.2") {
		t.Fatalf("%+v %v", ms, err)
	}
	m, err := b.Member(ctx, "alice")
	if err != nil || m.Config == "" {
		t.Fatalf("node-generated key not shown again: %+v %v", m, err)
	}
	_, err = b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "me", PublicKey: n.priv.Public().String()}}})
	if !errors.Is(err, control.ErrConflict) {
		t.Fatalf("node's own key: %v", err)
	}
	for _, bad := range []control.AddMemberRequest{
		{Label: "x", IPv4: "fd00:99::5"}, {Label: "x", IPv6: "10.99.0.5"}, {Label: "x", IPv4: "nope"}, {Label: "x", PublicKey: "short"},
	} {
		if _, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{bad}}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	ms, err = b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "bob", IPv6: "fd00:99::40"}}})
	if err != nil || ms[0].IPv4 != netip.MustParseAddr("10.99.0.64") {
		t.Fatalf("requested IPv6: %+v %v", ms, err)
	}
}

func TestBackendDisableEnableWeight(t *testing.T) {
	n := testNode(t, time.Hour)
	b := backend{n}
	ctx := context.Background()
	ms, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "alice"}, {Label: "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := keys.Parse(ms[0].PublicKey)
	on, off, w, lim := false, true, 9, uint64(5e6)
	m, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &off})
	if err != nil || !m.Disabled {
		t.Fatalf("%+v %v", m, err)
	}
	if _, ok := devicePeers(t, n)[ka]; ok {
		t.Fatal("disabled member still in the device")
	}
	reg, _ := n.reg.Get("alice")
	if !reg.Disabled || reg.IPv4 != ms[0].IPv4 {
		t.Fatalf("registry after disable: %+v", reg)
	}
	// Another member taking alice's address while she is disabled is impossible.
	c, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "carol", IPv4: ms[0].IPv4.String()}}})
	if !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("disabled member's address handed out: %+v %v", c, err)
	}
	// Disabling twice is fine; weight and limits change while disabled.
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &off, Weight: &w, EgressLimit: &lim}); err != nil {
		t.Fatal(err)
	}
	m, err = b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &on})
	if err != nil || m.Disabled || m.Weight != 9 || m.EgressLimit != 5e6 || !m.LimitsEnforced {
		t.Fatalf("%+v %v", m, err)
	}
	dev := devicePeers(t, n)
	if _, ok := dev[ka]; !ok || len(dev) != 2 {
		t.Fatalf("enabled member not back in the device (%d peers)", len(dev))
	}
	bad := 65
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Weight: &bad}); !errors.Is(err, members.ErrInvalidPolicy) {
		t.Fatalf("weight 65: %v", err)
	}
	if _, err := b.UpdateMember(ctx, "nobody", control.UpdateMemberRequest{Weight: &w}); !errors.Is(err, members.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	// Removing a disabled member works and leaves the device alone.
	if _, err := b.UpdateMember(ctx, "bob", control.UpdateMemberRequest{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RemoveMembers(ctx, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if len(devicePeers(t, n)) != 1 || n.reg.Len() != 1 {
		t.Fatal("after removing disabled bob")
	}
}

// TestReconcileAtStart: after a crash the device may lack acknowledged
// members or hold removed ones; syncPeers makes it equal to the registry's
// enabled members without touching the others.
func TestReconcileAtStart(t *testing.T) {
	n := testNode(t, time.Hour)
	var reqs []members.AddRequest
	for i := range 300 {
		reqs = append(reqs, members.AddRequest{Label: fmt.Sprintf("m%03d", i), Disabled: i%100 == 0})
	}
	ms, err := n.reg.AddBatch(reqs) // committed, never reached the device
	if err != nil {
		t.Fatal(err)
	}
	stray, _ := keys.Generate(nil)
	if err := n.plane.Add([]members.Member{{ID: 99999, PublicKey: stray.Public()}, ms[1]}); err != nil {
		t.Fatal(err)
	}
	if err := n.plane.Sync(n.reg.List()); err != nil {
		t.Fatal(err)
	}
	dev := devicePeers(t, n)
	if len(dev) != 297 {
		t.Fatalf("device has %d peers, want 297", len(dev))
	}
	if _, ok := dev[stray.Public()]; ok {
		t.Fatal("peer unknown to the registry survived")
	}
	for _, m := range ms {
		if _, ok := dev[m.PublicKey]; ok == m.Disabled {
			t.Fatalf("%s: in device %v, disabled %v", m.Label, ok, m.Disabled)
		}
	}
}

func TestBackendListQueryAndStatsCache(t *testing.T) {
	n, clock := testNodeClock(t, time.Hour)
	clock.set(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC))
	b := backend{n}
	ctx := context.Background()
	var reqs []control.AddMemberRequest
	for i := range 40 {
		reqs = append(reqs, control.AddMemberRequest{Label: fmt.Sprintf("m%02d", i), Disabled: i >= 30})
	}
	if _, err := b.AddMembers(ctx, control.AddMembersRequest{Members: reqs}); err != nil {
		t.Fatal(err)
	}
	page, total, err := b.Members(ctx, control.ListQuery{State: "disabled", Sort: "-label", Limit: 3})
	if err != nil || total != 10 || len(page) != 3 || page[0].Label != "m39" {
		t.Fatalf("%d %d %v", total, len(page), err)
	}
	// The dump is shared for statsMaxAge: a member added meanwhile shows
	// up in the next one.
	first := n.plane.Sample()
	if len(first.Cur) != 30 {
		t.Fatalf("sample has %d peers", len(first.Cur))
	}
	if _, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "late"}}}); err != nil {
		t.Fatal(err)
	}
	if s := n.plane.Sample(); len(s.Cur) != 30 {
		t.Fatalf("dump not shared: %d peers", len(s.Cur))
	}
	clock.add(100 * time.Millisecond) // dataplane's statsMaxAge
	s := n.plane.Sample()
	if len(s.Cur) != 31 {
		t.Fatalf("dump not refreshed: %d peers", len(s.Cur))
	}
	// Rates span at least rateWindow when samples come often, and move on
	// when the older dump gets stale.
	steps := []struct {
		advance time.Duration
		prevAge time.Duration // of the older dump after sampling
	}{
		{500 * time.Millisecond, 600 * time.Millisecond},
		{500 * time.Millisecond, 1100 * time.Millisecond},
		{2 * time.Second, 2 * time.Second},
		{300 * time.Millisecond, 2300 * time.Millisecond},
		{900 * time.Millisecond, 900 * time.Millisecond}, // older dump 3.2 s old: the last one moves up
		{200 * time.Millisecond, 1100 * time.Millisecond},
	}
	for i, st := range steps {
		clock.add(st.advance)
		s := n.plane.Sample()
		if got := s.At.Sub(s.PrevAt); got != st.prevAge {
			t.Fatalf("step %d: rate window %v, want %v", i, got, st.prevAge)
		}
	}
}

// BenchmarkBackend20k adds 20,000 members in batches of 1,000 (keys made
// by the caller, as exitctl does), then lists them with live stats:
// go test -run '^$' -bench Backend20k -benchtime 1x ./node/
func BenchmarkBackend20k(b *testing.B) {
	const total, chunk = 20000, 1000
	reqs := make([]control.AddMemberRequest, total)
	for i := range reqs {
		k, _ := keys.Generate(nil)
		reqs[i] = control.AddMemberRequest{Label: fmt.Sprintf("m%05d", i), PublicKey: k.Public().String()}
	}
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		n := testNode(b, time.Hour)
		bk := backend{n}
		b.StartTimer()
		start := time.Now()
		for i := 0; i < total; i += chunk {
			if _, err := bk.AddMembers(ctx, control.AddMembersRequest{Members: reqs[i : i+chunk]}); err != nil {
				b.Fatal(err)
			}
		}
		added := time.Since(start)
		start = time.Now()
		page, _, err := bk.Members(ctx, control.ListQuery{Sort: "-rx"})
		if err != nil || len(page) != total {
			b.Fatal(len(page), err)
		}
		listed := time.Since(start)
		start = time.Now()
		if _, err := n.plane.Dump(); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/total/1024, "KiB-heap/member")
		b.ReportMetric(float64(ms.StackInuse)/total/1024, "KiB-stack/member")
		b.ReportMetric(added.Seconds(), "s/add20k")
		b.ReportMetric(listed.Seconds(), "s/list20k")
		b.ReportMetric(time.Since(start).Seconds(), "s/dump20k")
	}
}

// TestRevokedMembersConntrackFlushed: removing or disabling a member
// flushes its flows' conntrack entries, both families; enabling or a
// weight change does not.
func TestRevokedMembersConntrackFlushed(t *testing.T) {
	n := testNode(t, 0) // no quarantine: a freed address can be asked for again
	var flushed []netip.Prefix
	n.flushCT = func(ps ...netip.Prefix) (int, error) { flushed = append(flushed, ps...); return len(ps), nil }
	b := backend{n}
	ctx := context.Background()
	ms, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "alice"}, {Label: "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := func(m control.Member) string {
		return netip.PrefixFrom(m.IPv4, 32).String() + " " + netip.PrefixFrom(m.IPv6, 128).String()
	}
	got := func() string {
		var s []string
		for _, p := range flushed {
			s = append(s, p.String())
		}
		flushed = nil
		return strings.Join(s, " ")
	}
	if g := got(); g != "" {
		t.Fatalf("adding members on fresh addresses flushed %q", g)
	}
	off, on, w := true, false, 5
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	if g := got(); g != want(ms[0]) {
		t.Fatalf("disable flushed %q, want %q", g, want(ms[0]))
	}
	for _, req := range []control.UpdateMemberRequest{{Disabled: &on}, {Weight: &w}} {
		if _, err := b.UpdateMember(ctx, "alice", req); err != nil {
			t.Fatal(err)
		}
	}
	if g := got(); g != "" {
		t.Fatalf("enable/weight flushed %q", g)
	}
	if _, err := b.RemoveMembers(ctx, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if g := got(); g != want(ms[1]) {
		t.Fatalf("remove flushed %q, want %q", g, want(ms[1]))
	}
	// Bob's address handed to carol: its tracked flows go before carol is
	// in the device.
	if _, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "carol", IPv4: ms[1].IPv4.String()}}}); err != nil {
		t.Fatal(err)
	}
	if g := got(); g != want(ms[1]) {
		t.Fatalf("reusing an address flushed %q, want %q", g, want(ms[1]))
	}
}

func TestQuarantineFor(t *testing.T) {
	for _, tc := range []struct{ configured, ct, want time.Duration }{
		{24 * time.Hour, 0, 24 * time.Hour},                         // unknown: as configured
		{24 * time.Hour, 24 * time.Hour, 25 * time.Hour},            // equal is not enough
		{24 * time.Hour, 120 * time.Hour, 121 * time.Hour},          // the kernel default 5 days
		{30 * 24 * time.Hour, 120 * time.Hour, 30 * 24 * time.Hour}, // longer already
	} {
		if got := quarantineFor(tc.configured, tc.ct); got != tc.want {
			t.Errorf("quarantineFor(%v, %v) = %v, want %v", tc.configured, tc.ct, got, tc.want)
		}
	}
}

// TestCutsCoalesce: while the node runs, revocations queued together are
// flushed in one conntrack dump, and everything queued is flushed by the
// time routineCut stops.
func TestCutsCoalesce(t *testing.T) {
	n := testNode(t, time.Hour)
	flushes := make(chan []netip.Prefix, 16)
	n.flushCT = func(ps ...netip.Prefix) (int, error) { flushes <- ps; return 0, nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.routineCut(ctx); close(done) }()
	for !n.cutting.Load() {
		runtime.Gosched()
	}
	ms := make([]members.Member, 10)
	for i := range ms {
		ms[i] = members.Member{IPv4: netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 2)}), IPv6: netip.MustParseAddr(fmt.Sprintf("fd00:99::%x", i+2))}
		n.cutMembers(ms[i : i+1])
	}
	got := 0
	calls := 0
	timeout := time.After(10 * time.Second)
	for got < 20 {
		select {
		case ps := <-flushes:
			got += len(ps)
			calls++
		case <-timeout:
			t.Fatalf("flushed %d of 20 prefixes", got)
		}
	}
	if calls > 2 {
		t.Errorf("10 revocations cost %d conntrack flushes, want them coalesced", calls)
	}
	n.cutMembers(ms[:3]) // queued just before the stop: still flushed
	cancel()
	<-done
	select {
	case ps := <-flushes:
		if len(ps) != 6 {
			t.Fatalf("last flush %v", ps)
		}
	default:
		t.Fatal("prefixes queued before the stop were not flushed")
	}
}
