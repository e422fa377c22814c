package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
)

// fullRegistry registers every collector over fakes, as node does.
func fullRegistry(t testing.TB, n, limit int) (*prometheus.Registry, *fakeSource, *fakeClock) {
	clk := newClock()
	src := &fakeSource{members: nMembers(n)}
	tb := NewTable(src, TableOptions{Now: clk.now, SojournBounds: testBounds()})
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		NewBuildInfo("v1.2.3"),
		NewMemberCollector(tb, MemberOptions{Interface: "exitd0", Limit: limit}),
		NewSchedCollector(fakeSched{ok: true, s: SchedStats{Discipline: "srr", EgressRate: 80e6,
			Down: SchedDir{QueuedBytes: 1500, OverflowDrops: 2, CoDelDrops: 3, CEMarks: 4, SentBytes: 9000}}}, tb, testBounds()),
		NewNATCollector(fakeNAT{present: true, drops: map[string]NATCounter{"leak": {Packets: 7, Bytes: 420}, "spoof": {}}}),
		NewHostCollector(fakeHost{s: HostStats{UDP4: UDPStats{RcvbufErrors: 11}, Conntrack: 12, ConntrackMax: 262144,
			TUN: LinkStats{Present: true, TxDropped: 5}, WAN: LinkStats{Present: true, RxBytes: 1e6}}}),
		NewKernelCollector(fakeKernel{ok: true, p: KernelProfile{At: clk.now(), Keys: map[string]int{"ok": 30, "drift": 2}, CriticalFailures: 1}}),
	)
	return reg, src, clk
}

func TestPromlintClean(t *testing.T) {
	reg, src, _ := fullRegistry(t, 3, 0)
	src.set(func(ms []MemberCounters) []MemberCounters {
		ms[0].Down.Sojourn[2] = 5
		return ms
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "exitd_") && !strings.HasPrefix(name, "wireguard_") &&
			!strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "go_") {
			t.Errorf("%s: outside exitd_, wireguard_, process_, go_", name)
		}
		if len(mf.GetHelp()) < 15 || !strings.HasSuffix(strings.TrimSpace(mf.GetHelp()), ".") && strings.HasPrefix(name, "exitd_") {
			t.Errorf("%s: help %q is not a sentence", name, mf.GetHelp())
		}
	}
}

