package main

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/internal/netlab"
)

func TestJain(t *testing.T) {
	tests := []struct {
		x    []float64
		want float64
	}{
		{[]float64{1, 1, 1, 1}, 1},
		{[]float64{1, 0}, 0.5},
		{[]float64{1.9, 94.3}, 0.52}, // SCHEDULER.md's FIFO row
		{[]float64{0, 0}, 0},
	}
	for _, tc := range tests {
		if got := Jain(tc.x); math.Abs(got-tc.want) > 0.01 {
			t.Errorf("Jain(%v) = %.3f, want %.3f", tc.x, got, tc.want)
		}
	}
}

func TestMedian(t *testing.T) {
	if median(nil) != 0 || median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Fatal("median wrong")
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Fatal("median sorted its input")
	}
}

func iperfResult(rates ...float64) *netlab.IperfResult {
	r := &netlab.IperfResult{ReceivedBps: 42}
	for i, v := range rates {
		r.Intervals = append(r.Intervals, netlab.IperfInterval{
			Start: time.Duration(i) * 100 * time.Millisecond, End: time.Duration(i+1) * 100 * time.Millisecond, Sum: v})
	}
	return r
}

func TestSteadyAndRampup(t *testing.T) {
	r := iperfResult(10, 20, 46, 48, 50, 50)
	steady, ramp := steadyAndRampup(r, 200*time.Millisecond, 45)
	if ramp != 300*time.Millisecond {
		t.Errorf("ramp %v", ramp)
	}
	if math.Abs(steady-48.5) > 1e-9 {
		t.Errorf("steady %v", steady)
	}
	_, ramp = steadyAndRampup(iperfResult(1, 2), 0, 45)
	if ramp != -1 {
		t.Errorf("never reached: ramp %v", ramp)
	}
	if s, _ := steadyAndRampup(iperfResult(1), time.Hour, 1); s != 42 {
		t.Errorf("fallback to the summary: %v", s)
	}
}

func TestMeanAfter(t *testing.T) {
	r := iperfResult(0, 0, 10, 20)
	if got := meanAfter(r, 200*time.Millisecond); got != 15 {
		t.Fatalf("got %v", got)
	}
	if got := meanAfter(r, time.Hour); got != 42 {
		t.Fatalf("fallback %v", got)
	}
}

func TestRedactKey(t *testing.T) {
	out := redactKey("[Interface]\nPrivateKey = secret\nAddress = x\n")
	if strings.Contains(out, "secret") || !strings.Contains(out, "Address = x") {
		t.Fatal(out)
	}
	if indent("a\nb\n") != "    a\n    b\n" {
		t.Fatalf("%q", indent("a\nb\n"))
	}
}

