package node

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/control"
	"exitd/dataplane"
	"exitd/keys"
	"exitd/members"
	"exitd/metrics"
	"exitd/nat"
	"exitd/observability"
	"exitd/report"
	"exitd/tuning"
)

func TestSojournBucketsMatchScheduler(t *testing.T) {
	if n := dataplane.SojournBuckets; n != metrics.SojournBuckets {
		t.Fatalf("sched has %d histogram buckets, metrics.SojournBuckets is %d", n, metrics.SojournBuckets)
	}
	b := sojournBounds()
	if b[0] != dataplane.HistogramBound(0) || b[len(b)-1] != dataplane.HistogramBound(len(b)-1) {
		t.Fatal("bounds differ from the scheduler's")
	}
}

func TestNATReasonsCoverCounters(t *testing.T) {
	want := map[string]string{nat.CounterSpoofDrop: "spoof", nat.CounterLeakDrop: "leak",
		nat.CounterMemberIsolationDrop: "isolation", nat.CounterGatewayInputDrop: "input",
		nat.CounterForwardPolicyDrop: "forward_policy", "something_new": "something_new"}
	for counter, reason := range want {
		if got := natReason(counter); got != reason {
			t.Errorf("natReason(%s) = %q, want %q", counter, got, reason)
		}
	}
}

func TestKernelProfileCounts(t *testing.T) {
	r := &tuning.Report{At: time.Unix(5, 0), Results: []tuning.Result{
		{Key: "a", Status: tuning.StatusOK}, {Key: "b", Status: tuning.StatusOK},
		{Key: "c", Status: tuning.StatusDrift, Critical: true, Safe: false},
		{Key: "d", Status: tuning.StatusAbsent, Optional: true},
	}}
	p := kernelProfile(r)
	if p.Keys["ok"] != 2 || p.Keys["drift"] != 1 || p.Keys["absent"] != 1 || p.CriticalFailures != 1 || !p.At.Equal(r.At) ||
		len(p.Drift) != 2 || !strings.HasPrefix(p.Drift[0], "c=") {
		t.Fatalf("%+v", p)
	}
}

