package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
)

// busyTable returns a table over n members whose TxBytes grow with their
// index after one refresh interval, so m(n-1) is the busiest.
func busyTable(t *testing.T, n int) *Table {
	t.Helper()
	clk := newClock()
	src := &fakeSource{members: nMembers(n)}
	tb := NewTable(src, TableOptions{Now: clk.now})
	if _, err := tb.Snapshot(); err != nil {
		t.Fatal(err)
	}
	clk.add(15 * time.Second)
	src.set(func(ms []MemberCounters) []MemberCounters {
		for i := range ms {
			ms[i].TxBytes = uint64(i+1) * 1000
			ms[i].LastHandshake = clk.now()
		}
		return ms
	})
	return tb
}

func gaugeValue(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if len(mf.GetMetric()) != 1 {
				t.Fatalf("%s: %d series", name, len(mf.GetMetric()))
			}
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

// formatAll gathers c alone and returns the text exposition.
func formatAll(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestMemberLimitTable(t *testing.T) {
	tests := []struct {
		name         string
		members      int
		limit        int
		wantExported int
		wantLimit    float64
		wantBusiest  string // must be exported
		wantAbsent   string // must not be exported
	}{
		{"default limit, few members", 5, 0, 5, DefaultMemberLimit, "m4", ""},
		{"limit above members", 3, 10, 3, 10, "m0", ""},
		{"limit equals members", 4, 4, 4, 4, "m0", ""},
		{"limit below members: busiest", 10, 3, 3, 3, "m9", "m6"},
		{"limit one", 10, 1, 1, 1, "m9", "m8"},
		{"negative limit: none", 10, -1, 0, 0, "", "m9"},
		{"no members", 0, 5, 0, 5, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewMemberCollector(busyTable(t, tc.members), MemberOptions{Interface: "wg0", Limit: tc.limit})
			if got := gaugeValue(t, c, "exitd_metrics_members_exported"); got != float64(tc.wantExported) {
				t.Errorf("exported %v, want %d", got, tc.wantExported)
			}
			if got := gaugeValue(t, c, "exitd_metrics_members_limit"); got != tc.wantLimit {
				t.Errorf("limit %v, want %v", got, tc.wantLimit)
			}
			if n := testutil.CollectAndCount(c, "wireguard_sent_bytes_total"); n != tc.wantExported {
				t.Errorf("%d sent series, want %d", n, tc.wantExported)
			}
			if n := testutil.CollectAndCount(c, "exitd_member_dropped_packets_total"); n != 4*tc.wantExported {
				t.Errorf("%d drop series, want %d", n, 4*tc.wantExported)
			}
			if n := testutil.CollectAndCount(c, "exitd_member_ce_marked_packets_total"); n != 2*tc.wantExported {
				t.Errorf("%d mark series, want %d", n, 2*tc.wantExported)
			}
			out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "wireguard_sent_bytes_total")
			if err != nil {
				t.Fatal(err)
			}
			s := string(out)
			if tc.wantBusiest != "" && !strings.Contains(s, `friendly_name="`+tc.wantBusiest+`"`) {
				t.Errorf("%s not exported:\n%s", tc.wantBusiest, s)
			}
			if tc.wantAbsent != "" && strings.Contains(s, `friendly_name="`+tc.wantAbsent+`"`) {
				t.Errorf("%s exported:\n%s", tc.wantAbsent, s)
			}
			if tc.wantExported > 0 && !strings.Contains(s, `interface="wg0"`) {
				t.Errorf("interface label missing:\n%s", s)
			}
		})
	}
}

func TestMemberCollectorSourceError(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(2), err: errFake}
	c := NewMemberCollector(NewTable(src, TableOptions{Now: clk.now}), MemberOptions{})
	if got := gaugeValue(t, c, "exitd_metrics_member_table_up"); got != 0 {
		t.Fatalf("up %v with a failing source", got)
	}
	// No snapshot yet: only up and the limit are exported.
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Fatalf("%d series without a snapshot, want 2", n)
	}
	// Once the source recovers the table is up and complete.
	src.mu.Lock()
	src.err = nil
	src.mu.Unlock()
	clk.add(2 * time.Second)
	if got := gaugeValue(t, c, "exitd_metrics_member_table_up"); got != 1 {
		t.Fatalf("up %v after recovery", got)
	}
	if n := testutil.CollectAndCount(c, "exitd_sessions"); n != 4 {
		t.Fatalf("%d session states, want 4", n)
	}
}

func TestMemberCollectorStaleSnapshotOnError(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(3)}
	c := NewMemberCollector(NewTable(src, TableOptions{Now: clk.now}), MemberOptions{})
	testutil.CollectAndCount(c)
	src.mu.Lock()
	src.err = errFake
	src.mu.Unlock()
	clk.add(2 * time.Second)
	if got := gaugeValue(t, c, "exitd_metrics_member_table_up"); got != 0 {
		t.Fatalf("up %v while the source fails", got)
	}
	if got := gaugeValue(t, c, "exitd_members_configured"); got != 3 {
		t.Fatalf("stale configured %v, want 3", got)
	}
}