func TestPrintBench(t *testing.T) {
	r := benchReport{Reps: 1, Seconds: 3, Median: map[string]float64{"exitd/down-1": 2, "upstream/down-1": 1},
		MedianCPU: map[string]float64{"exitd/down-1": 3}, TBF: &tbfReport{ExitdMbps: 48, BarebackMbps: 50, Ratio: 0.96}}
	var b bytes.Buffer
	printBench(&b, r, []string{"exitd", "upstream"})
	s := b.String()
	for _, want := range []string{"2.00", "2.00", "3.00", "ratio 0.960"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
}

func TestPrintFairness(t *testing.T) {
	runs := []fairRun{
		{System: "srr", CC: "cubic", Metrics: map[string]float64{"T1_A_share": 0.49, "T1_total_mbps": 94}},
		{System: "fifo", CC: "cubic", Metrics: map[string]float64{"T1_A_share": 0.02, "T1_total_mbps": 95}},
	}
	var b bytes.Buffer
	printFairness(&b, runs, fairOpts{reps: 1, secs: 15, skip: 5, ccs: []string{"cubic"}, systems: []string{"srr", "fifo"}},
		map[string]float64{"srr": 1.9, "fifo": 2})
	s := b.String()
	for _, want := range []string{"0.490", "0.020", "U (srr/fifo total in T1)", "0.989", "ratio 0.950"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
	if !contains([]string{"a"}, "a") || contains(nil, "a") {
		t.Error("contains")
	}
}

// TestHelpListsEverySubcommand: `exitlab --help` lists every command of
// the dispatch table with its one-line help, and the root dispatches
// nothing else.
func TestHelpListsEverySubcommand(t *testing.T) {
	var b bytes.Buffer
	root := newRootCmd(&b)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(b.String(), "Available Commands:\n")
	if !ok {
		t.Fatalf("no command list in\n%s", b.String())
	}
	listed := map[string]string{} // name → one-line help as printed
	for _, l := range strings.Split(section, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			break
		}
		listed[f[0]] = strings.Join(f[1:], " ")
	}
	table := map[string]bool{}
	for _, newCmd := range subcommands {
		c := newCmd(&binFlags{}, io.Discard)
		name := c.Name()
		table[name] = true
		switch help, ok := listed[name]; {
		case c.Short == "":
			t.Errorf("%s has no one-line help (Short)", name)
		case !ok:
			t.Errorf("--help does not list %s:\n%s", name, b.String())
		case help != strings.Join(strings.Fields(c.Short), " "):
			t.Errorf("--help lists %s as %q, want %q", name, help, c.Short)
		}
	}
	if !table["members-bench"] {
		t.Error("members-bench is not in the dispatch table")
	}
	for _, c := range root.Commands() {
		if name := c.Name(); name != "help" && name != "completion" && !table[name] {
			t.Errorf("%s is dispatched outside the subcommands table", name)
		}
	}
}

func TestCheckSystems(t *testing.T) {
	tests := []struct {
		name    string
		systems []string
		want    string // error text; empty: accepted
	}{
		{"default", []string{"srr", "fifo", "upstream"}, ""},
		{"exitd and debian", []string{"exitd", "debian"}, ""},
		{"typo", []string{"srr", "fifoo"}, `--systems: harness: unknown exit kind "fifoo"`},
		{"bareback has no tunnel", []string{"bareback"}, "--systems: bareback has no tunnel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSystems(tc.systems)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("checkSystems(%q) = %v, want %q", tc.systems, err, tc.want)
			}
		})
	}
}

func TestBenchKinds(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		want  string // kinds joined by spaces, or the error text
	}{
		{"default", nil, "exitd upstream debian bareback"},
		{"two, in the order given", []string{"upstream", "exitd"}, "upstream exitd"},
		{"typo", []string{"exitd", "upstrem"}, `--systems: harness: unknown exit kind "upstrem" (want one of exitd, srr, fifo, upstream, debian, bareback)`},
		{"twice", []string{"exitd", "exitd"}, "--systems: exitd named twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kinds, err := benchKinds(tc.names)
			var got string
			if err != nil {
				got = err.Error()
			} else {
				for i, k := range kinds {
					if i > 0 {
						got += " "
					}
					got += string(k)
				}
			}
			if got != tc.want {
				t.Fatalf("benchKinds(%q) = %q, want %q", tc.names, got, tc.want)
			}
		})
	}
}

func TestSaveReport(t *testing.T) {
	var b strings.Builder
	dir := t.TempDir()
	benchErr := errors.New("bench failed")
	if err := saveReport(&b, dir, "r.json", map[string]int{"x": 1}, benchErr); !errors.Is(err, benchErr) {
		t.Fatalf("the bench's error was lost: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "r.json")); err != nil || !strings.Contains(string(got), `"x": 1`) {
		t.Fatalf("report %q, %v", got, err)
	}
	if !strings.Contains(b.String(), "wrote "+filepath.Join(dir, "r.json")) {
		t.Errorf("output %q", b.String())
	}
	if err := saveReport(&b, "", "r.json", 1, nil); err != nil {
		t.Errorf("no --out: %v", err)
	}
	bad := filepath.Join(dir, "r.json", "sub") // a file where a directory must be
	if err := saveReport(&b, bad, "r.json", 1, nil); err == nil {
		t.Error("a failed write is not reported")
	}
}