// TestMetricNames pins every exitd and wireguard metric name, so a rename
// (which breaks dashboards) is a deliberate test change.
func TestMetricNames(t *testing.T) {
	reg, src, clk := fullRegistry(t, 2, 0)
	src.set(func(ms []MemberCounters) []MemberCounters {
		ms[0].LastHandshake = clk.now()
		return ms
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"wireguard_sent_bytes_total", "wireguard_received_bytes_total", "wireguard_latest_handshake_seconds",
		"exitd_member_dropped_packets_total", "exitd_member_ce_marked_packets_total",
		"exitd_sessions", "exitd_members_configured", "exitd_metrics_members_exported", "exitd_metrics_members_limit",
		"exitd_tunnel_received_bytes_total", "exitd_tunnel_sent_bytes_total", "exitd_metrics_member_refresh_seconds",
		"exitd_metrics_member_table_up",
		"exitd_sched_queue_bytes", "exitd_sched_queue_packets", "exitd_sched_queue_limit_bytes", "exitd_sched_queue_limit_packets",
		"exitd_sched_backlogged_members", "exitd_sched_backlogged_flows", "exitd_sched_sent_packets_total",
		"exitd_sched_sent_bytes_total", "exitd_sched_dropped_packets_total", "exitd_sched_ce_marked_packets_total",
		"exitd_sched_pacer_rate_bytes", "exitd_sched_inflight_bytes", "exitd_sched_inflight_limit_bytes",
		"exitd_sched_tun_errors_total", "exitd_sched_info", "exitd_sched_sojourn_seconds",
		"exitd_nft_dropped_packets_total", "exitd_nft_dropped_bytes_total", "exitd_nft_table_present",
		"exitd_udp_errors_total", "exitd_link_bytes_total", "exitd_link_dropped_packets_total", "exitd_link_errors_total",
		"exitd_conntrack_entries", "exitd_conntrack_entries_limit",
		"exitd_kernel_profile_keys", "exitd_kernel_profile_critical_failures", "exitd_kernel_profile_checked_timestamp_seconds",
		"exitd_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines",
	} {
		if !got[name] {
			t.Errorf("metric %s missing", name)
		}
	}
}

func TestMemberCollectorValues(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(1)}
	hs := time.Unix(1_700_000_000, 500_000_000)
	src.members[0].LastHandshake = hs
	src.members[0].RxBytes, src.members[0].TxBytes = 1234, 5678
	src.members[0].Down.OverflowDrops, src.members[0].Up.CEMarks = 2, 3
	src.members[0].AllowedIPs = "10.99.0.2/32,fd00:99::2/128"
	tb := NewTable(src, TableOptions{Now: clk.now})
	c := NewMemberCollector(tb, MemberOptions{Interface: "exitd0"})
	const want = `
# HELP wireguard_received_bytes_total Bytes received from the peer (WireGuard payload, as wg show counts it). Only for the exported members.
# TYPE wireguard_received_bytes_total counter
wireguard_received_bytes_total{allowed_ips="10.99.0.2/32,fd00:99::2/128",friendly_name="m0",interface="exitd0",public_key="key0000000000000000000000000000000000000000="} 1234
# HELP wireguard_sent_bytes_total Bytes sent to the peer (WireGuard payload, as wg show counts it). Only for the exported members, see exitd_metrics_members_exported.
# TYPE wireguard_sent_bytes_total counter
wireguard_sent_bytes_total{allowed_ips="10.99.0.2/32,fd00:99::2/128",friendly_name="m0",interface="exitd0",public_key="key0000000000000000000000000000000000000000="} 5678
# HELP wireguard_latest_handshake_seconds UNIX time of the latest handshake with the peer; 0 if none. Only for the exported members.
# TYPE wireguard_latest_handshake_seconds gauge
wireguard_latest_handshake_seconds{allowed_ips="10.99.0.2/32,fd00:99::2/128",friendly_name="m0",interface="exitd0",public_key="key0000000000000000000000000000000000000000="} 1.7000000005e+09
# HELP exitd_sessions Members by session state: active (a session moving data in the last 15 s), idle (a session, no data), handshaking (no session, handshake messages arriving), offline.
# TYPE exitd_sessions gauge
exitd_sessions{state="active"} 0
exitd_sessions{state="handshaking"} 0
exitd_sessions{state="idle"} 1
exitd_sessions{state="offline"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"wireguard_sent_bytes_total", "wireguard_received_bytes_total", "wireguard_latest_handshake_seconds", "exitd_sessions"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "exitd_member_dropped_packets_total"); n != 4 {
		t.Fatalf("drop series: %d, want 4 (2 directions x 2 reasons)", n)
	}
}

func TestSchedCollectorValues(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(2)}
	src.members[0].Down.Sojourn[0] = 3 // < 32.8 µs
	src.members[1].Down.Sojourn[2] = 1 // 65.5–131 µs
	src.members[1].Down.Sojourn[SojournBuckets-1] = 1
	tb := NewTable(src, TableOptions{Now: clk.now, SojournBounds: testBounds()})
	c := NewSchedCollector(fakeSched{ok: true, s: SchedStats{Discipline: "srr", EgressRate: 8e6,
		Down: SchedDir{QueuedBytes: 1500, OverflowDrops: 2}}}, tb, testBounds())
	const want = `
# HELP exitd_sched_pacer_rate_bytes Configured pacer rate in bytes per second (Prometheus base unit; exitctl shows bits/s); 0 means unpaced.
# TYPE exitd_sched_pacer_rate_bytes gauge
exitd_sched_pacer_rate_bytes{direction="down"} 1e+06
exitd_sched_pacer_rate_bytes{direction="up"} 0
# HELP exitd_sched_queue_bytes Bytes queued in the scheduler now (down: toward members).
# TYPE exitd_sched_queue_bytes gauge
exitd_sched_queue_bytes{direction="down"} 1500
exitd_sched_queue_bytes{direction="up"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "exitd_sched_pacer_rate_bytes", "exitd_sched_queue_bytes"); err != nil {
		t.Fatal(err)
	}
	out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "exitd_sched_sojourn_seconds")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, line := range []string{
		`exitd_sched_sojourn_seconds_bucket{direction="down",le="3.2768e-05"} 3`,
		`exitd_sched_sojourn_seconds_bucket{direction="down",le="0.000131072"} 4`,
		`exitd_sched_sojourn_seconds_bucket{direction="down",le="+Inf"} 5`,
		`exitd_sched_sojourn_seconds_count{direction="down"} 5`,
	} {
		if !strings.Contains(s, line) {
			t.Errorf("missing %s in\n%s", line, s)
		}
	}
	if n := testutil.CollectAndCount(NewSchedCollector(fakeSched{}, nil, nil)); n != 0 {
		t.Fatalf("no scheduler: %d series", n)
	}
}

