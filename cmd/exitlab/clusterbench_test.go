package main

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"exitd/control"
)

func validClusterOpts() clusterOpts {
	return clusterOpts{members: 20000, batch: control.MaxBatch, changes: 200, poll: 250 * time.Millisecond,
		timeout: 2 * time.Minute, changeTimeout: 5 * time.Second, gap: 50 * time.Millisecond}
}

func TestClusterOptsCheck(t *testing.T) {
	tests := []struct {
		name string
		edit func(*clusterOpts)
		want string // error text; empty: accepted
	}{
		{"defaults", func(*clusterOpts) {}, ""},
		{"no changes", func(o *clusterOpts) { o.changes = 0 }, ""},
		{"one member one change", func(o *clusterOpts) { o.members, o.changes = 1, 1 }, ""},
		{"no members", func(o *clusterOpts) { o.members = 0 }, "--members: 0 out of range [1, 60000]"},
		{"beyond the prefix", func(o *clusterOpts) { o.members = 70000 }, "--members: 70000 out of range"},
		{"batch above the API's", func(o *clusterOpts) { o.batch = control.MaxBatch + 1 }, "--batch: 5001 out of range [1, 5000]"},
		{"batch zero", func(o *clusterOpts) { o.batch = 0 }, "--batch: 0 out of range"},
		{"negative changes", func(o *clusterOpts) { o.changes = -1 }, "--changes: -1 out of range"},
		{"changes beyond members", func(o *clusterOpts) { o.members, o.changes = 100, 101 }, "--changes: 101 is more than --members 100"},
		{"poll too fast", func(o *clusterOpts) { o.poll = time.Millisecond }, "--poll: 1ms out of range"},
		{"list poll as in the first runs", func(o *clusterOpts) { o.listPoll = 250 * time.Millisecond }, ""},
		{"list poll too fast", func(o *clusterOpts) { o.listPoll = 5 * time.Millisecond }, "--list-poll: 5ms out of range [20ms, 5s] (or 0)"},
		{"timeout too short", func(o *clusterOpts) { o.timeout = time.Second }, "--timeout: 1s out of range"},
		{"change timeout too long", func(o *clusterOpts) { o.changeTimeout = time.Minute }, "--change-timeout: 1m0s out of range"},
		{"negative gap", func(o *clusterOpts) { o.gap = -time.Millisecond }, "--gap: -1ms out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := validClusterOpts()
			tc.edit(&o)
			err := o.check()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("check() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestClusterDefaultsValid: the command's flag defaults pass the check.
func TestClusterDefaultsValid(t *testing.T) {
	f := newClusterBenchCmd(&binFlags{}, io.Discard).Flags()
	num := func(name string) int {
		v, err := f.GetInt(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dur := func(name string) time.Duration {
		v, err := f.GetDuration(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	o := clusterOpts{members: num("members"), batch: num("batch"), changes: num("changes"), poll: dur("poll"),
		listPoll: dur("list-poll"), timeout: dur("timeout"), changeTimeout: dur("change-timeout"), gap: dur("gap")}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	if o.members != 20000 || o.batch != control.MaxBatch || o.changes != 200 || o.listPoll != 0 {
		t.Fatalf("defaults %+v, want issue 15's 20,000 members, the API's batch, 200 changes", o)
	}
}

func TestSummarizeSync(t *testing.T) {
	inf := math.Inf(1)
	seq := func(n int) []float64 { // 1..n ms
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(i + 1)
		}
		return v
	}
	tests := []struct {
		name          string
		ms            []float64
		p50, p99, max float64
		timeouts      int
		p99TO, maxTO  bool
	}{
		{"empty", nil, 0, 0, 0, 0, false, false},
		{"one", []float64{7}, 7, 7, 7, 0, false, false},
		{"nearest rank of 200", seq(200), 100, 198, 200, 0, false, false},
		{"unsorted", []float64{30, 10, 20}, 20, 30, 30, 0, false, false},
		{"negative: before the answer", []float64{-2, 1, 3}, 1, 3, 3, 0, false, false},
		{"one timeout of 200: p99 still measured", append(seq(199), inf), 100, 198, 5000, 1, false, true},
		{"three timeouts of 200: p99 is one", append(seq(197), inf, inf, inf), 100, 5000, 5000, 3, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.ms...)
			s := summarizeSync(tc.ms, 5*time.Second)
			if s.Samples != len(tc.ms) || s.P50Ms != tc.p50 || s.P99Ms != tc.p99 || s.MaxMs != tc.max ||
				s.Timeouts != tc.timeouts || s.P99Timeout != tc.p99TO || s.MaxTimeout != tc.maxTO {
				t.Fatalf("got %+v, want p50 %v p99 %v max %v timeouts %d (p99 %v, max %v)", s, tc.p50, tc.p99, tc.max, tc.timeouts, tc.p99TO, tc.maxTO)
			}
			for i := range in {
				if in[i] != tc.ms[i] && !(math.IsNaN(in[i]) && math.IsNaN(tc.ms[i])) {
					t.Fatal("summarizeSync reordered its input")
				}
			}
		})
	}
}

// slogLine is what exitd's text handler writes for msg and args.
func slogLine(t *testing.T, at time.Time, level slog.Level, msg string, args ...any) string {
	t.Helper()
	var b bytes.Buffer
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})
	r := slog.NewRecord(at, level, msg, 0)
	r.Add(args...)
	if err := h.Handle(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestParseLogLine(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 30, 1, 234_000_000, time.UTC)
	line := slogLine(t, at, slog.LevelInfo, logApplied, "added", 42, "removed", 0, "changes", 42)
	l, ok := parseLogLine(line)
	if !ok {
		t.Fatalf("not parsed: %q", line)
	}
	if !l.At.Equal(at) || l.Level != "INFO" || l.Msg != logApplied || l.attrInt("added") != 42 || l.deviceAdds() != 42 {
		t.Fatalf("parsed %+v from %q", l, line)
	}
	l, ok = parseLogLine(slogLine(t, at, slog.LevelError, "cluster: add members to the device; restart reconciles",
		"count", 3, "err", `wireguard: "peer" refused = no`))
	if !ok || l.Level != "ERROR" || l.Attrs["err"] != `wireguard: "peer" refused = no` || l.deviceAdds() != 0 {
		t.Fatalf("quoted attribute: %+v", l)
	}
	for _, bad := range []string{"", "panic: runtime error", "time=yesterday msg=x", `time=2026-12-03T12:30:01Z level=INFO msg="unterminated`,
		"time=2026-12-03T12:30:01Z level=INFO", "wireguard-go: some line = 3"} {
		if l, ok := parseLogLine(bad); ok {
			t.Errorf("parseLogLine(%q) = %+v, want not a log line", bad, l)
		}
	}
}

func TestLogLineKinds(t *testing.T) {
	at := time.Now()
	parse := func(msg string, args ...any) logLine {
		l, ok := parseLogLine(slogLine(t, at, slog.LevelInfo, msg, args...))
		if !ok {
			t.Fatalf("%s not parsed", msg)
		}
		return l
	}
	add := parse(logApplied, "added", 1, "removed", 0, "changes", 1)
	update := parse(logApplied, "added", 0, "removed", 0, "changes", 1)
	remove := parse(logApplied, "added", 0, "removed", 1, "changes", 1)
	batch := parse(logApplied, "added", 42, "removed", 0, "changes", 42)
	disabledAdd := parse(logApplied, "added", 0, "removed", 0, "changes", 2)
	tests := []struct {
		name string
		l    logLine
		want map[string]bool
		adds int
	}{
		{"add", add, map[string]bool{changeAdd: true}, 1},
		{"weight", update, map[string]bool{changeWeight: true}, 0},
		{"remove", remove, map[string]bool{changeRemove: true}, 0},
		{"a batch is no single change", batch, map[string]bool{}, 42},
		{"two changes are no single change", disabledAdd, map[string]bool{}, 0},
		{"A's own batch", parse(logAddedBatch, "count", 5000, "first", "bulk-00000", "last", "bulk-04999"), map[string]bool{}, 5000},
		{"A's own single add", parse(logAddedSingle, "label", "x"), map[string]bool{}, 1},
		{"unrelated", parse("member updated", "label", "x", "weight", 3), map[string]bool{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range changeKinds {
				if got := tc.l.applies(k); got != tc.want[k] {
					t.Errorf("applies(%s) = %v", k, got)
				}
			}
			if got := tc.l.deviceAdds(); got != tc.adds {
				t.Errorf("deviceAdds() = %d, want %d", got, tc.adds)
			}
		})
	}
}

func TestDeviceTimeline(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	line := func(ms, added int) logLine {
		return logLine{At: at(ms), Msg: logApplied, Attrs: map[string]string{"added": strconv.Itoa(added), "removed": "0", "changes": strconv.Itoa(added)}}
	}
	lines := []logLine{
		{At: at(5), Msg: "cluster: registered this node"},
		line(100, 42), line(200, 42), // one 250 ms step: one point
		line(300, 42),
		line(1000, 4000), line(1100, 5874), // reaches 10,000 at 1.1 s
		line(1500, 1),
	}
	reached, ok, progress, n := deviceTimeline(lines, start, 10000, 250*time.Millisecond)
	if !ok || !reached.Equal(at(1100)) || n != 6 {
		t.Fatalf("reached %v ok %v from %d lines", reached.Sub(start), ok, n)
	}
	want := [][2]float64{{0.2, 84}, {0.3, 126}, {1.1, 10000}, {1.5, 10001}}
	if len(progress) != len(want) {
		t.Fatalf("progress %v, want %v", progress, want)
	}
	for i := range want {
		if math.Abs(progress[i][0]-want[i][0]) > 1e-9 || progress[i][1] != want[i][1] {
			t.Fatalf("progress %v, want %v", progress, want)
		}
	}
	if _, ok, _, _ := deviceTimeline(lines, start, 20000, time.Second); ok {
		t.Fatal("20,000 reached with 10,001 added")
	}
	if _, ok, p, n := deviceTimeline(nil, start, 1, time.Second); ok || p != nil || n != 0 {
		t.Fatal("no lines")
	}
}

func TestParseMetrics(t *testing.T) {
	page := []byte(`# HELP etcd_mvcc_db_total_size_in_bytes Total size of the underlying database physically allocated in bytes.
# TYPE etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_bytes 2.4576e+07
etcd_mvcc_db_total_size_in_use_in_bytes 2.1e+07
etcd_server_has_leader 1
grpc_server_handled_total{grpc_code="OK"} 12
`)
	v, err := parseMetrics(page, "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes")
	if err != nil || v[0] != 24576000 || v[1] != 21e6 {
		t.Fatalf("got %v, %v", v, err)
	}
	if _, err := parseMetrics(page, "etcd_debugging_mvcc_keys_total"); err == nil || !strings.Contains(err.Error(), "no etcd_debugging_mvcc_keys_total") {
		t.Fatalf("missing metric: %v", err)
	}
	if _, err := parseMetrics([]byte("x NaNa\n"), "x"); err == nil {
		t.Fatal("bad value accepted")
	}
}

func TestPerfTop(t *testing.T) {
	rep := `# Samples: 10K of event 'cpu-clock:pppH'
#
# Overhead  Command  Shared Object  Symbol
# ........  .......  .............  ......
#
    41.20%  exitd    exitd          [.] golang.zx2c4.com/wireguard/device.(*Device).NewPeer
            |
            ---runtime.goexit
    12.00%  etcd     [kernel.kallsyms]  [k] fsync

`
	top := perfTop(rep, 5)
	if len(top) != 2 || !strings.HasPrefix(top[0], "41.20%  exitd") || !strings.HasPrefix(top[1], "12.00%  etcd") {
		t.Fatalf("%q", top)
	}
	if len(perfTop(rep, 1)) != 1 {
		t.Fatal("n not applied")
	}
}

func sampleClusterReport() *clusterReport {
	r := &clusterReport{Machine: "2 vCPU test", LoadStart: "1.00 1.00 1.00", LoadEnd: "2.00 2.00 2.00", Etcd: "3.4.23",
		Members: 20000, Batch: 5000, Requests: 4, Through: "A", KeygenS: 0.8, AckedS: 7.5, LiveS: 8.25, ListedS: 8.5,
		Nodes: []clusterNodeReport{
			{Name: "A", DeviceS: 7.5, ListedS: 7.6, DevicePeers: 20000, LogLines: 4, RSSEmptyMiB: 30, RSSBulkMiB: 800, CPUBulkS: 6},
			{Name: "B", DeviceS: 8.25, ListedS: 8.5, DevicePeers: 20000, LogLines: 477, RSSEmptyMiB: 30, RSSBulkMiB: 810, CPUBulkS: 5},
			{Name: "C", DeviceS: 8.0, ListedS: 8.2, DevicePeers: 20000, LogLines: 470, RSSEmptyMiB: 31, RSSBulkMiB: 805, CPUBulkS: 5, ErrorLines: 1, FirstError: "boom"},
		},
		EtcdMembers: []clusterEtcdReport{{Name: "e0", DBBytes: 25 << 20, InUse: 20 << 20, FileBytes: 25 << 20, RSSMiB: 90, CPUBulkS: 3}},
		Final:       []int{20000, 20000, 20000}, FinalWG: []int{20000, 20000, 20000},
	}
	for i := range 6 {
		k := changeKinds[i%3]
		r.Changes = append(r.Changes, clusterChange{Kind: k, SyncMs: map[string]float64{"B": float64(10 + i), "C": float64(20 + i)}})
	}
	r.Changes[5].SyncMs = map[string]float64{"B": 600}                                   // C timed out
	r.Changes[1].AckMs, r.Changes[1].SyncMs = 70, map[string]float64{"B": -60, "C": -50} // applied before A answered
	r.summariseChanges(5 * time.Second)
	r.judge()
	return r
}

func TestClusterReportVerdicts(t *testing.T) {
	r := sampleClusterReport()
	if r.Nodes[0].Sync != nil || r.Nodes[1].Sync == nil || r.Nodes[2].Sync.Timeouts != 1 {
		t.Fatalf("per-node sync: A %v B %v C %v", r.Nodes[0].Sync, r.Nodes[1].Sync, r.Nodes[2].Sync)
	}
	if r.Sync.Samples != 12 || r.Sync.Timeouts != 1 || !r.Sync.P99Timeout {
		t.Fatalf("overall %+v", r.Sync)
	}
	if !r.Verdict.BulkOK || r.Verdict.SyncOK || r.Verdict.Pass {
		t.Fatalf("verdict %+v: bulk 8.25 s met, a timeout at p99 missed", r.Verdict)
	}
	if r.ByKind[changeRemove].Samples != 4 || r.ByKind[changeAdd].P99Ms != 23 || r.ByKind[changeWeight].P50Ms != -50 {
		t.Fatalf("by kind %+v", r.ByKind)
	}
	if r.AckByKind[changeWeight].MaxMs != 70 || r.AckByKind[changeAdd].MaxMs != 0 || r.SyncReq.Samples != 12 ||
		r.Nodes[1].SyncReq.P50Ms != 12 || r.SyncReq.P50Ms != 20 {
		t.Fatalf("from the request %+v, B %+v; acks %+v", r.SyncReq, r.Nodes[1].SyncReq, r.AckByKind)
	}

	r.Changes[5].SyncMs["C"] = 30
	r.summariseChanges(5 * time.Second)
	r.judge()
	if r.Sync.P99Ms != 600 || r.Verdict.SyncOK {
		t.Fatalf("p99 of 12 samples is the largest, 600 ms: %+v %+v", r.Sync, r.Verdict)
	}
	r.Changes[5].SyncMs["B"] = 15
	r.summariseChanges(5 * time.Second)
	r.judge()
	if r.Sync.P99Ms != 30 || !r.Verdict.SyncOK || !r.Verdict.Pass {
		t.Fatalf("all within 30 ms: %+v %+v", r.Sync, r.Verdict)
	}
	r.LiveS = 10.01
	r.judge()
	if r.Verdict.BulkOK {
		t.Fatal("10.01 s met the 10 s target")
	}
	r.LiveS = -1
	r.judge()
	if r.Verdict.BulkOK {
		t.Fatal("never live met the target")
	}
	empty := &clusterReport{Members: 20000, LiveS: 1}
	empty.summariseChanges(time.Second)
	empty.judge()
	if empty.Verdict.SyncOK {
		t.Fatal("no changes met the sync target")
	}
}

func TestPrintClusterReport(t *testing.T) {
	r := sampleClusterReport()
	r.ListPollS = 0.25
	var b bytes.Buffer
	printClusterReport(&b, r)
	s := b.String()
	for _, want := range []string{
		"member counts polled every 0.25 s on every node during the bulk add",
		"20000 members through A, 5000 per request (4 requests)",
		"live on all three 8.25 s (all answered 7.50 s, listed by all 8.50 s); target ≤ 10s: met",
		"800 MiB", "477", "25.0 MiB", "20.0 MiB",
		"timeout", // C's p99 and the overall p99
		"1/6",     // C's timeouts
		"by kind: add p50", "remove p50", "weight p50 -50 ms",
		"from the request instead: p50 20 ms", "A's answer by kind: add p50 0 ms p99 0 ms weight p50 0 ms p99 70 ms",
		"target p99 ≤ 500ms: missed",
		"targets: bulk ≤ 10s met, sync p99 ≤ 500ms missed: FAIL",
		"note: node C logged 1 errors, the first: boom",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
	r.LiveS = -1
	r.Nodes[2].DeviceS = -1
	b.Reset()
	printClusterReport(&b, r)
	if !strings.Contains(b.String(), "live on all three never") {
		t.Errorf("never live:\n%s", b.String())
	}
}
