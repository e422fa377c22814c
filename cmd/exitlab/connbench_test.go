package main

import (
	"bytes"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"exitd/config"
	"exitd/internal/harness"
)

func defaultConnOpts() connOpts {
	var o connOpts
	cmd := newConnBenchCmd(&binFlags{}, nil)
	f := cmd.Flags()
	o.light, _ = f.GetInt("light")
	o.lightRate, _ = f.GetFloat64("light-rate")
	o.connectTimeout, _ = f.GetDuration("connect-timeout")
	o.idle, _ = f.GetInt("idle")
	o.onSecs, _ = f.GetInt("on-seconds")
	o.maxFlood, _ = f.GetInt("max-flood")
	o.hold, _ = f.GetInt("hold")
	o.reps, _ = f.GetInt("reps")
	o.floodStart, _ = f.GetInt("flood-start")
	o.floodMax, _ = f.GetInt("flood-max")
	o.sockets, _ = f.GetInt("sockets")
	o.costRate, _ = f.GetInt("cost-rate")
	o.costSecs, _ = f.GetInt("cost-seconds")
	o.costReps, _ = f.GetInt("cost-reps")
	return o
}

func TestConnOptsCheck(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*connOpts)
		want string // error text; empty: accepted
	}{
		{"defaults", func(*connOpts) {}, ""},
		{"no cost runs", func(o *connOpts) { o.costRate, o.costSecs, o.costReps = 0, 0, 0 }, ""},
		{"no light member", func(o *connOpts) { o.light = 0 }, "--light: 0 out of range [1, 30]"},
		{"light rate zero", func(o *connOpts) { o.lightRate = 0 }, "--light-rate: 0 out of range"},
		{"timeout too short", func(o *connOpts) { o.connectTimeout = time.Millisecond }, "--connect-timeout: 1ms out of range"},
		{"flood beyond the bound", func(o *connOpts) { o.maxFlood = 91 }, "--max-flood: 91 out of range [5, 90]"},
		{"on longer than the flood bound", func(o *connOpts) { o.onSecs = 95 }, "--on-seconds: 95 out of range [2, --max-flood 90]"},
		{"hold as long as the flood", func(o *connOpts) { o.hold = 90 }, "--hold: 90 must be in [0, --max-flood 90)"},
		{"reps", func(o *connOpts) { o.reps = 0 }, "--reps: 0 out of range [1, 5]"},
		{"start above max", func(o *connOpts) { o.floodStart = 50_000 }, "--flood-start: 50000 out of range [500, --flood-max 40000]"},
		{"max beyond the bound", func(o *connOpts) { o.floodMax, o.floodStart = 300_000, 4000 }, "--flood-max: 300000 above 200000"},
		{"sockets", func(o *connOpts) { o.sockets = 0 }, "--sockets: 0 out of range [1, 32]"},
		{"cost rate above max", func(o *connOpts) { o.costRate = 50_000 }, "--cost-rate: 50000 out of range [0, --flood-max 40000]"},
		{"cost seconds", func(o *connOpts) { o.costSecs = 1 }, "--cost-seconds: 1 out of range [2, 60]"},
		{"cost reps", func(o *connOpts) { o.costReps = 9 }, "--cost-reps: 9 out of range [1, 5]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultConnOpts()
			tc.mod(&o)
			err := o.check()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("check() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestConnDefaultsFitTheBudget: with the defaults a run stays within the
// five minutes a shared machine allows one benchmark (flood bounds plus
// the idle phases and the cost runs, before setup and resets).
func TestConnDefaultsFitTheBudget(t *testing.T) {
	o := defaultConnOpts()
	secs := o.reps*(2*o.idle+o.maxFlood+o.onSecs) + o.costReps*2*(o.costSecs+2+int((connHoldSettle+connHold).Seconds()))
	if secs > 240 {
		t.Fatalf("defaults need %d s of phases", secs)
	}
}

// TestConnModeConfigs: each mode is what exitd's config parser makes of
// it, in the config the harness writes.
func TestConnModeConfigs(t *testing.T) {
	tests := []struct {
		mode              string
		quotaOff, auto    bool
		quota, rate, burs int
	}{
		{connModeOff, true, false, -1, 0, 0},
		{connModeOn, false, true, 0, config.DefaultNewConnRate, config.DefaultNewConnBurst},
		{connModeRules, false, false, connRulesQuota, 1_000_000, 10_000_000},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			o := harness.NodeOptions{Dir: t.TempDir(), Extra: connModeConfig(tc.mode)}
			path, err := harness.WriteConfig(&o)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(path, b)
			if err != nil {
				t.Fatal(err)
			}
			ct := cfg.Conntrack
			rate, burst := ct.Rate()
			if ct.QuotaOff() != tc.quotaOff || ct.QuotaAuto() != tc.auto || ct.MaxConnsPerMember != tc.quota || rate != tc.rate || burst != tc.burs {
				t.Fatalf("%+v (rate %d burst %d), want off %v auto %v quota %d rate %d burst %d",
					ct, rate, burst, tc.quotaOff, tc.auto, tc.quota, tc.rate, tc.burs)
			}
		})
	}
}

func TestConnModesAlternate(t *testing.T) {
	if got := strings.Join(connModesOf(1), ","); got != "off,on" {
		t.Errorf("rep 1: %s", got)
	}
	if got := strings.Join(connModesOf(2), ","); got != "on,off" {
		t.Errorf("rep 2: %s", got)
	}
}

func attempt(ms float64, err string) connAttempt {
	return connAttempt{Dur: time.Duration(ms * float64(time.Millisecond)), Err: err}
}

func TestSummarizeAttempts(t *testing.T) {
	var ok100 []connAttempt
	for i := 1; i <= 100; i++ {
		ok100 = append(ok100, attempt(float64(i), ""))
	}
	l := summarizeAttempts(ok100, 3*time.Second)
	if l.Attempts != 100 || l.OK != 100 || l.SuccessPct != 100 || l.P50Ms != 50 || l.P99Ms != 99 || l.P99Failed || l.Errors != nil {
		t.Errorf("100 successes: %+v", l)
	}

	// Two failures of 100: the p99 (rank 99) lands on one, reported as the
	// timeout; the p50 is of every attempt, failures last.
	mixed := append([]connAttempt{attempt(0, "timeout"), attempt(0, "refused")}, ok100[:98]...)
	l = summarizeAttempts(mixed, 3*time.Second)
	if l.OK != 98 || l.SuccessPct != 98 || l.P50Ms != 50 || l.P99Ms != 3000 || !l.P99Failed || l.P50Failed {
		t.Errorf("98 of 100: %+v", l)
	}
	if l.Errors["timeout"] != 1 || l.Errors["refused"] != 1 {
		t.Errorf("errors %v", l.Errors)
	}

	// One failure in 1,000 stays below the p99.
	var many []connAttempt
	for i := range 999 {
		many = append(many, attempt(1+float64(i%10), ""))
	}
	many = append(many, attempt(0, "timeout"))
	l = summarizeAttempts(many, time.Second)
	if l.SuccessPct != 99.9 || l.P99Failed || l.P99Ms != 10 {
		t.Errorf("999 of 1000: %+v", l)
	}

	if l := summarizeAttempts(nil, time.Second); l.Attempts != 0 || l.SuccessPct != 0 || l.P99Ms != 0 {
		t.Errorf("none: %+v", l)
	}
	all := summarizeAttempts([]connAttempt{attempt(0, "timeout")}, 2*time.Second)
	if !all.P50Failed || !all.P99Failed || all.P99Ms != 2000 || all.SuccessPct != 0 {
		t.Errorf("all failed: %+v", all)
	}
}

func TestAttemptsFrom(t *testing.T) {
	as := []connAttempt{{At: time.Second}, {At: 3 * time.Second}, {At: 2 * time.Second}}
	if got := attemptsFrom(as, 2*time.Second); len(got) != 2 || got[0].At != 3*time.Second || got[1].At != 2*time.Second {
		t.Fatalf("%v", got)
	}
	if got := attemptsFrom(as, time.Hour); len(got) != 0 {
		t.Fatalf("%v", got)
	}
}

func TestNextPace(t *testing.T) {
	tests := []struct {
		name                     string
		pace, sent, lost, lo, hi float64
		full                     bool
		want                     float64
	}{
		{"keeping up, no loss: faster", 4000, 4000, 0, 500, 40000, false, 4500},
		{"large pace grows by a tenth", 20000, 19000, 0.01, 500, 40000, false, 22000},
		{"capped", 39000, 39000, 0, 500, 40000, false, 40000},
		{"sender behind: unchanged", 4000, 3000, 0, 500, 40000, false, 4000},
		{"some loss: unchanged", 4000, 4000, 0.05, 500, 40000, false, 4000},
		{"heavy loss: slower", 10000, 10000, 0.2, 500, 40000, false, 8000},
		{"floor", 550, 550, 0.5, 500, 40000, false, 500},
		{"full table: hold", 10000, 10000, 0.9, 500, 40000, true, 10000},
	}
	for _, tc := range tests {
		if got := nextPace(tc.pace, tc.sent, tc.lost, tc.full, tc.lo, tc.hi); got != tc.want {
			t.Errorf("%s: nextPace = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLostFrac(t *testing.T) {
	if lostFrac(0, 0, 0) != 0 || math.Abs(lostFrac(100, 90, 5)-0.05) > 1e-12 || lostFrac(100, 100, 20) != 0 || lostFrac(10, 0, 0) != 1 {
		t.Fatal("lostFrac")
	}
}

func TestFitLine(t *testing.T) {
	a, b, ok := fitLine([]float64{0, 1000, 2000, 3000}, []float64{30, 56, 82, 108})
	if !ok || math.Abs(a-30) > 1e-9 || math.Abs(b-0.026) > 1e-12 {
		t.Fatalf("a %v b %v ok %v", a, b, ok)
	}
	// Noise around y = 10 + 2x: close to it.
	a, b, ok = fitLine([]float64{1, 2, 3, 4}, []float64{12.1, 13.9, 16.1, 17.9})
	if !ok || math.Abs(b-1.96) > 1e-9 || math.Abs(a-10.1) > 1e-9 {
		t.Fatalf("noisy: a %v b %v", a, b)
	}
	if _, _, ok := fitLine([]float64{5, 5}, []float64{1, 2}); ok {
		t.Error("one distinct x fitted")
	}
	if _, _, ok := fitLine([]float64{1}, []float64{1}); ok {
		t.Error("one point fitted")
	}
}

func TestParseCPUSplit(t *testing.T) {
	// A real line's shape: the command name has a space and a ")".
	line := "4242 (exit d)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 100 1000 300 18446744073709551615"
	u, s, err := parseCPUSplit(line)
	if err != nil || u != 2.5 || s != 0.75 {
		t.Fatalf("user %v system %v err %v", u, s, err)
	}
	for _, bad := range []string{"", "4242 (x S 1", "4242 (x) S 1 2 3"} {
		if _, _, err := parseCPUSplit(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestDialErrKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{os.ErrDeadlineExceeded, "timeout"},
		{unix.ECONNREFUSED, "refused"},
		{unix.ECONNRESET, "reset"},
		{unix.EHOSTUNREACH, "unreachable"},
		{errors.New("odd"), "odd"},
	}
	for _, tc := range tests {
		if got := dialErrKind(tc.err); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

func connTestReport() *connReport {
	lat := func(ok, p50, p99 float64, failed bool) connLatency {
		return connLatency{Attempts: 1000, OK: int(ok * 10), SuccessPct: ok, P50Ms: p50, P99Ms: p99, P99Failed: failed}
	}
	full, before := lat(55, 900, 3000, true), lat(100, 2, 9.5, false)
	r := &connReport{Light: 9, LightRate: 20, TimeoutMs: 3000, Reps: 1, CTMax: 262144, AutoQuota: 19660,
		Runs: []connRun{
			{Rep: 1, Mode: connModeOff, Idle: lat(100, 1, 5, false), Flood: lat(92.5, 11, 3000, true), AtFull: &full, BeforeFull: &before,
				Windows:   []connWindow{{From: 0, To: 10, Success: 100, P99Ms: 9, Exitd: 0.4, Passed: 80000}, {From: 10, To: 20, Success: 80, P99Ms: 3000, Failed: true}},
				FloodSecs: 45, PeakFill: 262144, Tracked: 250000, SentRate: 8000, PassRate: 7400, ExitdCPU: 0.5, ExitdUsPer: 60},
			{Rep: 1, Mode: connModeOn, Quota: 19660, Idle: lat(100, 1, 5, false), Flood: lat(100, 3, 8, false),
				FloodSecs: 30, PeakFill: 40000, Tracked: 17000, RateDrops: 100000, SentRate: 4000, PassRate: 560, ExitdCPU: 0.9, ExitdUsPer: 100},
		},
		Cost: &connCost{Runs: []connCostRun{{Mode: connModeOff, Rate: 3000}, {Mode: connModeRules, Rate: 3000}}, GrowSecs: 7,
			OffUs: 32, RulesUs: 190, AtTracked: 19660, RulesAt: 519, OffAt: 50, RulesSlope: 26.3, ListLen: 24000, SetElems: 10,
			HoldRate: 500, HoldFrom: 21400, OffHoldCores: 0.03, RulesHoldCore: 0.61},
	}
	r.summarise()
	return r
}

func TestConnSummariseAndJudge(t *testing.T) {
	r := connTestReport()
	if len(r.Rows) != 2 || r.Rows[0].Mode != connModeOff || r.Rows[1].Mode != connModeOn {
		t.Fatalf("rows %+v", r.Rows)
	}
	off, on := r.Rows[0], r.Rows[1]
	if off.FullSuccess != 55 || on.FullSuccess != -1 || !off.P99Failed || on.P99Failed || off.BeforeP99 != 9.5 || on.BeforeP99 != -1 {
		t.Errorf("off %+v\non %+v", off, on)
	}
	if on.P99Ratio != 8.0/5 {
		t.Errorf("on p99 ratio %v", on.P99Ratio)
	}
	v := r.Verdict
	if !v.Judged || !v.Pass || !v.SuccessOK || !v.P99OK || !v.OffFilled || v.OffSuccess != 92.5 || len(v.Notes) != 1 {
		t.Errorf("verdict %+v", v)
	}

	// Quotas on, but the p99 triples and one connect in 500 fails.
	r.Runs[1].Flood = connLatency{Attempts: 500, OK: 499, SuccessPct: 99.8, P50Ms: 3, P99Ms: 15}
	r.Runs[0].PeakFill = 100000 // and the off run never filled the table
	r.summarise()
	v = r.Verdict
	if v.Pass || v.SuccessOK || v.P99OK || v.OffFilled || len(v.Notes) != 4 ||
		!strings.Contains(strings.Join(v.Notes, "\n"), "the rate limit alone held the greedy member (17000 tracked, quota 19660") {
		t.Errorf("verdict %+v", v)
	}

	// A failed p99 misses the target whatever the ratio says.
	r.Runs[1].Flood = connLatency{Attempts: 100, OK: 98, SuccessPct: 98, P99Ms: 3000, P99Failed: true}
	r.Runs[1].Idle.P99Ms = 2000
	r.summarise()
	if r.Verdict.P99OK {
		t.Errorf("a p99 that is a failure met the target: %+v", r.Verdict)
	}

	if v := connJudge(nil, 1, 0); v.Pass || v.Judged || len(v.Notes) != 1 {
		t.Errorf("no rows: %+v", v)
	}
}

func TestFloodWindows(t *testing.T) {
	as := []connAttempt{
		{At: time.Second, Dur: 2 * time.Millisecond},
		{At: 9 * time.Second, Dur: 4 * time.Millisecond},
		{At: 10 * time.Second, Err: "timeout"},
		{At: 14 * time.Second, Dur: time.Millisecond},
	}
	ss := []connSample{{T: 5, Exitd: 0.2, Passed: 10}, {T: 10, Exitd: 0.4, Passed: 20, Fill: 7}, {T: 15, Exitd: 1, Passed: 30}}
	ws := floodWindows(as, ss, 15*time.Second, 10*time.Second, 3*time.Second)
	if len(ws) != 2 {
		t.Fatalf("%+v", ws)
	}
	if w := ws[0]; w.From != 0 || w.To != 10 || w.Success != 100 || w.P99Ms != 4 || math.Abs(w.Exitd-0.3) > 1e-9 || w.Passed != 20 || w.Fill != 7 {
		t.Errorf("first %+v", w)
	}
	if w := ws[1]; w.From != 10 || w.To != 15 || w.Success != 50 || !w.Failed || w.P99Ms != 3000 || w.Exitd != 1 || w.Passed != 30 {
		t.Errorf("second %+v", w)
	}
	// 30.4 s: the last 0.4 s joins the third window.
	ws = floodWindows(nil, nil, 30400*time.Millisecond, 10*time.Second, time.Second)
	if len(ws) != 3 || ws[2].From != 20 || ws[2].To != 30.4 {
		t.Errorf("remainder: %+v", ws)
	}
	if len(floodWindows(nil, nil, 0, 10*time.Second, time.Second)) != 0 {
		t.Error("windows of nothing")
	}
}

func TestLastSecondsMean(t *testing.T) {
	ss := []connSample{{T: 1, Exitd: 9}, {T: 2, Exitd: 1}, {T: 3, Exitd: 2}, {T: 4, Exitd: 3}}
	if got := lastSecondsMean(ss, 2.5); got != 2 {
		t.Errorf("last 2.5 s: %v", got)
	}
	if got := lastSecondsMean(ss, 100); got != 3.75 {
		t.Errorf("all: %v", got)
	}
	if lastSecondsMean(nil, 10) != 0 {
		t.Error("none")
	}
}

func TestConnCostSummarise(t *testing.T) {
	c := &connCost{Runs: []connCostRun{
		{Mode: connModeOff, HoldRate: 500, HoldFrom: 21000, HoldCores: 0.02, UsPer: 30, SysUsPer: 20, Points: []connCostPoint{{1000, 30}, {3000, 30}}},
		{Mode: connModeRules, HoldRate: 500, HoldFrom: 21500, HoldCores: 0.6, UsPer: 100, SysUsPer: 80, Tracked: 20000, Points: []connCostPoint{{1000, 56}, {3000, 108}}},
		{Mode: connModeRules, HoldRate: 500, HoldFrom: 22000, HoldCores: 0.8, UsPer: 120, SysUsPer: 90, Tracked: 24000, Points: []connCostPoint{{2000, 82}}},
		{Mode: connModeOff, HoldRate: 500, HoldFrom: 21000, HoldCores: 0.04, UsPer: 34, SysUsPer: 22, Points: []connCostPoint{{2000, 30}}},
	}}
	c.summarise(10000)
	if c.OffUs != 32 || c.RulesUs != 110 || c.DeltaUs != 78 || c.OffSysUs != 21 || c.RulesSys != 85 || c.ListLen != 24000 {
		t.Errorf("medians %+v", c)
	}
	if c.HoldRate != 500 || c.HoldFrom != 21250 || math.Abs(c.OffHoldCores-0.03) > 1e-9 || math.Abs(c.RulesHoldCore-0.7) > 1e-9 {
		t.Errorf("hold %+v", c)
	}
	if math.Abs(c.RulesSlope-26) > 1e-9 || math.Abs(c.RulesAt-290) > 1e-9 || math.Abs(c.OffSlope) > 1e-9 || math.Abs(c.OffAt-30) > 1e-9 {
		t.Errorf("fits: rules %v/1k, %v at 10k; off %v/1k, %v", c.RulesSlope, c.RulesAt, c.OffSlope, c.OffAt)
	}
}

func TestPrintConnReport(t *testing.T) {
	var b bytes.Buffer
	printConnReport(&b, connTestReport())
	s := b.String()
	for _, want := range []string{
		"1 greedy member vs 9 light", "auto quota 19660",
		"quotas off", "quotas on", "timeout", "55.00%", "never full", "1.6×", "9.5 ms",
		"rep 1 quotas off, light p99 by 10 s: 0-10 s: 9 ms, 100.0% ok, exitd 40%, 80k passed | 10-20 s: timeout ms, 80.0% ok",
		"262144 (100%)", "250000", "100000",
		"CPU of the rules", "3000 new flows/s for 7 s, then 500/s", "519.0", "+26.30", "at 19660 tracked",
		"exitd CPU at 500/s, ~21k tracked", "61%",
		"target (quotas on)", "PASS", "filled the table; light success 92.50%",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
}
