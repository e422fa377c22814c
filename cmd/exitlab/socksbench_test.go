package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSocksBenchJain(t *testing.T) {
	tests := []struct {
		name  string
		rates []float64
		want  float64
	}{
		{"equal", []float64{16384, 16384, 16384, 16384}, 1},
		{"one of four gets everything", []float64{0, 0, 0, 16384}, 0.25},
		{"two equal, two starved", []float64{1, 1, 0, 0}, 0.5},
		{"none delivered", []float64{0, 0}, 0},
	}
	for _, tc := range tests {
		if got := Jain(tc.rates); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Jain(%v) = %v, want %v", tc.name, tc.rates, got, tc.want)
		}
	}
	// One tick of quantisation over an 8 s window at 4 ticks/s (32 vs 33
	// chunks) keeps the index well above the 0.99 target.
	rates := make([]float64, 1000)
	for i := range rates {
		rates[i] = 32
		if i%2 == 0 {
			rates[i] = 33
		}
	}
	if j := Jain(rates); j < 0.999 {
		t.Errorf("quantised rates: Jain = %v, want ≥ 0.999", j)
	}
}

func TestSocksBenchPercentile(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[99-i] = float64(i + 1) // 100 … 1, unsorted on purpose
	}
	for _, tc := range []struct{ q, want float64 }{
		{0.50, 50}, {0.99, 99}, {1, 100}, {0.001, 1}, {0, 1},
	} {
		if got := sbPercentile(v, tc.q); got != tc.want {
			t.Errorf("sbPercentile(1..100, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if v[0] != 100 {
		t.Error("sbPercentile sorted its input in place")
	}
	if got := sbPercentile(nil, 0.99); got != 0 {
		t.Errorf("sbPercentile(nil) = %v, want 0", got)
	}
	if got := sbPercentile([]float64{7}, 0.99); got != 7 {
		t.Errorf("sbPercentile([7]) = %v, want 7", got)
	}
}

func TestSocksBenchRates(t *testing.T) {
	got := sbRates([]int64{0, 100, 5}, []int64{1000, 100, 2005}, 2)
	want := []float64{500, 0, 1000}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sbRates = %v, want %v", got, want)
		}
	}
	if r := sbRates([]int64{1}, []int64{2}, 0); r[0] != 0 {
		t.Errorf("zero window: %v", r)
	}
}

func TestSocksBenchDanteConfig(t *testing.T) {
	c := sbDanteConfig(1081)
	for _, want := range []string{
		"errorlog: stderr\n",
		"internal: 127.0.0.1 port = 1081\n",
		"external: lo\n",
		"socksmethod: none\n",
		"clientmethod: none\n",
		"user.privileged: root\n",
		"user.unprivileged: root\n",
		"client pass {\n\tfrom: 127.0.0.0/8 to: 0.0.0.0/0\n\tlog: error\n}",
		"socks pass {\n\tfrom: 127.0.0.0/8 to: 127.0.0.0/8\n\tcommand: connect\n\tlog: error\n}",
	} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
	if strings.Contains(c, "logoutput") {
		t.Error("config logs more than errors (logoutput)")
	}
	// Braces balance: Dante refuses the file otherwise.
	if strings.Count(c, "{") != strings.Count(c, "}") {
		t.Errorf("unbalanced braces:\n%s", c)
	}
}

func sbDefaultOpts() socksBenchOpts {
	return socksBenchOpts{
		sessions: []int{1000, 3000, 5000}, rate: 16 << 10, tick: 250 * time.Millisecond, reps: 3,
		sessionWindow: 8 * time.Second, window: 10 * time.Second, warmup: 2 * time.Second,
		ramp: 64, probeRate: 25, concurrency: 32, bulkSessions: 100,
		scenarios: []string{sbScSessions, sbScConnect, sbScBulk, sbScBulkSplit}, connectTimeout: 10 * time.Second,
		setupLimit: 2 * time.Minute, systems: []string{sbExitd, sbDante}, maxOther: 50, retries: 2, cpus: 2,
	}
}