func TestNATCollector(t *testing.T) {
	c := NewNATCollector(fakeNAT{present: true, drops: map[string]NATCounter{"leak": {Packets: 7, Bytes: 420}}})
	const want = `
# HELP exitd_nft_table_present 1 if exitd's nftables table is installed; 0 means members' traffic is not NATed or filtered.
# TYPE exitd_nft_table_present gauge
exitd_nft_table_present 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "exitd_nft_table_present"); err != nil {
		t.Fatal(err)
	}
	out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "exitd_nft_dropped_packets_total")
	if err != nil || !strings.Contains(string(out), `exitd_nft_dropped_packets_total{reason="leak"} 7`) {
		t.Fatalf("leak drops: %v\n%s", err, out)
	}
	// A failing read is reported as an invalid metric, not a panic.
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewNATCollector(fakeNAT{err: errFake}))
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "device gone") {
		t.Fatalf("gather error %v", err)
	}
}

func TestHostAndKernelCollectors(t *testing.T) {
	h := NewHostCollector(fakeHost{s: HostStats{UDP4: UDPStats{RcvbufErrors: 11}, Conntrack: -1, ConntrackMax: -1,
		WAN: LinkStats{Present: true, RxDropped: 4}}})
	out, err := testutil.CollectAndFormat(h, expfmt.TypeTextPlain, "exitd_udp_errors_total", "exitd_link_dropped_packets_total", "exitd_conntrack_entries")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		`exitd_udp_errors_total{family="ipv4",kind="receive_buffer"} 11`,
		`exitd_link_dropped_packets_total{direction="rx",link="wan"} 4`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(s, `link="tun"`) || strings.Contains(s, "exitd_conntrack_entries") {
		t.Errorf("absent TUN or unknown conntrack exported:\n%s", s)
	}
	k := NewKernelCollector(fakeKernel{ok: true, p: KernelProfile{At: time.Unix(100, 0), Keys: map[string]int{"ok": 30, "drift": 2}, CriticalFailures: 1}})
	if n := testutil.CollectAndCount(k); n != 4 {
		t.Fatalf("kernel series %d, want 4", n)
	}
	if n := testutil.CollectAndCount(NewKernelCollector(fakeKernel{})); n != 0 {
		t.Fatalf("before the first check: %d series", n)
	}
}

// TestCardinality20k: with 20,000 members the scrape stays bounded by the
// documented limit, and the exported members are the busiest.
func TestCardinality20k(t *testing.T) {
	const members = 20_000
	reg, src, clk := fullRegistry(t, members, 0)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	clk.add(15 * time.Second)
	src.set(func(ms []MemberCounters) []MemberCounters {
		for i := range ms {
			ms[i].TxBytes = uint64(i) // m19999 is the busiest
			ms[i].LastHandshake = clk.now()
		}
		return ms
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total, perMember := 0, 0
	for _, mf := range mfs {
		total += len(mf.GetMetric())
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "friendly_name" {
					perMember++
					break
				}
			}
		}
	}
	const perMemberSeries = 9 // 3 wireguard + 4 drops + 2 CE marks
	if perMember != DefaultMemberLimit*perMemberSeries {
		t.Fatalf("per-member series %d, want %d", perMember, DefaultMemberLimit*perMemberSeries)
	}
	if total > DefaultMemberLimit*perMemberSeries+500 {
		t.Fatalf("%d series with %d members; the documented bound is %d + ~500 fixed", total, members, DefaultMemberLimit*perMemberSeries)
	}
	n, _ := testutil.GatherAndCount(reg, "exitd_members_configured")
	if n != 1 {
		t.Fatal("exitd_members_configured missing")
	}
	out, _ := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain, "wireguard_sent_bytes_total")
	if !strings.Contains(string(out), `friendly_name="m19999"`) || strings.Contains(string(out), `friendly_name="m0"`) {
		t.Fatal("exported members are not the busiest")
	}
	t.Logf("%d members → %d series (%d per-member)", members, total, perMember)
}

func TestMemberLimitOff(t *testing.T) {
	reg, _, _ := fullRegistry(t, 10, -1)
	n, err := testutil.GatherAndCount(reg, "wireguard_sent_bytes_total")
	if err != nil || n != 0 {
		t.Fatalf("limit -1: %d series, %v", n, err)
	}
}

// BenchmarkScrape20k measures one full scrape (refresh of 20,000 members
// from a fake source, every collector, text encoding).
func BenchmarkScrape20k(b *testing.B) {
	reg, src, clk := fullRegistry(b, 20_000, 0)
	src.set(func(ms []MemberCounters) []MemberCounters {
		for i := range ms {
			ms[i].Down.Sojourn[i%SojournBuckets] = uint64(i)
		}
		return ms
	})
	h := Handler(reg, nil)
	b.ReportAllocs()
	for b.Loop() {
		clk.add(15 * time.Second) // every scrape refreshes
		src.set(func(ms []MemberCounters) []MemberCounters {
			for i := range ms {
				ms[i].TxBytes += uint64(i)
			}
			return ms
		})
		w := &countWriter{h: http.Header{}}
		h.ServeHTTP(w, httpGetRequest())
		if w.code != 0 && w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

type countWriter struct {
	h    http.Header
	n    int
	code int
}

func (w *countWriter) Header() http.Header         { return w.h }
func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *countWriter) WriteHeader(c int)           { w.code = c }

func httpGetRequest() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/metrics", nil)
	return r
}

func TestServer(t *testing.T) {
	reg, _, _ := fullRegistry(t, 2, 0)
	s, err := Listen("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "exitd_build_info{goversion=") {
		t.Fatalf("%d\n%.500s", resp.StatusCode, body)
	}
	if _, err := Listen(s.Addr().String(), reg, nil); err == nil || !strings.Contains(err.Error(), "metrics: listen on") {
		t.Fatalf("second listen on a busy port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
