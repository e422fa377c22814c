package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/internal/harness"
	"exitd/internal/netlab"
)

type benchOpts struct {
	reps     int
	secs     int
	out      string
	upstream string // path of the upstream-built wireguard-go; built when empty
	skipTBF  bool
	systems  []string // of harness.ExitKind; all four when empty
	perf     string   // directory for a perf profile of each exit process per scenario; none when empty
}

func newBenchCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	o := benchOpts{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Throughput and exit CPU per GB: exitd vs upstream wireguard-go, Debian's wireguard-go, bareback",
		Long: `Measures, in one lab and one run, alternating the systems (A B C D A B C D):

  exitd        this exit node (scheduler + nftables NAT)
  upstream     wireguard-go built from the module version go.mod pins, as a plain exit + nft masquerade
  debian       Debian's wireguard-go as a plain exit + nft masquerade
  bareback     the same path with no tunnel: routed and masqueraded by the kernel

for 1 and 8 TCP streams, download and upload, with an upstream-built
wireguard-go as the member client (Debian's client caps throughput). Reports
median goodput, the ratio to upstream, and exit CPU-seconds per GB. Then, on
a 50 Mbit/s TBF, exitd's goodput as a ratio of bareback and the time one flow
takes to reach 90 % of the link. Writes bench.json and prints a table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench(cmd.Context(), b.binaries(), o, stdout)
		},
	}
	cmd.Flags().IntVar(&o.reps, "reps", 5, "repetitions per system and scenario (median reported)")
	cmd.Flags().IntVar(&o.secs, "seconds", 5, "seconds per iperf3 run (first second omitted)")
	cmd.Flags().StringVar(&o.out, "out", "bench-results", "directory for bench.json")
	cmd.Flags().StringVar(&o.upstream, "upstream", "", "upstream wireguard-go binary (default: go build the pinned module version)")
	cmd.Flags().BoolVar(&o.skipTBF, "skip-tbf", false, "skip the 50 Mbit/s bareback-ratio part")
	cmd.Flags().StringSliceVar(&o.systems, "systems", nil, "systems to measure, in this order (exitd, upstream, debian, bareback; default all four)")
	cmd.Flags().StringVar(&o.perf, "perf", "", "directory for `perf record -g` profiles of each exit process per scenario (SYSTEM-SCENARIO-repN.data); profiling costs throughput, so keep it out of the figures")
	return cmd
}

type scenario struct {
	Name    string
	Streams int
	Reverse bool // download
}

func scenarios() []scenario {
	return []scenario{
		{"down-1", 1, true}, {"down-8", 8, true}, {"up-1", 1, false}, {"up-8", 8, false},
	}
}

// sample is one iperf3 run.
type sample struct {
	System   string  `json:"system"`
	Scenario string  `json:"scenario"`
	Rep      int     `json:"rep"`
	Gbps     float64 `json:"gbps"`
	CPUPerGB float64 `json:"exit_cpu_s_per_gb,omitempty"`
	Retrans  int     `json:"retransmits"`
}

type benchReport struct {
	When      time.Time          `json:"when"`
	Reps      int                `json:"reps"`
	Seconds   int                `json:"seconds"`
	Samples   []sample           `json:"samples"`
	Median    map[string]float64 `json:"median_gbps"`         // system/scenario
	MedianCPU map[string]float64 `json:"median_cpu_s_per_gb"` // system/scenario
	TBF       *tbfReport         `json:"tbf_50mbit,omitempty"`
}

type tbfReport struct {
	ExitdMbps, BarebackMbps float64
	Ratio                   float64
	ExitdRampup             time.Duration // time to 90 % of the link
	BarebackRampup          time.Duration
}

func bench(ctx context.Context, bins harness.Binaries, o benchOpts, w io.Writer) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "exitd-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	up := o.upstream
	if up == "" {
		fmt.Fprintln(w, "building upstream wireguard-go at the version go.mod pins ...")
		if up, err = harness.BuildUpstream(ctx, dir); err != nil {
			return err
		}
	}
	debian, err := exec.LookPath("wireguard-go")
	if err != nil {
		return fmt.Errorf("Debian's wireguard-go not installed (apt-get install wireguard-go): %w", err)
	}
	bins.WireguardGo = up // throughput client: upstream-built

	rep := benchReport{When: time.Now().UTC(), Reps: o.reps, Seconds: o.secs,
		Median: map[string]float64{}, MedianCPU: map[string]float64{}}
	lab, err := netlab.New(ctx, netlab.Options{Members: 1})
	if err != nil {
		return err
	}
	defer lab.Close()
	if _, err := lab.Internet.StartIperfServer(ctx, 0); err != nil {
		return err
	}
	kinds, err := benchKinds(o.systems)
	if err != nil {
		return err
	}
	var systems []string
	for _, k := range kinds {
		systems = append(systems, string(k))
	}
	if o.perf != "" {
		if err := os.MkdirAll(o.perf, 0o755); err != nil {
			return err
		}
	}
	for r := 1; r <= o.reps; r++ {
		for _, kind := range kinds {
			sys := string(kind)
			if err := ctx.Err(); err != nil {
				return err
			}
			samples, err := runSystem(ctx, lab, bins, up, debian, kind, dir, o.secs, r, o.perf)
			if err != nil {
				return fmt.Errorf("%s rep %d: %w", sys, r, err)
			}
			for _, s := range samples {
				fmt.Fprintf(w, "rep %d  %-9s %-7s %6.2f Gbit/s  cpu %5.2f s/GB\n", r, s.System, s.Scenario, s.Gbps, s.CPUPerGB)
			}
			rep.Samples = append(rep.Samples, samples...)
		}
	}
	for _, sys := range systems {
		for _, sc := range scenarios() {
			var g, c []float64
			for _, s := range rep.Samples {
				if s.System == sys && s.Scenario == sc.Name {
					g = append(g, s.Gbps)
					if s.CPUPerGB > 0 {
						c = append(c, s.CPUPerGB)
					}
				}
			}
			rep.Median[sys+"/"+sc.Name] = median(g)
			rep.MedianCPU[sys+"/"+sc.Name] = median(c)
		}
	}
	lab.Close()
	if !o.skipTBF {
		t, err := benchTBF(ctx, bins, dir, o, w)
		if err != nil {
			return fmt.Errorf("tbf: %w", err)
		}
		rep.TBF = t
	}
	printBench(w, rep, systems)
	b, _ := json.MarshalIndent(rep, "", "  ")
	path := filepath.Join(o.out, "bench.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s\n", path)
	return nil
}

// runSystem sets up one system, runs every scenario once, and tears it down.
func runSystem(ctx context.Context, lab *netlab.Lab, bins harness.Binaries, up, debian string, kind harness.ExitKind, dir string, secs, r int, perfDir string) ([]sample, error) {
	sys := string(kind)
	sub, err := os.MkdirTemp(dir, sys)
	if err != nil {
		return nil, err
	}
	x, err := harness.StartExit(ctx, lab, kind, harness.ExitOptions{Bin: bins, Dir: sub, Upstream: up, Debian: debian})
	if err != nil {
		return nil, err
	}
	defer x.Close()
	exit := x.Exit // nil for bareback: no member to add, no process to charge
	if exit != nil {
		m, err := exit.AddMember(ctx, lab.Members[0], "bench")
		if err != nil {
			return nil, err
		}
		defer m.Down()
	}
	var out []sample
	for _, sc := range scenarios() {
		var cpu0 float64
		stopPerf := func() []string { return nil }
		if exit != nil {
			cpu0, _ = harness.CPUSeconds(exit.Pid())
			if perfDir != "" {
				data := filepath.Join(perfDir, fmt.Sprintf("%s-%s-rep%d.perf.data", sys, sc.Name, r))
				if stopPerf, err = startPerf(data, []int{exit.Pid()}); err != nil {
					return nil, err
				}
			}
		}
		res, err := lab.Members[0].Iperf(ctx, netlab.IperfOptions{
			Server: netip.MustParseAddr(netlab.Internet4), Duration: time.Duration(secs) * time.Second,
			Streams: sc.Streams, Reverse: sc.Reverse, Omit: time.Second,
		})
		stopPerf()
		if err != nil {
			return nil, err
		}
		s := sample{System: sys, Scenario: sc.Name, Rep: r, Gbps: res.ReceivedBps / 1e9, Retrans: res.Retransmits}
		if exit != nil {
			cpu1, _ := harness.CPUSeconds(exit.Pid())
			gb := res.ReceivedBps / 8 * float64(secs) / 1e9 // includes the omitted second: iperf3 counts it in CPU
			if gb > 0 {
				s.CPUPerGB = (cpu1 - cpu0) / gb
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// benchKinds turns --systems into exit kinds, in the order given; all four
// of the bench's systems when none are named.
func benchKinds(names []string) ([]harness.ExitKind, error) {
	if len(names) == 0 {
		return []harness.ExitKind{harness.ExitExitd, harness.ExitUpstream, harness.ExitDebian, harness.ExitBareback}, nil
	}
	var out []harness.ExitKind
	seen := map[harness.ExitKind]bool{}
	for _, n := range names {
		k, err := harness.ParseExitKind(n)
		if err != nil {
			return nil, fmt.Errorf("--systems: %w", err)
		}
		if seen[k] {
			return nil, fmt.Errorf("--systems: %s named twice", n)
		}
		seen[k] = true
		out = append(out, k)
	}
	return out, nil
}

// benchTBF measures exitd against bareback through a 50 Mbit/s TBF.
func benchTBF(ctx context.Context, bins harness.Binaries, dir string, o benchOpts, w io.Writer) (*tbfReport, error) {
	const rate = 50_000_000
	lab, err := netlab.New(ctx, netlab.Options{Members: 1, DownRate: rate})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	if _, err := lab.Internet.StartIperfServer(ctx, 0); err != nil {
		return nil, err
	}
	secs := max(o.secs, 8)
	var ex, bb, exUp, bbUp []float64
	for r := 1; r <= o.reps; r++ {
		for _, kind := range []harness.ExitKind{harness.ExitExitd, harness.ExitBareback} {
			sys := string(kind)
			sub, _ := os.MkdirTemp(dir, "tbf")
			x, err := harness.StartExit(ctx, lab, kind, harness.ExitOptions{Bin: bins, Dir: sub})
			if err != nil {
				return nil, err
			}
			closer := x.Close
			if x.Exit != nil {
				m, err := x.Exit.AddMember(ctx, lab.Members[0], "tbf")
				if err != nil {
					x.Close()
					return nil, err
				}
				closer = func() error { m.Down(); return x.Close() }
			}
			res, err := lab.Members[0].Iperf(ctx, netlab.IperfOptions{
				Server: netip.MustParseAddr(netlab.Internet4), Duration: time.Duration(secs) * time.Second,
				Streams: 1, Reverse: true, Interval: 100 * time.Millisecond,
			})
			closer()
			if err != nil {
				return nil, err
			}
			steady, ramp := steadyAndRampup(res, 2*time.Second, 0.9*rate)
			fmt.Fprintf(w, "tbf rep %d  %-9s %6.2f Mbit/s  to-90%% %v\n", r, sys, steady/1e6, ramp)
			if sys == "exitd" {
				ex, exUp = append(ex, steady), append(exUp, ramp.Seconds())
			} else {
				bb, bbUp = append(bb, steady), append(bbUp, ramp.Seconds())
			}
		}
	}
	t := &tbfReport{ExitdMbps: median(ex) / 1e6, BarebackMbps: median(bb) / 1e6,
		ExitdRampup: time.Duration(median(exUp) * float64(time.Second)), BarebackRampup: time.Duration(median(bbUp) * float64(time.Second))}
	if t.BarebackMbps > 0 {
		t.Ratio = t.ExitdMbps / t.BarebackMbps
	}
	return t, nil
}

// steadyAndRampup returns the mean goodput after skip, and the end of the
// first interval whose rate reached target (the spool-up time).
func steadyAndRampup(r *netlab.IperfResult, skip time.Duration, target float64) (float64, time.Duration) {
	var sum float64
	var n int
	ramp := time.Duration(-1)
	for _, iv := range r.Intervals {
		if ramp < 0 && iv.Sum >= target {
			ramp = iv.End
		}
		if iv.Start >= skip {
			sum += iv.Sum
			n++
		}
	}
	if n == 0 {
		return r.ReceivedBps, ramp
	}
	return sum / float64(n), ramp
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printBench(w io.Writer, r benchReport, systems []string) {
	fmt.Fprintf(w, "\nThroughput, median of %d runs of %d s (Gbit/s; ratio to upstream wireguard-go; exit CPU-s per GB)\n", r.Reps, r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := []string{"system"}
	for _, sc := range scenarios() {
		hdr = append(hdr, sc.Name, "×up", "cpu/GB")
	}
	fmt.Fprintln(tw, strings.Join(hdr, "\t")+"\t")
	for _, sys := range systems {
		row := []string{sys}
		for _, sc := range scenarios() {
			g := r.Median[sys+"/"+sc.Name]
			u := r.Median["upstream/"+sc.Name]
			ratio := "-"
			if u > 0 {
				ratio = fmt.Sprintf("%.2f", g/u)
			}
			cpu := "-"
			if c := r.MedianCPU[sys+"/"+sc.Name]; c > 0 {
				cpu = fmt.Sprintf("%.2f", c)
			}
			row = append(row, fmt.Sprintf("%.2f", g), ratio, cpu)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	if t := r.TBF; t != nil {
		fmt.Fprintf(w, "\n50 Mbit/s TBF, 1 flow down: exitd %.2f Mbit/s, bareback %.2f Mbit/s, ratio %.3f (target >= 0.96)\n",
			t.ExitdMbps, t.BarebackMbps, t.Ratio)
		fmt.Fprintf(w, "time to 90%% of the link: exitd %v, bareback %v (target <= 1 s)\n", t.ExitdRampup, t.BarebackRampup)
	}
}