func TestMemberCollectorLabelSets(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(1)}
	m := &src.members[0]
	m.Down.OverflowDrops, m.Down.CoDelDrops, m.Up.OverflowDrops, m.Up.CoDelDrops = 1, 2, 3, 4
	m.Down.CEMarks, m.Up.CEMarks = 5, 6
	c := NewMemberCollector(NewTable(src, TableOptions{Now: clk.now}), MemberOptions{Interface: "exitd0"})
	out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain,
		"exitd_member_dropped_packets_total", "exitd_member_ce_marked_packets_total", "wireguard_latest_handshake_seconds")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	key := `public_key="key0000000000000000000000000000000000000000="`
	for _, want := range []string{
		`exitd_member_dropped_packets_total{direction="down",friendly_name="m0",` + key + `,reason="overflow"} 1`,
		`exitd_member_dropped_packets_total{direction="down",friendly_name="m0",` + key + `,reason="codel"} 2`,
		`exitd_member_dropped_packets_total{direction="up",friendly_name="m0",` + key + `,reason="overflow"} 3`,
		`exitd_member_dropped_packets_total{direction="up",friendly_name="m0",` + key + `,reason="codel"} 4`,
		`exitd_member_ce_marked_packets_total{direction="down",friendly_name="m0",` + key + `} 5`,
		`exitd_member_ce_marked_packets_total{direction="up",friendly_name="m0",` + key + `} 6`,
		// Never handshaked: 0, not the zero time's UNIX seconds.
		`wireguard_latest_handshake_seconds{allowed_ips="10.99.0.0/32",friendly_name="m0",interface="exitd0",` + key + `} 0`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s in\n%s", want, s)
		}
	}
}

func TestCollectorsDescribeWhatTheyCollect(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(3)}
	tb := NewTable(src, TableOptions{Now: clk.now, SojournBounds: testBounds()})
	tests := []struct {
		name string
		c    prometheus.Collector
	}{
		{"members", NewMemberCollector(tb, MemberOptions{Interface: "exitd0"})},
		{"sched", NewSchedCollector(fakeSched{ok: true, s: SchedStats{Discipline: "fifo"}}, tb, testBounds())},
		{"nat", NewNATCollector(fakeNAT{present: false, drops: map[string]NATCounter{"spoof": {1, 2}, "input": {3, 4}}})},
		{"host", NewHostCollector(fakeHost{s: HostStats{TUN: LinkStats{Present: true}, WAN: LinkStats{Present: true}}})},
		{"kernel", NewKernelCollector(fakeKernel{ok: true, p: KernelProfile{At: clk.now(), Keys: map[string]int{"ok": 1}}})},
		{"build", NewBuildInfo("v0.0.1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The pedantic registry fails a metric whose Desc was not
			// described, or whose labels do not match its Desc.
			reg := prometheus.NewPedanticRegistry()
			if err := reg.Register(tc.c); err != nil {
				t.Fatal(err)
			}
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
			if len(mfs) == 0 {
				t.Fatal("nothing collected")
			}
		})
	}
}