func TestSocksBenchValidate(t *testing.T) {
	if got := sbMaxSessions(20000); got != 9744 {
		t.Errorf("sbMaxSessions(20000) = %d, want 9744", got)
	}
	if got := sbMaxSessions(100); got != 0 {
		t.Errorf("sbMaxSessions(100) = %d, want 0", got)
	}
	tests := []struct {
		name string
		edit func(*socksBenchOpts)
		want string // error text; empty: accepted
	}{
		{"defaults", func(*socksBenchOpts) {}, ""},
		{"full Dante-report axis", func(o *socksBenchOpts) { o.sessions = []int{1000, 3000, 5000, 7000, 9000} }, ""},
		{"beyond the fd limit", func(o *socksBenchOpts) { o.sessions = []int{1000, 10000} }, "--sessions: 10000 out of range [1, 9744]"},
		{"zero sessions", func(o *socksBenchOpts) { o.sessions = []int{0} }, "--sessions: 0 out of range"},
		{"no sessions", func(o *socksBenchOpts) { o.sessions = nil }, "--sessions: none given"},
		{"no sessions, scenario not run", func(o *socksBenchOpts) { o.sessions, o.scenarios = nil, []string{sbScBulk} }, ""},
		{"unbounded offered load", func(o *socksBenchOpts) { o.rate = 16 << 20; o.sessions = []int{9000} }, "offered load above 512 MiB/s"},
		{"tiny rate", func(o *socksBenchOpts) { o.rate = 10 }, "--rate"},
		{"tick", func(o *socksBenchOpts) { o.tick = time.Millisecond }, "--tick"},
		{"reps", func(o *socksBenchOpts) { o.reps = 0 }, "--reps"},
		{"window", func(o *socksBenchOpts) { o.window = 0 }, "--seconds"},
		{"session window", func(o *socksBenchOpts) { o.sessionWindow = time.Hour }, "--session-seconds"},
		{"warmup", func(o *socksBenchOpts) { o.warmup = -time.Second }, "--warmup"},
		{"ramp", func(o *socksBenchOpts) { o.ramp = 0 }, "--ramp"},
		{"probe rate", func(o *socksBenchOpts) { o.probeRate = 0 }, "--probe-rate"},
		{"concurrency", func(o *socksBenchOpts) { o.concurrency = 5000 }, "--concurrency"},
		{"bulk", func(o *socksBenchOpts) { o.bulkSessions = 0 }, "--bulk-sessions"},
		{"connect timeout", func(o *socksBenchOpts) { o.connectTimeout = 0 }, "--connect-timeout"},
		{"unknown scenario", func(o *socksBenchOpts) { o.scenarios = []string{"sessions", "udp"} }, `unknown scenario "udp"`},
		{"no scenario", func(o *socksBenchOpts) { o.scenarios = nil }, "--scenarios: none given"},
		{"setup limit", func(o *socksBenchOpts) { o.setupLimit = 0 }, "--setup-limit"},
		{"exitd alone", func(o *socksBenchOpts) { o.systems = []string{sbExitd} }, ""},
		{"unknown system", func(o *socksBenchOpts) { o.systems = []string{"exitd", "squid"} }, `unknown system "squid"`},
		{"no system", func(o *socksBenchOpts) { o.systems = nil }, "--systems: none given"},
		{"max other cpu", func(o *socksBenchOpts) { o.maxOther = 0 }, "--max-other-cpu"},
		{"retries", func(o *socksBenchOpts) { o.retries = -1 }, "--retries"},
		{"bulk-split on one CPU", func(o *socksBenchOpts) { o.cpus = 1 }, "--scenarios bulk-split: needs at least 2 CPUs, this machine has 1"},
		{"one CPU without bulk-split", func(o *socksBenchOpts) { o.cpus, o.scenarios = 1, []string{sbScBulk} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := sbDefaultOpts()
			tc.edit(&o)
			err := o.validate(20000)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestSocksBenchFlags: the command's defaults pass validation and the
// seconds flags take plain numbers.
func TestSocksBenchFlags(t *testing.T) {
	cmd := newSocksBenchCmd(&binFlags{}, io.Discard)
	if err := cmd.ParseFlags([]string{"--seconds", "2.5", "--session-seconds", "4", "--sessions", "1000,9000"}); err != nil {
		t.Fatal(err)
	}
	if v := cmd.Flags().Lookup("seconds").Value.String(); v != "2.5" {
		t.Errorf("--seconds = %s", v)
	}
	if err := cmd.ParseFlags([]string{"--seconds", "10s"}); err == nil {
		t.Error("--seconds 10s accepted; it takes a number")
	}
	o := sbDefaultOpts()
	d := newSocksBenchCmd(&binFlags{}, io.Discard)
	_ = d.ParseFlags(nil)
	if v := d.Flags().Lookup("session-seconds").Value.String(); v != "8" {
		t.Errorf("default --session-seconds = %s, want 8", v)
	}
	if err := o.validate(20000); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for _, hidden := range []string{"serve", "loadgen"} {
		c, _, err := cmd.Find([]string{hidden})
		if err != nil || c.Name() != hidden || !c.Hidden {
			t.Errorf("socks-bench %s: %v hidden=%v", hidden, err, c != nil && c.Hidden)
		}
	}
}

func TestSocksBenchParseStat(t *testing.T) {
	// Real layout; the command name has a space and a parenthesis.
	line := "4242 (dan ted)) S 4200 4242 4242 0 -1 4194560 300 0 0 0 150 50 7 3 20 0 1 0 12345 123456789 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0"
	st, err := sbParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := sbStat{PPid: 4200, CPUTicks: 200, ChildTick: 10, RSSPages: 2560}
	if st != want {
		t.Errorf("sbParseStat = %+v, want %+v", st, want)
	}
	if _, err := sbParseStat("4242 (x) S 1"); err == nil {
		t.Error("short stat accepted")
	}
}

func TestSocksBenchDescendants(t *testing.T) {
	children := map[int][]int{1: {10, 99}, 10: {11, 12}, 12: {13}, 99: {100}}
	got := sbDescendants(10, children)
	want := []int{10, 11, 12, 13}
	if len(got) != len(want) {
		t.Fatalf("sbDescendants = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sbDescendants = %v, want %v", got, want)
		}
	}
}

func TestSocksBenchConnectRequest(t *testing.T) {
	got := sbConnectRequest(netip.MustParseAddrPort("127.0.0.1:1080"))
	want := []byte{5, 1, 0, 1, 127, 0, 0, 1, 0x04, 0x38}
	if !bytes.Equal(got, want) {
		t.Errorf("IPv4: % x, want % x", got, want)
	}
	got = sbConnectRequest(netip.MustParseAddrPort("[::1]:443"))
	if len(got) != 22 || got[3] != 4 || got[19] != 1 || got[20] != 1 || got[21] != 0xbb {
		t.Errorf("IPv6: % x", got)
	}
}

// TestSocksBenchHandshake runs the client side against a scripted server.
func TestSocksBenchHandshake(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply []byte
		want  string
	}{
		{"ok, IPv4 bound address", []byte{5, 0, 0, 1, 10, 0, 0, 1, 0, 80}, ""},
		{"ok, domain bound address", append([]byte{5, 0, 0, 3, 4}, 'h', 'o', 's', 't', 0, 80), ""},
		{"refused by ruleset", []byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}, "reply code 0x02"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			go func() {
				defer s.Close()
				var b [64]byte
				if _, err := io.ReadFull(s, b[:3]); err != nil {
					return
				}
				s.Write([]byte{5, 0})
				if _, err := io.ReadFull(s, b[:10]); err != nil {
					return
				}
				s.Write(tc.reply)
			}()
			err := sbHandshake(c, netip.MustParseAddrPort("127.0.0.1:9"))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("sbHandshake = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSocksBenchSummaryAndTable(t *testing.T) {
	runs := []sbRun{}
	for rep := 1; rep <= 3; rep++ {
		runs = append(runs,
			sbRun{Scenario: sbScSessions, System: sbExitd, Sessions: 9000, Rep: rep, DeliveredBps: 9000 * 16384, DeliveredRatio: 1, Jain: 0.999,
				ConnectP50Ms: 1, ConnectP99Ms: float64(10 * rep), RSSGrowthMB: 120, RSSMB: 130, CPUPercent: 40, Procs: 1},
			sbRun{Scenario: sbScSessions, System: sbDante, Sessions: 9000, Rep: rep, DeliveredBps: 5000 * 16384, DeliveredRatio: 0.55, Jain: 0.7,
				ConnectP50Ms: 500, ConnectP99Ms: 2000, RSSGrowthMB: 3500, RSSMB: 3600, CPUPercent: 190, Procs: 300, SetupFailed: rep},
			sbRun{Scenario: sbScConnect, System: sbExitd, Sessions: 32, Rep: rep, ConnectsPerSec: 7000},
			sbRun{Scenario: sbScConnect, System: sbDirect, Sessions: 32, Rep: rep, ConnectsPerSec: 14000},
			sbRun{Scenario: sbScBulk, System: sbExitd, Sessions: 100, Rep: rep, DeliveredBps: float64(rep) * 500, Jain: 0.97},
			sbRun{Scenario: sbScBulk, System: sbDirect, Sessions: 100, Rep: rep, DeliveredBps: float64(rep) * 1000, Jain: 0.98},
			// bulk-split is paired with its own direct runs, not bulk's.
			sbRun{Scenario: sbScBulkSplit, System: sbExitd, Sessions: 100, Rep: rep, DeliveredBps: float64(rep) * 450, Jain: 0.99},
			sbRun{Scenario: sbScBulkSplit, System: sbDirect, Sessions: 100, Rep: rep, DeliveredBps: float64(rep) * 500, Jain: 0.99},
		)
	}
	rows := sbSummarize(runs)
	ex := sbFind(rows, sbScSessions, sbExitd, 9000)
	if ex == nil || ex.ConnectP99Ms != 20 || ex.Reps != 3 {
		t.Fatalf("exitd sessions row = %+v", ex)
	}
	if d := sbFind(rows, sbScSessions, sbDante, 9000); d == nil || d.Failures != 3 {
		t.Fatalf("dante failures = %+v, want the worst rep's 3", d)
	}
	// Per-rep ratios are all 0.5 although the medians of each are 1000 and 2000.
	if b := sbFind(rows, sbScBulk, sbExitd, 100); b == nil || b.BulkRatio != 0.5 {
		t.Fatalf("bulk row = %+v, want ratio 0.5", b)
	}
	if b := sbFind(rows, sbScBulkSplit, sbExitd, 100); b == nil || math.Abs(b.BulkRatio-0.9) > 1e-9 {
		t.Fatalf("bulk-split row = %+v, want ratio 0.9", b)
	}
	rep := &sbReport{Rate: 16384, Reps: 3, Rows: rows, Machine: sbMachine{CPU: "test", CPUs: 2}}
	var out bytes.Buffer
	sbPrintTable(&out, rep, true)
	s := out.String()
	for _, want := range []string{
		"| measure | exitd | Dante 1.4.2 | target | exitd |",
		"| 9000 × 16 KiB/s: delivered / offered | 1.000 (140.6 MiB/s) | 0.550 (78.1 MiB/s) | full (≥ 0.99) | met |",
		"| 9000: connect p50 / p99 under load | 1.0 / 20 ms | 500 / 2000 ms | p99 ≤ 50 ms | met |",
		"| CONNECT/s, 32 clients (direct: 14000) | 7000 | — | ≥ 10,000 | MISSED |",
		"| bulk, 100 sessions, shared CPUs: × direct (direct: 0 MiB/s) | 0.50 ",
		"| bulk-split, 100 sessions, loadgen and proxy on CPUs of their own: × direct (direct: 0 MiB/s) | 0.90 ",
		"| bulk-split: per-session Jain | 0.990 | — | ≥ 0.95 | met |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	svg := sbPlot(rep)
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 3 {
		t.Errorf("plot: want 3 polylines (offered, exitd, Dante):\n%s", svg)
	}
}

func TestSocksBenchSplitCPUs(t *testing.T) {
	for _, tc := range []struct {
		n           int
		load, proxy []int
	}{
		{2, []int{0}, []int{1}},
		{4, []int{0, 1}, []int{2, 3}},
		{3, []int{0}, []int{1, 2}},
	} {
		l, p := sbSplitCPUs(tc.n)
		for c := range tc.n {
			if l.IsSet(c) != slices.Contains(tc.load, c) || p.IsSet(c) != slices.Contains(tc.proxy, c) {
				t.Errorf("sbSplitCPUs(%d): CPU %d in load %v, proxy %v; want load %v, proxy %v",
					tc.n, c, l.IsSet(c), p.IsSet(c), tc.load, tc.proxy)
			}
		}
		if l.Count()+p.Count() != tc.n {
			t.Errorf("sbSplitCPUs(%d): %d + %d CPUs", tc.n, l.Count(), p.Count())
		}
	}
}

// TestSocksBenchStartOn: a child started on a CPU set has exactly that
// affinity, and the starting thread gets its own back.
func TestSocksBenchStartOn(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	var before unix.CPUSet
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	_, want := sbSplitCPUs(runtime.NumCPU())
	cmd := exec.Command("sh", "-c", "grep Cpus_allowed_list /proc/self/status")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := sbStartOn(cmd, &want); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	n := runtime.NumCPU()
	wantList := fmt.Sprintf("%d-%d", n/2, n-1)
	if n/2 == n-1 {
		wantList = strconv.Itoa(n - 1)
	}
	if got := strings.TrimSpace(strings.TrimPrefix(out.String(), "Cpus_allowed_list:")); got != wantList {
		t.Errorf("child's CPUs %q, want %q", got, wantList)
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("starting thread's affinity %v, was %v", after, before)
	}
}

func TestSocksBenchNice(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0, 1}, {9000, 10000}, {141, 200}, {1.5, 2}, {5, 5}, {0.3, 0.5}} {
		if got := sbNice(tc.in); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("sbNice(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSocksBenchNetstat(t *testing.T) {
	m := map[string]int64{}
	sbParseNetstat("TcpExt: SyncookiesSent ListenOverflows TCPSynRetrans\nTcpExt: 0 3 7\nIpExt: InOctets\nIpExt: 99\n", m)
	sbParseNetstat("Tcp: RtoAlgorithm RetransSegs\nTcp: 1 12\nbroken\n", m)
	if m["TcpExtListenOverflows"] != 3 || m["TcpExtTCPSynRetrans"] != 7 || m["TcpRetransSegs"] != 12 || m["IpExtInOctets"] != 99 {
		t.Fatalf("parsed %v", m)
	}
	d := sbDelta(map[string]int64{"TcpExtTCPSynRetrans": 2, "TcpRetransSegs": 12}, m)
	if len(d) != 2 || d["TcpExtTCPSynRetrans"] != 5 || d["TcpExtListenOverflows"] != 3 {
		t.Fatalf("delta %v", d)
	}
}

func TestSocksBenchHostCPU(t *testing.T) {
	a := sbParseHostCPU("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
	b := sbParseHostCPU("cpu  200 0 100 850 50 0 0 0 0 0\n")
	if a != (sbHostCPU{busy: 150, total: 1000}) {
		t.Fatalf("parsed %+v", a)
	}
	// irq and softirq are not busy (the bench's own loopback packets); steal is.
	if c := sbParseHostCPU("cpu  1 2 3 4 5 6 7 8 9 10\n"); c != (sbHostCPU{busy: 1 + 2 + 3 + 8, total: 36}) {
		t.Fatalf("parsed %+v", c)
	}
	if a != (sbHostCPU{busy: 150, total: 1000}) {
		t.Fatalf("parsed %+v", a)
	}
	// 150 of 200 ticks busy = 75 % of the machine.
	if got, want := b.busyPercent(a), 75*float64(runtime.NumCPU()); math.Abs(got-want) > 1e-9 {
		t.Errorf("busyPercent = %v, want %v", got, want)
	}
	if got := a.busyPercent(b); got != 0 {
		t.Errorf("backwards: %v", got)
	}
}

func TestSocksBenchTimeWaitPorts(t *testing.T) {
	const table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0438 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:0439 06 00000000:00000000 03:00000F3C 00000000     0        0 0 3 0000000000000000
   2: 0100007F:9C41 0100007F:0439 06 00000000:00000000 03:00000F3C 00000000     0        0 0 3 0000000000000000
   3: 0100007F:0439 0100007F:9C42 06 00000000:00000000 03:00000F3C 00000000     0        0 0 3 0000000000000000
   4: 0100007F:0439 0100007F:9C43 06 00000000:00000000 03:00000F3C 00000000     0        0 0 3 0000000000000000
   5: 0100007F:9C44 0100007F:0438 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000
`
	// Two client ports in TIME_WAIT, and two TIME_WAITs on the one
	// listening port 0x0439: three ports held.
	if got := sbTimeWaitPorts(table); got != 3 {
		t.Errorf("sbTimeWaitPorts = %d, want 3", got)
	}
	if got := sbTimeWaitPorts(""); got != 0 {
		t.Errorf("empty table: %d", got)
	}
}
