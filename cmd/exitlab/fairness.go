package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/internal/harness"
	"exitd/internal/netlab"
)

type fairOpts struct {
	reps     int
	secs     int
	skip     int
	out      string
	ccs      []string
	upstream string
	members  int // T4
	systems  []string
	only     []string // scenarios to run (T1 includes T2); empty = all
	cc       string   // per run: set on the sockets with iperf3 -C (a child netns may not change the default)
}

func newFairnessCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	o := fairOpts{}
	cmd := &cobra.Command{
		Use:   "fairness",
		Short: "Per-member fairness and latency under load: srr vs fifo vs upstream wireguard-go",
		Long: `Real members (Debian wireguard-go in their own namespaces, kernel TCP) behind a
100 Mbit/s TBF on the exit's member-facing link, exitd pacing at 95 Mbit/s,
for exitd's srr and fifo disciplines and a plain upstream wireguard-go exit,
in the same run:

  T1  member A 1 flow vs member B 64 flows      A's share, Jain's index
  T2  light member C pings while A and B load   added p50/p99 RTT
  T3  ping inside busy member A (8 flows)       added p50/p99 RTT
  T4  N members, one of them with 64 flows      Jain over members
  T5  A floods unresponsive UDP, B one TCP flow B's share
  U   link utilisation in T1                    total vs fifo

Per-member goodput comes from iperf3 -J interval data (receiver), skipping
the first seconds. Writes fairness.json and prints a table of medians.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkSystems(o.systems); err != nil {
				return err
			}
			return fairness(cmd.Context(), b.binaries(), o, stdout)
		},
	}
	cmd.Flags().IntVar(&o.reps, "reps", 5, "repetitions (median reported)")
	cmd.Flags().IntVar(&o.secs, "seconds", 15, "seconds per load run")
	cmd.Flags().IntVar(&o.skip, "skip", 5, "leading seconds not counted")
	cmd.Flags().StringVar(&o.out, "out", "bench-results", "directory for fairness.json")
	cmd.Flags().StringSliceVar(&o.ccs, "cc", []string{"cubic", "bbr"}, "TCP congestion control of the senders")
	cmd.Flags().StringVar(&o.upstream, "upstream", "", "upstream wireguard-go binary (default: build the pinned version)")
	cmd.Flags().IntVar(&o.members, "members", 20, "members in T4")
	cmd.Flags().StringSliceVar(&o.systems, "systems", []string{"srr", "fifo", "upstream"}, "systems to compare")
	cmd.Flags().StringSliceVar(&o.only, "scenarios", nil, "run only these of T1 (with T2), T3, T4, T5 (default all)")
	return cmd
}

// fairRun is one system × cc × rep.
type fairRun struct {
	System, CC string
	Rep        int
	Metrics    map[string]float64
}

const (
	bottleneck = 100_000_000
	pacing     = "95mbit"
)

func fairness(ctx context.Context, bins harness.Binaries, o fairOpts, w io.Writer) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "exitd-fair")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	up := o.upstream
	if up == "" && contains(o.systems, "upstream") {
		fmt.Fprintln(w, "building upstream wireguard-go at the version go.mod pins ...")
		if up, err = harness.BuildUpstream(ctx, dir); err != nil {
			return err
		}
	}
	n := max(o.members, 3)
	lab, err := netlab.New(ctx, netlab.Options{Members: n, DownRate: bottleneck, OffloadsOff: true})
	if err != nil {
		return err
	}
	defer lab.Close()
	for i := 0; i < n; i++ {
		if _, err := lab.Internet.StartIperfServer(ctx, netlab.IperfPort+i); err != nil {
			return err
		}
	}
	var runs []fairRun
	for _, cc := range o.ccs {
		for r := 1; r <= o.reps; r++ {
			for _, sys := range o.systems {
				if err := ctx.Err(); err != nil {
					return err
				}
				m, err := fairSystem(ctx, lab, bins, up, sys, dir, o, n, cc)
				if err != nil {
					return fmt.Errorf("%s/%s rep %d: %w", sys, cc, r, err)
				}
				fmt.Fprintf(w, "%-8s %-5s rep %d  %s\n", sys, cc, r, fmtMetrics(m))
				runs = append(runs, fairRun{System: sys, CC: cc, Rep: r, Metrics: m})
			}
		}
	}
	unshaped, err := fairUnshaped(ctx, bins, dir, o, w)
	if err != nil {
		return fmt.Errorf("unshaped: %w", err)
	}
	rep := map[string]any{"when": time.Now().UTC(), "runs": runs, "unshaped_gbps": unshaped, "options": map[string]any{
		"reps": o.reps, "seconds": o.secs, "skip": o.skip, "bottleneck_bps": bottleneck, "pacing": pacing, "members_t4": n}}
	printFairness(w, runs, o, unshaped)
	b, _ := json.MarshalIndent(rep, "", "  ")
	path := filepath.Join(o.out, "fairness.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nwrote %s\n", path)
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// checkSystems rejects a --systems entry before any lab is built: each must
// be an exit kind with a tunnel the members attach to.
func checkSystems(systems []string) error {
	for _, sys := range systems {
		k, err := harness.ParseExitKind(sys)
		if err != nil {
			return fmt.Errorf("--systems: %w", err)
		}
		if k == harness.ExitBareback {
			return fmt.Errorf("--systems: %s has no tunnel to measure fairness in", sys)
		}
	}
	return nil
}

// startExit starts one system with the lab's first members attached.
func startExit(ctx context.Context, lab *netlab.Lab, bins harness.Binaries, up, sys, dir string, members int, egress string) (*harness.RunningExit, []*harness.Member, error) {
	kind, err := harness.ParseExitKind(sys)
	if err != nil {
		return nil, nil, err
	}
	sub, err := os.MkdirTemp(dir, sys)
	if err != nil {
		return nil, nil, err
	}
	x, err := harness.StartExit(ctx, lab, kind, harness.ExitOptions{Bin: bins, Dir: sub, Upstream: up, EgressRate: egress})
	if err != nil {
		return nil, nil, err
	}
	if x.Exit == nil {
		x.Close()
		return nil, nil, fmt.Errorf("%s: no tunnel for members to attach to", sys)
	}
	var ms []*harness.Member
	for i := 0; i < members; i++ {
		m, err := x.Exit.AddMember(ctx, lab.Members[i], fmt.Sprintf("m%d", i+1))
		if err != nil {
			for _, m := range ms {
				m.Down()
			}
			x.Close()
			return nil, nil, err
		}
		ms = append(ms, m)
	}
	return x, ms, nil
}

// flowSpec is one member's load in a scenario.
type flowSpec struct {
	member  int
	streams int
	udpBps  uint64 // >0: UDP at this rate instead of TCP
}

// runLoad runs the specs concurrently (downloads) and returns each member's
// mean goodput after skip, in bits/s.
func runLoad(ctx context.Context, lab *netlab.Lab, specs []flowSpec, o fairOpts, during func()) ([]float64, error) {
	out := make([]float64, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Add(1)
		go func(i int, s flowSpec) {
			defer wg.Done()
			args := []string{"-c", netlab.Internet4, "-p", fmt.Sprint(netlab.IperfPort + s.member), "-J", "-R",
				"-t", fmt.Sprint(o.secs), "-i", "1", "-P", fmt.Sprint(s.streams), "--connect-timeout", "3000"}
			if s.udpBps > 0 {
				args = append(args, "-u", "-b", fmt.Sprint(s.udpBps), "-l", "1300")
			} else if o.cc != "" {
				args = append(args, "-C", o.cc) // iperf3 applies it on both ends
			}
			b, err := lab.Members[s.member].Command(ctx, "iperf3", args...).Output()
			res, perr := netlab.ParseIperf(b)
			if perr != nil || err != nil {
				errs[i] = fmt.Errorf("iperf3 member %d: %v %v", s.member+1, err, perr)
				return
			}
			out[i] = meanAfter(res, time.Duration(o.skip)*time.Second)
		}(i, s)
	}
	if during != nil {
		during()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	return out, nil
}

func meanAfter(r *netlab.IperfResult, skip time.Duration) float64 {
	var sum float64
	var n int
	for _, iv := range r.Intervals {
		if iv.Start >= skip {
			sum += iv.Sum
			n++
		}
	}
	if n == 0 {
		return r.ReceivedBps
	}
	return sum / float64(n)
}

// Jain is Jain's fairness index (Σx)²/(n·Σx²).
func Jain(x []float64) float64 {
	var s, s2 float64
	for _, v := range x {
		s += v
		s2 += v * v
	}
	if s2 == 0 {
		return 0
	}
	return s * s / (float64(len(x)) * s2)
}

func fairSystem(ctx context.Context, lab *netlab.Lab, bins harness.Binaries, up, sys, dir string, o fairOpts, n int, cc string) (map[string]float64, error) {
	o.cc = cc
	exit, ms, err := startExit(ctx, lab, bins, up, sys, dir, n, pacing)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, m := range ms {
			m.Down()
		}
		exit.Close()
	}()
	m := map[string]float64{}
	for _, sc := range []struct {
		name string
		run  func(context.Context, *netlab.Lab, fairOpts, int, map[string]float64) error
	}{{"T1", scenarioT1T2}, {"T3", scenarioT3}, {"T5", scenarioT5}, {"T4", scenarioT4}} {
		if !o.want(sc.name) {
			continue
		}
		if err := sc.run(ctx, lab, o, n, m); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	return m, nil
}

// loadWithPing runs specs and, after the skipped lead-in, pings the internet
// host from ns; it returns goodputs and the ping result.
func loadWithPing(ctx context.Context, lab *netlab.Lab, o fairOpts, specs []flowSpec, ns *netlab.NS) ([]float64, *netlab.PingResult, error) {
	internet := netip.MustParseAddr(netlab.Internet4)
	var ping *netlab.PingResult
	var perr error
	g, err := runLoad(ctx, lab, specs, o, func() {
		sleepCtx(ctx, time.Duration(o.skip)*time.Second)
		ping, perr = netlab.Ping(ctx, ns, internet, (o.secs-o.skip-1)*10, 100*time.Millisecond)
	})
	if err == nil {
		err = perr
	}
	return g, ping, err
}

func idlePing(ctx context.Context, ns *netlab.NS) (*netlab.PingResult, error) {
	return netlab.Ping(ctx, ns, netip.MustParseAddr(netlab.Internet4), 20, 50*time.Millisecond)
}

// scenarioT1T2: A 1 flow, B 64 flows; light member C pings in the middle.
func scenarioT1T2(ctx context.Context, lab *netlab.Lab, o fairOpts, _ int, m map[string]float64) error {
	idle, err := idlePing(ctx, lab.Members[2])
	if err != nil {
		return err
	}
	g, ping, err := loadWithPing(ctx, lab, o, []flowSpec{{0, 1, 0}, {1, 64, 0}}, lab.Members[2])
	if err != nil {
		return err
	}
	m["T1_A_share"] = g[0] / (g[0] + g[1])
	m["T1_jain"] = Jain(g)
	m["T1_total_mbps"] = (g[0] + g[1]) / 1e6
	m["T2_added_p50_ms"] = ms2(ping.P50 - idle.P50)
	m["T2_added_p99_ms"] = ms2(ping.P99 - idle.P50)
	m["T2_loss"] = ping.Loss()
	return nil
}

// scenarioT3: A 8 flows and B 8 flows; ping from inside A.
func scenarioT3(ctx context.Context, lab *netlab.Lab, o fairOpts, _ int, m map[string]float64) error {
	idle, err := idlePing(ctx, lab.Members[0])
	if err != nil {
		return err
	}
	_, ping, err := loadWithPing(ctx, lab, o, []flowSpec{{0, 8, 0}, {1, 8, 0}}, lab.Members[0])
	if err != nil {
		return err
	}
	m["T3_added_p50_ms"] = ms2(ping.P50 - idle.P50)
	m["T3_added_p99_ms"] = ms2(ping.P99 - idle.P50)
	return nil
}

// scenarioT5: A floods UDP at 1.5x the link, B one TCP flow.
func scenarioT5(ctx context.Context, lab *netlab.Lab, o fairOpts, _ int, m map[string]float64) error {
	g, err := runLoad(ctx, lab, []flowSpec{{0, 1, 150_000_000}, {1, 1, 0}}, o, nil)
	if err != nil {
		return err
	}
	m["T5_tcp_share"] = g[1] / (g[0] + g[1])
	return nil
}

// scenarioT4: n members, member 1 with 64 flows, the others one each.
func scenarioT4(ctx context.Context, lab *netlab.Lab, o fairOpts, n int, m map[string]float64) error {
	var specs []flowSpec
	for i := 0; i < n; i++ {
		s := 1
		if i == 0 {
			s = 64
		}
		specs = append(specs, flowSpec{i, s, 0})
	}
	g, err := runLoad(ctx, lab, specs, o, nil)
	if err != nil {
		return err
	}
	m["T4_jain"] = Jain(g)
	var tot float64
	for i, v := range g {
		tot += v
		m[fmt.Sprintf("T4_member%02d_mbps", i+1)] = v / 1e6
	}
	m["T4_total_mbps"] = tot / 1e6
	return nil
}

// fairUnshaped measures the scheduler's cost: srr vs fifo without a TBF.
func fairUnshaped(ctx context.Context, bins harness.Binaries, dir string, o fairOpts, w io.Writer) (map[string]float64, error) {
	lab, err := netlab.New(ctx, netlab.Options{Members: 1})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	if _, err := lab.Internet.StartIperfServer(ctx, 0); err != nil {
		return nil, err
	}
	res := map[string][]float64{}
	for r := 1; r <= o.reps; r++ {
		for _, sys := range []string{"srr", "fifo"} {
			exit, ms, err := startExit(ctx, lab, bins, "", sys, dir, 1, "")
			if err != nil {
				return nil, err
			}
			ir, err := lab.Members[0].Iperf(ctx, netlab.IperfOptions{Server: netip.MustParseAddr(netlab.Internet4),
				Duration: 5 * time.Second, Streams: 8, Reverse: true, Omit: time.Second})
			ms[0].Down()
			exit.Close()
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(w, "unshaped %-5s rep %d  %.2f Gbit/s\n", sys, r, ir.ReceivedBps/1e9)
			res[sys] = append(res[sys], ir.ReceivedBps/1e9)
		}
	}
	return map[string]float64{"srr": median(res["srr"]), "fifo": median(res["fifo"])}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func ms2(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func metricNames() []string {
	return []string{"T1_A_share", "T1_jain", "T1_total_mbps", "T2_added_p50_ms", "T2_added_p99_ms",
		"T3_added_p50_ms", "T3_added_p99_ms", "T4_jain", "T4_total_mbps", "T5_tcp_share"}
}

func fmtMetrics(m map[string]float64) string {
	var b strings.Builder
	for _, k := range metricNames() {
		fmt.Fprintf(&b, "%s=%.3g ", k, m[k])
	}
	return b.String()
}

func printFairness(w io.Writer, runs []fairRun, o fairOpts, unshaped map[string]float64) {
	fmt.Fprintf(w, "\nFairness under a 100 Mbit/s bottleneck, medians of %d runs (%d s, first %d s skipped)\n", o.reps, o.secs, o.skip)
	targets := map[string]string{
		"T1_A_share": ">= 0.45", "T1_jain": ">= 0.99", "T2_added_p50_ms": "<= 1", "T2_added_p99_ms": "<= 5",
		"T3_added_p50_ms": "<= 5", "T3_added_p99_ms": "<= 15", "T4_jain": ">= 0.98", "T5_tcp_share": ">= 0.45",
	}
	for _, cc := range o.ccs {
		fmt.Fprintf(w, "\n%s:\n", cc)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "metric\t%s\ttarget (srr)\t\n", strings.Join(o.systems, "\t"))
		med := map[string]float64{}
		for _, k := range metricNames() {
			row := []string{k}
			for _, sys := range o.systems {
				var v []float64
				for _, r := range runs {
					if r.System == sys && r.CC == cc {
						v = append(v, r.Metrics[k])
					}
				}
				med[sys+k] = median(v)
				row = append(row, fmt.Sprintf("%.3f", med[sys+k]))
			}
			row = append(row, targets[k])
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		if f := med["fifo"+"T1_total_mbps"]; f > 0 {
			fmt.Fprintf(tw, "U (srr/fifo total in T1)\t%.3f\t\t\t>= 0.98\t\n", med["srr"+"T1_total_mbps"]/f)
		}
		tw.Flush()
	}
	if unshaped["fifo"] > 0 {
		fmt.Fprintf(w, "\nunshaped, 1 member 8 flows down: srr %.2f Gbit/s, fifo %.2f Gbit/s, ratio %.3f (target >= 0.95)\n",
			unshaped["srr"], unshaped["fifo"], unshaped["srr"]/unshaped["fifo"])
	}
}

// want reports whether scenario sc is selected.
func (o fairOpts) want(sc string) bool { return len(o.only) == 0 || contains(o.only, sc) }