// metricsTestNode is a node with a registry and a data plane over channel
// devices: enough for the member source, without root.
func metricsTestNode(t *testing.T, nMembers int) (*Node, []members.Member) {
	t.Helper()
	cfg := mustConfig(t, "")
	reg, err := members.Open(filepath.Join(t.TempDir(), "members.db"), members.Options{Prefix4: cfg.Tunnel.Prefix4, Prefix6: cfg.Tunnel.Prefix6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	var reqs []members.AddRequest
	for i := range nMembers {
		reqs = append(reqs, members.AddRequest{Label: fmt.Sprintf("m%d", i)})
	}
	ms, err := reg.AddBatch(reqs)
	if err != nil {
		t.Fatal(err)
	}
	n := New(Options{Config: cfg})
	priv, _ := keys.Generate(nil)
	n.reg, n.plane = reg, testPlane(t, cfg, priv, nil)
	n.flushCT = func(...netip.Prefix) (int, error) { return 0, nil } // never the host's conntrack
	return n, ms
}

func TestMemberSource(t *testing.T) {
	n, ms := metricsTestNode(t, 3)
	n.plane.Add(ms[:2]) // ms[2] is not in the scheduler (e.g. disabled)
	hs := time.Unix(1_700_000_000, 0)
	peers := map[keys.Key]dataplane.PeerStats{
		ms[0].PublicKey: {PublicKey: ms[0].PublicKey, RxBytes: 100, TxBytes: 900, LastHandshake: hs},
		ms[2].PublicKey: {PublicKey: ms[2].PublicKey, RxBytes: 5},
	}
	src := memberSource{n, func() (map[keys.Key]dataplane.PeerStats, error) { return peers, nil }}
	got := map[string]metrics.MemberCounters{}
	if err := src.ForEachMember(func(c *metrics.MemberCounters) { got[c.Label] = *c }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d members yielded, want 3 (the unknown class skipped)", len(got))
	}
	a := got["m0"]
	if a.RxBytes != 100 || a.TxBytes != 900 || !a.LastHandshake.Equal(hs) || a.PublicKey != ms[0].PublicKey.String() ||
		a.AllowedIPs != netip.PrefixFrom(ms[0].IPv4, 32).String()+","+netip.PrefixFrom(ms[0].IPv6, 128).String() || a.ID != ms[0].ID {
		t.Fatalf("m0: %+v", a)
	}
	if got["m1"].RxBytes != 0 || got["m2"].RxBytes != 5 {
		t.Fatalf("m1 %+v m2 %+v", got["m1"], got["m2"])
	}
	// A failed dump is an error, never members with zero counters.
	failing := memberSource{n, func() (map[keys.Key]dataplane.PeerStats, error) { return nil, errors.New("uapi: closed") }}
	if err := failing.ForEachMember(func(*metrics.MemberCounters) { t.Fatal("member yielded without a dump") }); err == nil {
		t.Fatal("dump error swallowed")
	}
	// Through the table: the snapshot counts every configured member.
	tb := metrics.NewTable(src, metrics.TableOptions{})
	s, err := tb.Snapshot()
	if err != nil || s.Configured != 3 {
		t.Fatalf("snapshot %+v %v", s, err)
	}
}

func TestSchedSourceAndObservability(t *testing.T) {
	n, ms := metricsTestNode(t, 2)
	n.plane.Add(ms[:1])
	st, ok := (schedSource{n}).SchedStats()
	if !ok || st.Discipline != "srr" || st.Members != 1 {
		t.Fatalf("%+v %v", st, ok)
	}
	if _, ok := (schedSource{&Node{}}).SchedStats(); ok {
		t.Fatal("no scheduler reported as present")
	}
	if _, ok := (kernelSource{&Node{}}).KernelProfile(); ok {
		t.Fatal("no kernel monitor reported a profile")
	}
	o := n.observabilityOptions()
	if o.TUN != n.config().Tunnel.Name || o.WAN != "eth0" || o.Every != 15*time.Second || o.MemberSlots != 65533 || len(o.SojournBounds) != metrics.SojournBuckets {
		t.Fatalf("observability options %+v", o)
	}
}

// observedNode is metricsTestNode with observability over a fake device
// dump and an in-memory ring.
func observedNode(t *testing.T) (*Node, []members.Member, map[keys.Key]dataplane.PeerStats, *time.Time) {
	t.Helper()
	n, ms := metricsTestNode(t, 3)
	now := time.Unix(1_700_000_000, 0)
	n.now = func() time.Time { return now }
	if err := n.plane.Add(ms); err != nil {
		t.Fatal(err)
	}
	peers := map[keys.Key]dataplane.PeerStats{}
	src := n.sources()
	src.Members = memberSource{n, func() (map[keys.Key]dataplane.PeerStats, error) { return peers, nil }}
	opts := n.observabilityOptions()
	opts.StateDir, opts.Listen, opts.Every = t.TempDir(), "off", time.Second
	o, err := observability.Open(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	n.obs = o
	return n, ms, peers, &now
}

func TestBackendLoadTopSamples(t *testing.T) {
	n, ms, peers, now := observedNode(t)
	ctx := t.Context()
	b := backend{n}
	n.obs.Sample(*now)
	// Two seconds later alice downloaded 2 MB, bob 200 kB; carol is idle.
	*now = now.Add(2 * time.Second)
	peers[ms[0].PublicKey] = dataplane.PeerStats{PublicKey: ms[0].PublicKey, TxBytes: 2_000_000, RxBytes: 50_000, LastHandshake: *now}
	peers[ms[1].PublicKey] = dataplane.PeerStats{PublicKey: ms[1].PublicKey, TxBytes: 200_000, RxBytes: 9_000, LastHandshake: *now}
	peers[ms[2].PublicKey] = dataplane.PeerStats{PublicKey: ms[2].PublicKey, LastHandshake: *now}
	s := n.obs.Sample(*now)
	if s.BytesOut != 2_200_000 || s.BytesIn != 59_000 || s.Configured != 3 || s.IntervalMs != 2000 || s.MemberSlots != 65533 {
		t.Fatalf("sample %+v", s)
	}
	if s.MemTotal == 0 || s.NCPU == 0 {
		t.Fatalf("host figures missing from the sample: %+v", s)
	}
	l, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Configured != 3 || l.BytesOut != 2_200_000 || l.Scheduler == nil || l.Scheduler.Discipline != "srr" ||
		l.NATDrops != nil || l.MetricsURL != "" || l.Idle+l.Active != 3 {
		t.Fatalf("load %+v", l)
	}
	top, err := b.Top(ctx, 2, control.SortRate)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Members) != 2 || top.Members[0].Label != ms[0].Label || top.Members[1].Label != ms[1].Label ||
		top.Members[0].BytesOut != 2_000_000 || top.Sort != "rate" {
		t.Fatalf("top %+v", top)
	}
	if _, err := b.Top(ctx, 2, "label"); err == nil {
		t.Fatal("unknown sort accepted")
	}
	for _, sort := range []string{control.SortQueue, control.SortDrops} {
		if top, err := b.Top(ctx, 10, sort); err != nil || len(top.Members) != 3 {
			t.Fatalf("%s: %v %d", sort, err, len(top.Members))
		}
	}
	ss, err := b.Samples(ctx, time.Time{})
	if err != nil || len(ss) != 2 {
		t.Fatalf("samples %d %v", len(ss), err)
	}
	if ss, _ := b.Samples(ctx, now.Add(time.Second)); len(ss) != 0 {
		t.Fatalf("samples from the future: %d", len(ss))
	}
	if _, err := (backend{&Node{}}).Load(ctx); err == nil {
		t.Fatal("load without metrics")
	}
	if _, err := (backend{&Node{}}).Samples(ctx, time.Time{}); err == nil {
		t.Fatal("samples without metrics")
	}
}

func TestStartMetricsServesAndStops(t *testing.T) {
	n, _ := metricsTestNode(t, 1)
	n.config().StateDir = t.TempDir()
	n.config().Metrics.Listen = "127.0.0.1:0"
	stop, err := n.startMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if u := n.obs.URL(); !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("url %q", u)
	}
	n.obs.Sample(time.Now())
	stop()
	got, err := report.ReadRingFile(filepath.Join(n.config().StateDir, observability.RingFile))
	if err != nil || len(got) != 1 {
		t.Fatalf("ring after stop: %v %v", got, err)
	}
	// An explicit address that is taken fails the start.
	n.config().Metrics.Listen = "256.0.0.1:1"
	if _, err := n.startMetrics(); err == nil || !strings.Contains(err.Error(), "metrics: listen") {
		t.Fatalf("bad explicit listen: %v", err)
	}
}