func TestSchedCollectorLabelSets(t *testing.T) {
	c := NewSchedCollector(fakeSched{ok: true, s: SchedStats{Discipline: "fifo", IngressRate: 16e6, OversizeDrops: 9,
		Up: SchedDir{OverflowDrops: 1, CoDelDrops: 2, CEMarks: 3, SentPackets: 4, SentBytes: 5, ActiveMembers: 6, ActiveFlows: 7,
			QueuedPackets: 8, LimitBytes: 1 << 20, LimitPackets: 1000},
		InflightBytes: 100, InflightLimit: 200, InnerReadErrors: 11, InnerWriteErrors: 12}}, nil, nil)
	s := formatAll(t, c)
	for _, want := range []string{
		`exitd_sched_info{discipline="fifo"} 1`,
		`exitd_sched_dropped_packets_total{direction="up",reason="overflow"} 1`,
		`exitd_sched_dropped_packets_total{direction="up",reason="codel"} 2`,
		`exitd_sched_dropped_packets_total{direction="down",reason="oversize"} 9`,
		`exitd_sched_ce_marked_packets_total{direction="up"} 3`,
		`exitd_sched_sent_packets_total{direction="up"} 4`,
		`exitd_sched_sent_bytes_total{direction="up"} 5`,
		`exitd_sched_backlogged_members{direction="up"} 6`,
		`exitd_sched_backlogged_flows{direction="up"} 7`,
		`exitd_sched_queue_packets{direction="up"} 8`,
		`exitd_sched_queue_limit_bytes{direction="up"} 1.048576e+06`,
		`exitd_sched_queue_limit_packets{direction="up"} 1000`,
		`exitd_sched_pacer_rate_bytes{direction="up"} 2e+06`,
		`exitd_sched_inflight_bytes 100`,
		`exitd_sched_inflight_limit_bytes 200`,
		`exitd_sched_tun_errors_total{op="read"} 11`,
		`exitd_sched_tun_errors_total{op="write"} 12`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(s, "exitd_sched_sojourn_seconds") {
		t.Error("histogram exported without a table")
	}
	// 2 directions × 12 + oversize + 2 inflight + 2 errors + info.
	if n := testutil.CollectAndCount(c); n != 2*12+1+2+2+1 {
		t.Errorf("%d series", n)
	}
}

func TestSchedHistogramBounds(t *testing.T) {
	clk := newClock()
	src := &fakeSource{members: nMembers(1)}
	src.members[0].Up.Sojourn[1] = 2
	src.members[0].Up.Sojourn[SojournBuckets-1] = 1
	tb := NewTable(src, TableOptions{Now: clk.now, SojournBounds: testBounds()})
	tests := []struct {
		name       string
		bounds     []time.Duration
		wantFinite int // le buckets other than +Inf
		wantHist   bool
	}{
		{"full bounds: last is open", testBounds(), SojournBuckets - 1, true},
		{"shorter bounds all kept", testBounds()[:4], 4, true},
		{"no bounds: no histogram", nil, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewSchedCollector(fakeSched{ok: true}, tb, tc.bounds)
			out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "exitd_sched_sojourn_seconds")
			if err != nil {
				t.Fatal(err)
			}
			s := string(out)
			if !tc.wantHist {
				if s != "" {
					t.Fatalf("histogram without bounds:\n%s", s)
				}
				return
			}
			finite := strings.Count(s, `exitd_sched_sojourn_seconds_bucket{direction="up",le=`) - 1
			if finite != tc.wantFinite {
				t.Fatalf("%d finite buckets, want %d\n%s", finite, tc.wantFinite, s)
			}
			if !strings.Contains(s, `exitd_sched_sojourn_seconds_count{direction="up"} 3`) ||
				!strings.Contains(s, `exitd_sched_sojourn_seconds_bucket{direction="up",le="+Inf"} 3`) {
				t.Fatalf("count:\n%s", s)
			}
			if !strings.Contains(s, `exitd_sched_sojourn_seconds_count{direction="down"} 0`) {
				t.Fatalf("empty down histogram missing:\n%s", s)
			}
		})
	}
}

func TestNATCollectorTable(t *testing.T) {
	tests := []struct {
		name        string
		src         fakeNAT
		wantPresent string
		wantSeries  int
	}{
		{"absent table", fakeNAT{present: false}, "exitd_nft_table_present 0", 2},
		{"present, no counters", fakeNAT{present: true, drops: map[string]NATCounter{}}, "exitd_nft_table_present 1", 2},
		{"five reasons", fakeNAT{present: true, drops: map[string]NATCounter{"spoof": {}, "leak": {}, "isolation": {}, "input": {}, "forward_policy": {}}},
			"exitd_nft_table_present 1", 2 + 2*5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewNATCollector(tc.src)
			out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "exitd_nft_table_present")
			if err != nil || !strings.Contains(string(out), tc.wantPresent) {
				t.Fatalf("%v\n%s", err, out)
			}
			if n := testutil.CollectAndCount(c); n != tc.wantSeries {
				t.Fatalf("%d series, want %d", n, tc.wantSeries)
			}
		})
	}
}

func TestHostCollectorTable(t *testing.T) {
	tests := []struct {
		name string
		s    HostStats
		want int
	}{
		{"nothing present, conntrack unknown", HostStats{Conntrack: -1, ConntrackMax: -1}, 8},
		{"conntrack zero is known", HostStats{Conntrack: 0, ConntrackMax: 0}, 10},
		{"both links", HostStats{Conntrack: -1, ConntrackMax: -1, TUN: LinkStats{Present: true}, WAN: LinkStats{Present: true}}, 8 + 12},
		{"only max known", HostStats{Conntrack: -1, ConntrackMax: 65536}, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testutil.CollectAndCount(NewHostCollector(fakeHost{s: tc.s})); n != tc.want {
				t.Fatalf("%d series, want %d", n, tc.want)
			}
		})
	}
}

func TestKernelAndBuildInfoValues(t *testing.T) {
	k := NewKernelCollector(fakeKernel{ok: true, p: KernelProfile{At: time.Unix(1_700_000_000, 500_000_000), CriticalFailures: 2}})
	if got := gaugeValue(t, k, "exitd_kernel_profile_checked_timestamp_seconds"); got != 1_700_000_000.5 {
		t.Errorf("checked at %v", got)
	}
	if got := gaugeValue(t, k, "exitd_kernel_profile_critical_failures"); got != 2 {
		t.Errorf("critical %v", got)
	}
	if n := testutil.CollectAndCount(k, "exitd_kernel_profile_keys"); n != 0 {
		t.Errorf("%d key series from an empty map", n)
	}
	if out := formatAll(t, NewBuildInfo(`v1 "beta"`)); !strings.Contains(out, `version="v1 \"beta\""`) || !strings.Contains(out, `goversion="go`) {
		t.Fatalf("build info:\n%s", out)
	}
}
