package main

// dns-bench: exitd's resolver (package dns) against Debian's unbound as a
// caching forwarder, side by side in one lab (docs/performance.md, "DNS").
//
//	member1 ("client")   dnsperf, 198.18.1.1
//	   │  hub bridge
//	exit ("resolver")    exitd's resolver: `exitlab dns-bench serve`, 198.18.0.1:53
//	   │                 unbound,                                   198.18.0.1:5353
//	   │  WAN router     (one system at a time: A B A B ...)
//	inet ("auth")        in-process miekg/dns server, 203.0.113.2:53,
//	                     replies 1 ms late: netem on its link, or a sleep in
//	                     the server on kernels without sch_netem
//
// Each repetition starts a fresh resolver and runs, in order: a warm-up over
// the cache-hit names, fixed offered loads (dnsperf -Q, per-query latencies
// from -v), saturation (no -Q), and cache misses (unique names, each once).
// After the repetitions each system is started once more to warm --rss-names
// unique names at a bounded rate and have its RSS read. Everything runs in
// the lab's namespaces; Lab.Close removes them and every process in them.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"exitd/dns"
	"exitd/internal/netlab"
)

// Systems and lab addresses.
const (
	dnsbExitd   = "exitd"
	dnsbUnbound = "unbound"

	dnsbAuthAddr    = netlab.Internet4 + ":53"
	dnsbExitdAddr   = netlab.ExitUnderlay4 + ":53"
	dnsbUnboundAddr = netlab.ExitUnderlay4 + ":5353"

	dnsbHitZone  = "bench.test."
	dnsbMissZone = "miss.test."
	dnsbTTL      = 3600

	dnsbTimeout = 2 // dnsperf -t: seconds before a query counts as lost
)

// Targets from the issue.
const (
	dnsbTargetHitRatio = 0.8   // cache-hit throughput ≥ 0.8× unbound's
	dnsbTargetP99Ms    = 1.0   // p99 ≤ 1 ms at 10k qps
	dnsbTargetP99Load  = 10000 // the load the p99 target applies to
	dnsbTargetRSSMB    = 400.0 // RSS ≤ 400 MB (10^6 bytes) with 1M names
)

type dnsbOpts struct {
	reps        int
	seconds     time.Duration // each fixed-load and saturation run
	loads       []int         // offered cache-hit loads, qps
	hitNames    int
	clients     int // dnsperf -c
	threads     int // dnsperf -T
	outstanding int // dnsperf -q at saturation and for misses
	missNames   int
	missQPS     int
	rssNames    int
	rssQPS      int
	delay       time.Duration
	cache       int
	unbound     string
	dnsperf     string
	out         string
	cpuprofile  string
}

func newDNSBenchCmd(_ *binFlags, stdout io.Writer) *cobra.Command {
	o := dnsbOpts{}
	cmd := &cobra.Command{
		Use:   "dns-bench",
		Short: "DNS resolver: exitd vs Debian's unbound — cache-hit qps and latency, cache-miss qps, RSS per cached name",
		Long: `Runs exitd's resolver (package dns, in a child process) and Debian's unbound
as a caching forwarder in the lab's exit namespace, one at a time and
alternating (A B A B), both forwarding to the same authoritative server (a
synthetic zone in this process, in the internet namespace, --delay away
one way). dnsperf in member 1's namespace drives them:

  hit-N     --hit-names names, warmed, then queried repeatedly at N qps
            offered (--loads) for --seconds: achieved qps, latency avg,
            p50 and p99 (dnsperf -v, lost queries counted at the timeout)
  hit-max   the same names without -Q (--clients, --threads, --outstanding)
  miss      --miss-names unique names, each once, at most --miss-qps
  rss       a fresh process warmed with --rss-names unique names at
            --rss-qps; RSS before and after, per 100k names, at 1M names
            (extrapolated and labelled so when fewer were warmed)

Resolver CPU per query comes from /proc. exitd: 2M cache entries, rate
limit off, rebinding protection on (denying private, loopback and
link-local answers; the zone answers from 198.18.0.0/15). unbound: 2
threads, caches sized for 1M names, iterator only (neither validates).
Targets: hit-max ≥ 0.8× unbound, p99 ≤ 1 ms at 10k qps, RSS ≤ 400 MB at 1M
names. Writes dns.json and dns.md to --out and prints the table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			r, err := dnsBench(cmd.Context(), o, cmd.ErrOrStderr())
			if r != nil {
				r.summarize()
				md := r.markdown()
				fmt.Fprint(stdout, md)
				if o.out != "" {
					werr := writeReport(o.out, "dns.json", r)
					if werr == nil {
						werr = os.WriteFile(filepath.Join(o.out, "dns.md"), []byte(md), 0o644)
					}
					err = errors.Join(err, werr)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.reps, "reps", 3, "repetitions per system (alternating; medians reported)")
	f.DurationVar(&o.seconds, "seconds", 8*time.Second, "length of each fixed-load and saturation run")
	f.IntSliceVar(&o.loads, "loads", []int{10000, 50000}, "offered cache-hit loads in qps (dnsperf -Q)")
	f.IntVar(&o.hitNames, "hit-names", 1000, "distinct names in the cache-hit query file")
	f.IntVar(&o.clients, "clients", 8, "dnsperf -c (client sockets)")
	f.IntVar(&o.threads, "threads", 2, "dnsperf -T")
	f.IntVar(&o.outstanding, "outstanding", 400, "dnsperf -q at saturation and for misses")
	f.IntVar(&o.missNames, "miss-names", 30000, "unique names per cache-miss run")
	f.IntVar(&o.missQPS, "miss-qps", 100000, "offered load cap of the cache-miss run")
	f.IntVar(&o.rssNames, "rss-names", 200000, "unique names warmed before reading RSS (0: skip; 1000000 measures the target directly)")
	f.IntVar(&o.rssQPS, "rss-qps", 40000, "offered load cap while warming for RSS")
	f.DurationVar(&o.delay, "delay", time.Millisecond, "one-way delay to the authoritative server (netem)")
	f.IntVar(&o.cache, "cache-entries", 2000000, "exitd's dns.Config.CacheEntries")
	f.StringVar(&o.unbound, "unbound", "unbound", "unbound binary (apt-get install unbound)")
	f.StringVar(&o.dnsperf, "dnsperf", "dnsperf", "dnsperf binary (apt-get install dnsperf)")
	f.StringVar(&o.out, "out", "bench-results", "directory for dns.json and dns.md (empty: none)")
	f.StringVar(&o.cpuprofile, "cpuprofile", "", "after the runs, profile exitd's resolver under saturating load into this file")
	cmd.AddCommand(newDNSServeCmd())
	return cmd
}

func (o *dnsbOpts) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("dns-bench: "+format, args...)) }
	if o.reps < 1 {
		bad("--reps %d: at least 1", o.reps)
	}
	if o.seconds < time.Second || o.seconds > 10*time.Minute {
		bad("--seconds %v: between 1s and 10m", o.seconds)
	}
	for _, l := range o.loads {
		if l < 1 || l > 1000000 {
			bad("--loads %d: between 1 and 1,000,000 qps", l)
		}
	}
	if o.hitNames < 1 || o.hitNames > 1000000 {
		bad("--hit-names %d: between 1 and 1,000,000", o.hitNames)
	}
	if o.clients < 1 || o.threads < 1 || o.threads > o.clients {
		bad("--clients %d, --threads %d: at least 1 each, threads ≤ clients", o.clients, o.threads)
	}
	if o.outstanding < 1 || o.outstanding > 65535 {
		bad("--outstanding %d: between 1 and 65535", o.outstanding)
	}
	if o.missNames < 0 || o.rssNames < 0 {
		bad("--miss-names %d, --rss-names %d: not negative", o.missNames, o.rssNames)
	}
	if o.missQPS < 1 || o.rssQPS < 1 {
		bad("--miss-qps %d, --rss-qps %d: at least 1", o.missQPS, o.rssQPS)
	}
	if o.delay < 0 || o.delay > time.Second {
		bad("--delay %v: between 0 and 1s", o.delay)
	}
	if o.cache < 1 {
		bad("--cache-entries %d: at least 1", o.cache)
	} else if need := o.hitNames + o.reps*o.missNames; o.rssNames > o.cache || need > o.cache {
		bad("--cache-entries %d holds fewer than the names warmed (%d per rep run, %d for RSS)", o.cache, need, o.rssNames)
	}
	if o.dnsperf == "" {
		bad("--dnsperf: empty")
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------------------
// Report.

type dnsbReport struct {
	Date     string   `json:"date"`
	Machine  string   `json:"machine"`
	Versions []string `json:"versions"`
	Options  struct {
		Reps        int     `json:"reps"`
		Seconds     float64 `json:"seconds"`
		Loads       []int   `json:"loads_qps"`
		HitNames    int     `json:"hit_names"`
		Clients     int     `json:"clients"`
		Threads     int     `json:"threads"`
		Outstanding int     `json:"outstanding"`
		MissNames   int     `json:"miss_names"`
		MissQPS     int     `json:"miss_qps_cap"`
		RSSNames    int     `json:"rss_names"`
		RSSQPS      int     `json:"rss_qps_cap"`
		DelayMs     float64 `json:"upstream_delay_ms"`
	} `json:"options"`
	Runs    []dnsbRun `json:"runs"`
	RSS     []dnsbRSS `json:"rss"`
	Rows    []dnsbRow `json:"table"`
	Profile string    `json:"cpuprofile,omitempty"`
	// DelayVia says how the upstream delay was made.
	DelayVia string `json:"upstream_delay_via"`
	// LoadAvg is /proc/loadavg at the start and at the end: the machine is
	// shared, and a load well above its CPU count makes every figure noisy.
	LoadAvg []string `json:"loadavg"`
	Error   string   `json:"error,omitempty"`
}

// dnsbRun is one dnsperf run against one system.
type dnsbRun struct {
	System   string `json:"system"`
	Rep      int    `json:"rep"`
	Scenario string `json:"scenario"` // hit-N, hit-max, miss
	dnsbPerfResult
	CPUSeconds    float64 `json:"resolver_cpu_seconds"`
	CPUMicrosPerQ float64 `json:"resolver_cpu_us_per_query"`
	RSSMiB        float64 `json:"resolver_rss_mib_after"`
}

// dnsbRSS is the memory of one system with many cached names.
type dnsbRSS struct {
	System       string  `json:"system"`
	Names        uint64  `json:"names_answered"`
	Lost         uint64  `json:"queries_lost"`
	WarmSeconds  float64 `json:"warm_seconds"`
	WarmQPS      float64 `json:"warm_qps"`
	BaseMiB      float64 `json:"rss_idle_mib"`
	AfterMiB     float64 `json:"rss_after_mib"`
	Per100kMiB   float64 `json:"rss_per_100k_names_mib"`
	At1MMiB      float64 `json:"rss_at_1m_names_mib"`
	Extrapolated bool    `json:"at_1m_extrapolated"`
	// exitd only, from the child when it stopped: its cache's entry count
	// and the Go heap still live after a GC (RSS also holds GC headroom).
	CacheEntries int     `json:"cache_entries,omitempty"`
	HeapLiveMiB  float64 `json:"heap_live_mib,omitempty"`
}

// dnsbRow is one line of the table: medians over the repetitions.
type dnsbRow struct {
	Scenario string  `json:"scenario"`
	Unit     string  `json:"unit"`
	Exitd    float64 `json:"exitd"`
	Unbound  float64 `json:"unbound"`
	Ratio    float64 `json:"ratio"` // exitd / unbound; 0 when unbound has no figure
	Target   string  `json:"target,omitempty"`
	Verdict  string  `json:"verdict,omitempty"` // met, MISSED
}

// ---------------------------------------------------------------------------
// The run.

type dnsbBench struct {
	ctx  context.Context
	o    dnsbOpts
	lab  *netlab.Lab
	dir  string
	self string
	log  func(string, ...any)
	seq  int // dnsperf output files
}

func dnsBench(ctx context.Context, o dnsbOpts, logw io.Writer) (*dnsbReport, error) {
	r := &dnsbReport{Date: time.Now().Format("2006-01-02 15:04 MST"), Machine: dnsbMachine()}
	r.Options.Reps, r.Options.Seconds, r.Options.Loads = o.reps, o.seconds.Seconds(), o.loads
	r.Options.HitNames, r.Options.Clients, r.Options.Threads, r.Options.Outstanding = o.hitNames, o.clients, o.threads, o.outstanding
	r.Options.MissNames, r.Options.MissQPS, r.Options.RSSNames, r.Options.RSSQPS = o.missNames, o.missQPS, o.rssNames, o.rssQPS
	r.Options.DelayMs = float64(o.delay) / float64(time.Millisecond)
	err := dnsBenchRun(ctx, o, r, logw)
	if err != nil {
		r.Error = err.Error()
	}
	return r, err
}

func dnsBenchRun(ctx context.Context, o dnsbOpts, r *dnsbReport, logw io.Writer) error {
	b := &dnsbBench{ctx: ctx, o: o, log: func(format string, args ...any) { fmt.Fprintf(logw, "dns-bench: "+format+"\n", args...) }}
	var err error
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.dir, err = os.MkdirTemp("", "xdnsb"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)

	if b.lab, err = netlab.New(ctx, netlab.Options{Members: 1}); err != nil {
		return err
	}
	defer b.lab.Close()
	b.log("lab %s: client (member 1), resolver (exit), auth (internet host, %v one way)", b.lab.Prefix, o.delay)
	r.LoadAvg = append(r.LoadAvg, dnsbLoadAvg())
	defer func() { r.LoadAvg = append(r.LoadAvg, dnsbLoadAvg()) }()
	systems := []string{dnsbExitd}
	if o.unbound != "" {
		systems = append(systems, dnsbUnbound)
	}
	r.Versions = b.versions()
	// The delay: netem on the auth host's only link (every reply waits
	// o.delay; the limit keeps a fast miss run from overflowing the delay
	// line). Kernels built without sch_netem get it in the auth server
	// instead: each answer is written o.delay after the query arrived.
	var inServer time.Duration
	r.DelayVia = "none"
	if o.delay > 0 {
		r.DelayVia = "netem on the auth host's link"
		out, err := b.lab.Internet.Exec(ctx, "tc", "qdisc", "replace", "dev", netlab.InternetIface, "root",
			"netem", "delay", fmt.Sprintf("%dus", o.delay.Microseconds()), "limit", "100000")
		if err != nil {
			if !strings.Contains(string(out), "qdisc kind is unknown") {
				return err
			}
			b.log("no netem in this kernel: the auth server delays its answers by %v instead", o.delay)
			r.DelayVia, inServer = "auth server (kernel without sch_netem)", o.delay
		}
	}
	auth, err := dnsbStartAuth(b.lab.Internet, dnsbAuthAddr, inServer)
	if err != nil {
		return err
	}
	defer auth.close()
	hitFile, err := b.nameFile("hit", o.hitNames, func(i int) string { return fmt.Sprintf("h%d.%s", i, dnsbHitZone) })
	if err != nil {
		return err
	}

	for rep := 1; rep <= o.reps; rep++ {
		for _, sys := range systems {
			runs, err := b.rep(sys, rep, hitFile)
			r.Runs = append(r.Runs, runs...)
			if err != nil {
				return fmt.Errorf("%s rep %d: %w", sys, rep, err)
			}
		}
	}
	if o.rssNames > 0 {
		rssFile, err := b.nameFile("rss", o.rssNames, func(i int) string { return fmt.Sprintf("r%d.%s", i, dnsbMissZone) })
		if err != nil {
			return err
		}
		for _, sys := range systems {
			m, err := b.rss(sys, rssFile)
			if err != nil {
				return fmt.Errorf("%s rss: %w", sys, err)
			}
			r.RSS = append(r.RSS, m)
		}
	}
	if o.cpuprofile != "" {
		p, err := filepath.Abs(o.cpuprofile)
		if err != nil {
			return err
		}
		if err := b.profile(p, hitFile); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		r.Profile = p
	}
	return nil
}

// nameFile writes a dnsperf query file of n A queries.
func (b *dnsbBench) nameFile(tag string, n int, name func(int) string) (string, error) {
	p := filepath.Join(b.dir, tag+".txt")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, "%s A\n", name(i))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return p, f.Close()
}

// rep runs one repetition's scenarios against a fresh resolver.
func (b *dnsbBench) rep(sys string, rep int, hitFile string) ([]dnsbRun, error) {
	b.log("%s, rep %d of %d", sys, rep, b.o.reps)
	res, err := b.start(sys, "")
	if err != nil {
		return nil, err
	}
	defer res.stop()
	// Warm-up: every hit name, twice, at a bounded rate.
	if _, err := b.dnsperf(res.addr, dnsbPerfSpec{File: hitFile, Runs: 2, QPS: 20000, Seconds: 30, Clients: 1, Threads: 1, Outstanding: 100}); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var runs []dnsbRun
	measure := func(scenario string, spec dnsbPerfSpec) error {
		cpu0 := dnsbCPUSeconds(res.pid())
		out, err := b.dnsperf(res.addr, spec)
		if err != nil {
			return fmt.Errorf("%s: %w", scenario, err)
		}
		run := dnsbRun{System: sys, Rep: rep, Scenario: scenario, dnsbPerfResult: *out, RSSMiB: rssMiB(res.pid())}
		run.CPUSeconds = dnsbCPUSeconds(res.pid()) - cpu0
		if out.Completed > 0 {
			run.CPUMicrosPerQ = run.CPUSeconds * 1e6 / float64(out.Completed)
		}
		b.log("  %-10s %s", scenario, run.line())
		runs = append(runs, run)
		return nil
	}
	secs := b.o.seconds.Seconds()
	for _, q := range b.o.loads {
		// Room for a second's worth of queries in flight: a resolver that
		// stalls must not stall the sender too (coordinated omission), so
		// stalls show in the latencies instead of in a lower offered rate.
		spec := dnsbPerfSpec{File: hitFile, QPS: q, Seconds: secs, Clients: b.o.clients, Threads: b.o.threads,
			Outstanding: min(max(b.o.outstanding, q), 65535), Verbose: true}
		if err := measure(fmt.Sprintf("hit-%d", q), spec); err != nil {
			return runs, err
		}
	}
	spec := dnsbPerfSpec{File: hitFile, Seconds: secs, Clients: b.o.clients, Threads: b.o.threads, Outstanding: b.o.outstanding}
	if err := measure("hit-max", spec); err != nil {
		return runs, err
	}
	if b.o.missNames > 0 {
		tag := fmt.Sprintf("%s%d", sys[:1], rep)
		missFile, err := b.nameFile("miss-"+tag, b.o.missNames, func(i int) string { return fmt.Sprintf("m%d.%s.%s", i, tag, dnsbMissZone) })
		if err != nil {
			return runs, err
		}
		spec := dnsbPerfSpec{File: missFile, Runs: 1, QPS: b.o.missQPS, Seconds: b.maxSeconds(b.o.missNames, b.o.missQPS),
			Clients: b.o.clients, Threads: b.o.threads, Outstanding: b.o.outstanding}
		if err := measure("miss", spec); err != nil {
			return runs, err
		}
	}
	if st, ok := res.askStats(b.ctx); ok {
		b.log("  exitd counted %d queries: %d cache hits, %d misses, %d upstream queries (%d failed), %d SERVFAIL, %d rebinding rewrites; %d cached",
			st.Queries, st.CacheHits, st.CacheMisses, st.UpstreamQueries, st.UpstreamErrors, st.Servfails, st.RebindRewrites, st.CacheEntries)
	}
	return runs, res.stop()
}

// maxSeconds bounds a run through n names offered at qps: twice the time
// at the offered rate, plus a minute.
func (b *dnsbBench) maxSeconds(n, qps int) float64 {
	return 2*float64(n)/float64(qps) + 60
}

// rss warms a fresh resolver with the RSS names and reads its memory.
func (b *dnsbBench) rss(sys, file string) (dnsbRSS, error) {
	b.log("%s: RSS with %d names (at most %d qps)", sys, b.o.rssNames, b.o.rssQPS)
	m := dnsbRSS{System: sys}
	res, err := b.start(sys, "")
	if err != nil {
		return m, err
	}
	defer res.stop()
	m.BaseMiB = rssMiB(res.pid())
	out, err := b.dnsperf(res.addr, dnsbPerfSpec{File: file, Runs: 1, QPS: b.o.rssQPS, Seconds: b.maxSeconds(b.o.rssNames, b.o.rssQPS),
		Clients: b.o.clients, Threads: b.o.threads, Outstanding: b.o.outstanding})
	if err != nil {
		return m, err
	}
	m.AfterMiB = rssMiB(res.pid()) // before askStats: its GC must not count
	m.Names, m.Lost = out.Rcodes["NOERROR"], out.Lost
	m.WarmSeconds, m.WarmQPS = out.RunSeconds, out.QPS
	if m.Names > 0 {
		m.Per100kMiB = (m.AfterMiB - m.BaseMiB) * 1e5 / float64(m.Names)
		m.At1MMiB = m.AfterMiB
		// Within 1 % of 1M (a few queries lost) counts as measured.
		if m.Names < 990000 {
			m.At1MMiB = m.BaseMiB + m.Per100kMiB*10
			m.Extrapolated = true
		}
	}
	if st, ok := res.askStats(b.ctx); ok {
		m.CacheEntries, m.HeapLiveMiB = st.CacheEntries, st.HeapLiveMiB
	}
	if err := res.stop(); err != nil {
		return m, err
	}
	b.log("  %d names in %.1f s: RSS %.0f → %.0f MiB (%.1f MiB per 100k)", m.Names, m.WarmSeconds, m.BaseMiB, m.AfterMiB, m.Per100kMiB)
	return m, nil
}

// profile runs exitd's resolver alone under saturating cache-hit load with
// a CPU profile written to path.
func (b *dnsbBench) profile(path, hitFile string) error {
	b.log("exitd: CPU profile under saturation → %s", path)
	res, err := b.start(dnsbExitd, path)
	if err != nil {
		return err
	}
	defer res.stop()
	if _, err := b.dnsperf(res.addr, dnsbPerfSpec{File: hitFile, Runs: 2, QPS: 20000, Seconds: 30, Clients: 1, Threads: 1, Outstanding: 100}); err != nil {
		return err
	}
	if _, err := b.dnsperf(res.addr, dnsbPerfSpec{File: hitFile, Seconds: b.o.seconds.Seconds(), Clients: b.o.clients, Threads: b.o.threads, Outstanding: b.o.outstanding}); err != nil {
		return err
	}
	return res.stop()
}

func (b *dnsbBench) versions() []string {
	var v []string
	if b.o.unbound != "" {
		out, _ := b.lab.Exit.Exec(b.ctx, b.o.unbound, "-V")
		v = append(v, "unbound "+dnsbVersion(string(out)))
	}
	out, _ := b.lab.Members[0].Command(b.ctx, b.o.dnsperf, "-h").CombinedOutput()
	v = append(v, "dnsperf "+dnsbVersion(string(out)), runtime.Version())
	return v
}

// dnsbVersion finds "Version X" in a program's banner.
func dnsbVersion(banner string) string {
	for _, l := range strings.Split(banner, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Version "); ok {
			return v
		}
	}
	return "?"
}

func dnsbLoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// dnsbMachine describes the host for the report.
func dnsbMachine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	kernel := "?"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%d vCPU %s, Linux %s", runtime.NumCPU(), model, kernel)
}

// ---------------------------------------------------------------------------
// The resolvers.

type dnsbResolver struct {
	sys  string
	addr netip.AddrPort
	proc *netlab.Process
}

func (r *dnsbResolver) pid() int { return r.proc.Pid() }

// stop ends the resolver (SIGTERM, then SIGKILL); repeated calls are no-ops.
func (r *dnsbResolver) stop() error {
	if err := r.proc.Stop(); err != nil {
		return fmt.Errorf("stop %s: %w", r.sys, err)
	}
	return nil
}

// askStats has exitd's resolver print its counters (SIGUSR1) and waits for
// them; ok is false for unbound or when none came.
func (r *dnsbResolver) askStats(ctx context.Context) (dnsbServeStats, bool) {
	if r.sys != dnsbExitd || syscall.Kill(r.pid(), syscall.SIGUSR1) != nil {
		return dnsbServeStats{}, false
	}
	var st dnsbServeStats
	ok := false
	_ = netlab.WaitFor(ctx, 30*time.Second, func() bool { st, ok = r.stats(); return ok })
	return st, ok
}

// stats returns the counters exitd's resolver printed, if it did.
func (r *dnsbResolver) stats() (dnsbServeStats, bool) {
	var st dnsbServeStats
	for _, l := range strings.Split(r.proc.Output(), "\n") {
		if v, ok := strings.CutPrefix(l, dnsbStatsPrefix); ok && json.Unmarshal([]byte(v), &st) == nil {
			return st, true
		}
	}
	return st, false
}

// start starts sys in the resolver namespace and waits until it answers.
func (b *dnsbBench) start(sys, profile string) (*dnsbResolver, error) {
	var (
		r   = &dnsbResolver{sys: sys}
		ctx = b.ctx
	)
	switch sys {
	case dnsbExitd:
		r.addr = netip.MustParseAddrPort(dnsbExitdAddr)
		args := []string{"dns-bench", "serve", "--listen", r.addr.String(), "--upstream", dnsbAuthAddr, "--cache-entries", strconv.Itoa(b.o.cache)}
		if profile != "" {
			args = append(args, "--cpuprofile", profile)
		}
		p, err := b.lab.Exit.Start(b.lab.Exit.Command(ctx, b.self, args...))
		if err != nil {
			return nil, err
		}
		r.proc = p
	case dnsbUnbound:
		r.addr = netip.MustParseAddrPort(dnsbUnboundAddr)
		conf := filepath.Join(b.dir, "unbound.conf")
		if err := os.WriteFile(conf, []byte(dnsbUnboundConf(r.addr, netip.MustParseAddrPort(dnsbAuthAddr), b.dir)), 0o644); err != nil {
			return nil, err
		}
		p, err := b.lab.Exit.Start(b.lab.Exit.Command(ctx, b.o.unbound, "-d", "-c", conf))
		if err != nil {
			return nil, err
		}
		r.proc = p
	default:
		return nil, fmt.Errorf("unknown system %q", sys)
	}
	probe := fmt.Sprintf("probe.%s", dnsbHitZone)
	var last error
	err := netlab.WaitFor(ctx, 15*time.Second, func() bool {
		select {
		case <-r.proc.Done():
			return true
		default:
		}
		last = dnsbProbe(b.lab.Members[0], r.addr, probe)
		return last == nil
	})
	select {
	case <-r.proc.Done():
		return nil, fmt.Errorf("%s exited: %v: %s", sys, r.proc.Wait(), dnsbTail(r.proc.Output(), 800))
	default:
	}
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("%s does not answer (%v): %w: %s", sys, last, err, dnsbTail(r.proc.Output(), 800))
	}
	return r, nil
}

// unboundConf is a minimal caching forwarder: every name to upstream,
// caches for well over 1M names, no validation (exitd does not validate
// either), no chroot, no privilege drop, no control socket.
func dnsbUnboundConf(listen, upstream netip.AddrPort, dir string) string {
	return fmt.Sprintf(`server:
	interface: %s@%d
	access-control: %s allow
	do-not-query-localhost: no
	num-threads: 2
	msg-cache-size: 1024m
	rrset-cache-size: 2048m
	verbosity: 0
	use-syslog: no
	logfile: ""
	chroot: ""
	username: ""
	directory: "%s"
	pidfile: "%s"
	module-config: "iterator"
	# unbound serves test. itself by default (RFC 6761); the bench zone is there.
	local-zone: "test." nodefault
remote-control:
	control-enable: no
forward-zone:
	name: "."
	forward-addr: %s@%d
`, listen.Addr(), listen.Port(), netlab.UnderlayPrefix4, dir, filepath.Join(dir, "unbound.pid"), upstream.Addr(), upstream.Port())
}

// dnsbProbe asks server for name from a socket in ns and wants an answer.
func dnsbProbe(ns *netlab.NS, server netip.AddrPort, name string) error {
	var conn net.Conn
	if err := ns.Run(func() (err error) { conn, err = net.Dial("udp", server.String()); return err }); err != nil {
		return err
	}
	defer conn.Close()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	c := &mdns.Client{Timeout: 500 * time.Millisecond}
	r, _, err := c.ExchangeWithConn(m, &mdns.Conn{Conn: conn})
	if err != nil {
		return err
	}
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) == 0 {
		return fmt.Errorf("%s: %s with %d answers", name, mdns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return nil
}

func dnsbTail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// procCPUSeconds is pid's user+system time (all threads), 0 if unreadable.
func dnsbCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	return dnsbParseStatCPU(string(b))
}

// parseProcStatCPU reads utime+stime (fields 14 and 15, in USER_HZ = 100
// ticks on Linux) from a /proc/PID/stat line.
func dnsbParseStatCPU(s string) float64 {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return float64(ut+st) / 100
}

// ---------------------------------------------------------------------------
// dnsperf.

// dnsbPerfSpec is one dnsperf invocation. Every run is bounded in time
// (Seconds); QPS 0 means no -Q (saturation: bounded by Outstanding).
type dnsbPerfSpec struct {
	File        string
	QPS         int
	Seconds     float64
	Runs        int // -n: passes through File; 0 repeats until Seconds
	Clients     int
	Threads     int
	Outstanding int
	Verbose     bool // -v: one latency line per query
}

func (s dnsbPerfSpec) args(server netip.AddrPort) []string {
	a := []string{"-s", server.Addr().String(), "-p", strconv.Itoa(int(server.Port())), "-d", s.File,
		"-l", strconv.FormatFloat(s.Seconds, 'f', -1, 64), "-t", strconv.Itoa(dnsbTimeout),
		"-c", strconv.Itoa(s.Clients), "-T", strconv.Itoa(s.Threads), "-q", strconv.Itoa(s.Outstanding)}
	if s.QPS > 0 {
		a = append(a, "-Q", strconv.Itoa(s.QPS))
	}
	if s.Runs > 0 {
		a = append(a, "-n", strconv.Itoa(s.Runs))
	}
	if s.Verbose {
		a = append(a, "-v")
	}
	return a
}

// dnsperf runs dnsperf in the client namespace; its output goes to a file
// (with -v it is a line per query) and is parsed when it ends.
func (b *dnsbBench) dnsperf(server netip.AddrPort, s dnsbPerfSpec) (*dnsbPerfResult, error) {
	b.seq++
	p := filepath.Join(b.dir, fmt.Sprintf("dnsperf-%d.out", b.seq))
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	defer os.Remove(p)
	defer f.Close()
	var stderr strings.Builder
	cmd := b.lab.Members[0].Command(b.ctx, b.o.dnsperf, s.args(server)...)
	cmd.Stdout, cmd.Stderr = f, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dnsperf %s: %w: %s", strings.Join(s.args(server), " "), err, dnsbTail(stderr.String(), 400))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	r, err := dnsbParsePerf(f, dnsbTimeout)
	if err != nil {
		return nil, fmt.Errorf("dnsperf output: %w", err)
	}
	return r, nil
}

// dnsbPerfResult is what one dnsperf run reports. Latencies are in ms; the
// percentiles are only there with -v, and count lost queries at the timeout.
type dnsbPerfResult struct {
	Sent       uint64            `json:"sent"`
	Completed  uint64            `json:"completed"`
	Lost       uint64            `json:"lost"`
	RunSeconds float64           `json:"run_seconds"`
	QPS        float64           `json:"qps"`
	AvgMs      float64           `json:"latency_avg_ms"`
	MinMs      float64           `json:"latency_min_ms"`
	MaxMs      float64           `json:"latency_max_ms"`
	StdDevMs   float64           `json:"latency_stddev_ms"`
	P50Ms      float64           `json:"latency_p50_ms,omitempty"`
	P99Ms      float64           `json:"latency_p99_ms,omitempty"`
	Samples    int               `json:"latency_samples,omitempty"`
	Rcodes     map[string]uint64 `json:"rcodes"`
}

// parseDNSPerf reads dnsperf 2.10's output: the Statistics block and, with
// -v, lines "> RCODE NAME TYPE SECONDS" (and "> T NAME TYPE" for a query
// that timed out). timeout (seconds) stands in for
// each lost query in the percentiles.
func dnsbParsePerf(r io.Reader, timeout float64) (*dnsbPerfResult, error) {
	res := &dnsbPerfResult{Rcodes: map[string]uint64{}}
	var lat []float64
	var haveQPS, haveStats bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "> "); ok {
			f := strings.Fields(rest)
			if len(f) < 2 || f[0] == "T" {
				continue // "> T NAME TYPE": a timeout, counted in Queries lost
			}
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return nil, fmt.Errorf("latency line %q: %w", line, err)
			}
			lat = append(lat, v*1000)
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		first := func() string { f := strings.Fields(val); return append(f, "")[0] }
		var err error
		switch key {
		case "Statistics":
			haveStats = true
		case "Queries sent":
			res.Sent, err = strconv.ParseUint(first(), 10, 64)
		case "Queries completed":
			res.Completed, err = strconv.ParseUint(first(), 10, 64)
		case "Queries lost":
			res.Lost, err = strconv.ParseUint(first(), 10, 64)
		case "Run time (s)":
			res.RunSeconds, err = strconv.ParseFloat(first(), 64)
		case "Queries per second":
			res.QPS, err = strconv.ParseFloat(first(), 64)
			haveQPS = true
		case "Average Latency (s)":
			// 0.000094 (min 0.000016, max 0.011016)
			var avg, lo, hi float64
			if _, err = fmt.Sscanf(val, "%g (min %g, max %g)", &avg, &lo, &hi); err == nil {
				res.AvgMs, res.MinMs, res.MaxMs = avg*1000, lo*1000, hi*1000
			}
		case "Latency StdDev (s)":
			var sd float64
			sd, err = strconv.ParseFloat(first(), 64)
			res.StdDevMs = sd * 1000
		case "Response codes":
			// NOERROR 1334 (66.70%), NXDOMAIN 666 (33.30%)
			for _, part := range strings.Split(val, ",") {
				f := strings.Fields(part)
				if len(f) >= 2 {
					n, perr := strconv.ParseUint(f[1], 10, 64)
					if perr != nil {
						err = perr
						break
					}
					res.Rcodes[f[0]] = n
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !haveStats || !haveQPS {
		return nil, errors.New("no statistics (did dnsperf finish?)")
	}
	if len(lat) > 0 {
		for range res.Lost {
			lat = append(lat, timeout*1000)
		}
		slices.Sort(lat)
		res.Samples = len(lat)
		res.P50Ms, res.P99Ms = dnsbPercentile(lat, 0.50), dnsbPercentile(lat, 0.99)
	}
	return res, nil
}

// percentile is the nearest-rank q-quantile of sorted v.
func dnsbPercentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (r dnsbRun) line() string {
	s := fmt.Sprintf("%8.0f qps  avg %.3f ms", r.QPS, r.AvgMs)
	if r.Samples > 0 {
		s += fmt.Sprintf("  p50 %.3f  p99 %.3f ms", r.P50Ms, r.P99Ms)
	}
	return s + fmt.Sprintf("  lost %d  cpu %.1f µs/q  rss %.0f MiB", r.Lost, r.CPUMicrosPerQ, r.RSSMiB)
}

// ---------------------------------------------------------------------------
// The table.

// summarize fills r.Rows with medians over the repetitions.
func (r *dnsbReport) summarize() {
	r.Rows = nil
	med := func(sys, sc string, f func(dnsbRun) float64) (float64, bool) {
		var v []float64
		for _, run := range r.Runs {
			if run.System == sys && run.Scenario == sc {
				v = append(v, f(run))
			}
		}
		return median(v), len(v) > 0
	}
	// target returns the target's text and verdict from exitd's median and
	// the ratio (0 without unbound).
	type target func(x, ratio float64) (string, string)
	add := func(sc, label, unit string, f func(dnsbRun) float64, tgt target) {
		x, okX := med(dnsbExitd, sc, f)
		u, okU := med(dnsbUnbound, sc, f)
		if !okX && !okU {
			return
		}
		row := dnsbRow{Scenario: label, Unit: unit, Exitd: x, Unbound: u}
		if okU && u != 0 && unit != "%" { // a ratio of loss rates says nothing
			row.Ratio = x / u
		}
		if tgt != nil && okX {
			row.Target, row.Verdict = tgt(x, row.Ratio)
		}
		r.Rows = append(r.Rows, row)
	}
	qps := func(run dnsbRun) float64 { return run.QPS }
	lostPct := func(run dnsbRun) float64 { return 100 * float64(run.Lost) / float64(max(run.Sent, 1)) }
	for _, l := range r.Options.Loads {
		sc := fmt.Sprintf("hit-%d", l)
		name := fmt.Sprintf("cache hit, %d qps offered", l)
		add(sc, name+": achieved", "qps", qps, nil)
		add(sc, name+": lost", "%", lostPct, nil)
		add(sc, name+": latency avg", "ms", func(run dnsbRun) float64 { return run.AvgMs }, nil)
		add(sc, name+": latency p50", "ms", func(run dnsbRun) float64 { return run.P50Ms }, nil)
		var p99 target
		if l == dnsbTargetP99Load {
			p99 = func(x, _ float64) (string, string) {
				return fmt.Sprintf("exitd ≤ %g ms", dnsbTargetP99Ms), dnsbVerdict(x <= dnsbTargetP99Ms)
			}
		}
		add(sc, name+": latency p99", "ms", func(run dnsbRun) float64 { return run.P99Ms }, p99)
		add(sc, name+": resolver CPU", "µs/query", func(run dnsbRun) float64 { return run.CPUMicrosPerQ }, nil)
	}
	add("hit-max", "cache hit, saturation: throughput", "qps", qps, func(_, ratio float64) (string, string) {
		t := fmt.Sprintf("≥ %g× unbound", dnsbTargetHitRatio)
		if ratio == 0 {
			return t, ""
		}
		return t, dnsbVerdict(ratio >= dnsbTargetHitRatio)
	})
	add("hit-max", "cache hit, saturation: lost", "%", lostPct, nil)
	add("hit-max", "cache hit, saturation: latency avg", "ms", func(run dnsbRun) float64 { return run.AvgMs }, nil)
	add("hit-max", "cache hit, saturation: resolver CPU", "µs/query", func(run dnsbRun) float64 { return run.CPUMicrosPerQ }, nil)
	missName := fmt.Sprintf("cache miss, upstream %g ms away", r.Options.DelayMs)
	add("miss", missName+": throughput", "qps", qps, nil)
	add("miss", missName+": lost", "%", lostPct, nil)
	add("miss", missName+": latency avg", "ms", func(run dnsbRun) float64 { return run.AvgMs }, nil)
	add("miss", missName+": resolver CPU", "µs/query", func(run dnsbRun) float64 { return run.CPUMicrosPerQ }, nil)

	byRSS := map[string]dnsbRSS{}
	for _, m := range r.RSS {
		byRSS[m.System] = m
	}
	x, okX := byRSS[dnsbExitd]
	u, okU := byRSS[dnsbUnbound]
	if !okX && !okU {
		return
	}
	rssRow := func(label string, f func(dnsbRSS) float64) dnsbRow {
		row := dnsbRow{Scenario: label, Unit: "MiB", Exitd: f(x), Unbound: f(u)}
		if okU && row.Unbound != 0 {
			row.Ratio = row.Exitd / row.Unbound
		}
		return row
	}
	names := max(x.Names, u.Names)
	cachedLabel := fmt.Sprintf("RSS with %d names cached", names)
	if okX && okU && x.Names != u.Names {
		cachedLabel = fmt.Sprintf("RSS with the names cached (exitd %d, unbound %d)", x.Names, u.Names)
	}
	label := "RSS at 1M names"
	if x.Extrapolated || u.Extrapolated {
		label += fmt.Sprintf(" (EXTRAPOLATED from %d)", names)
	}
	at1M := rssRow(label, func(m dnsbRSS) float64 { return m.At1MMiB })
	if okX {
		at1M.Target = fmt.Sprintf("exitd ≤ %g MB", dnsbTargetRSSMB)
		at1M.Verdict = dnsbVerdict(x.At1MMiB*(1<<20)/1e6 <= dnsbTargetRSSMB)
	}
	r.Rows = append(r.Rows,
		rssRow("RSS idle", func(m dnsbRSS) float64 { return m.BaseMiB }),
		rssRow(cachedLabel, func(m dnsbRSS) float64 { return m.AfterMiB }),
		rssRow("RSS per 100k names", func(m dnsbRSS) float64 { return m.Per100kMiB }),
		at1M)
	if x.HeapLiveMiB > 0 {
		r.Rows = append(r.Rows, dnsbRow{Scenario: fmt.Sprintf("exitd's live Go heap with %d names (after a GC)", x.Names), Unit: "MiB", Exitd: x.HeapLiveMiB})
	}
}

func dnsbVerdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// markdown renders the report's table with a header saying what was run.
func (r *dnsbReport) markdown() string {
	var s strings.Builder
	fmt.Fprintf(&s, "DNS resolver: exitd vs unbound — %s, %s\n", r.Date, r.Machine)
	fmt.Fprintf(&s, "%s; medians of %d runs per system (A B alternating), %g s each; %d hit names; upstream %g ms one way (%s)\n\n",
		strings.Join(r.Versions, ", "), r.Options.Reps, r.Options.Seconds, r.Options.HitNames, r.Options.DelayMs, r.DelayVia)
	if len(r.LoadAvg) > 0 {
		fmt.Fprintf(&s, "load average at start / end: %s\n\n", strings.Join(r.LoadAvg, " / "))
	}
	fmt.Fprintf(&s, "| scenario | exitd | unbound | exitd/unbound | target |\n|---|---|---|---|---|\n")
	has := func(sys string) bool {
		return slices.ContainsFunc(r.Runs, func(x dnsbRun) bool { return x.System == sys }) ||
			slices.ContainsFunc(r.RSS, func(x dnsbRSS) bool { return x.System == sys })
	}
	for _, row := range r.Rows {
		fx, fu := dnsbFig(row.Exitd, row.Unit), dnsbFig(row.Unbound, row.Unit)
		if !has(dnsbExitd) {
			fx = "–"
		}
		if !has(dnsbUnbound) {
			fu = "–"
		}
		ratio := "–"
		if row.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f", row.Ratio)
		}
		tgt := row.Target
		if row.Verdict != "" {
			tgt += ": " + row.Verdict
		}
		fmt.Fprintf(&s, "| %s (%s) | %s | %s | %s | %s |\n", row.Scenario, row.Unit, fx, fu, ratio, tgt)
	}
	if r.Error != "" {
		fmt.Fprintf(&s, "\nINCOMPLETE: %s\n", r.Error)
	}
	return s.String()
}

func dnsbFig(v float64, unit string) string {
	switch {
	case unit == "%":
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v == 0:
		return "–"
	case unit == "qps":
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	case unit == "ms":
		return strconv.FormatFloat(v, 'f', 3, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

// ---------------------------------------------------------------------------
// The authoritative server (in this process, in the auth namespace).

type dnsbAuth struct{ servers []*mdns.Server }

// dnsbStartAuth serves the synthetic zones on addr in ns; each answer is
// written delay after its query arrived (0: at once).
func dnsbStartAuth(ns *netlab.NS, addr string, delay time.Duration) (*dnsbAuth, error) {
	var (
		pc net.PacketConn
		ln net.Listener
	)
	err := ns.Run(func() (err error) {
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			pc.Close()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("auth server: %w", err)
	}
	a := &dnsbAuth{}
	for _, srv := range []*mdns.Server{{PacketConn: pc}, {Listener: ln}} {
		started := make(chan struct{})
		errc := make(chan error, 1)
		srv.Handler = mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
			if delay > 0 {
				time.Sleep(delay) // miekg/dns runs each query in its own goroutine
			}
			_ = w.WriteMsg(dnsbAuthReply(req))
		})
		srv.UDPSize = 4096
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-started:
			a.servers = append(a.servers, srv)
		case err := <-errc:
			a.close()
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("auth server: %w", err)
		}
	}
	return a, nil
}

func (a *dnsbAuth) close() {
	for _, s := range a.servers {
		_ = s.Shutdown()
	}
}

// dnsbAuthReply answers for the synthetic zones: every name under
// bench.test. and miss.test. has one A record (TTL 3600) derived from a hash
// of the name, in 198.18.0.0/15 (RFC 2544 benchmarking space: not denied by
// rebinding protection); other types get NODATA with the SOA; ". NS" (the
// resolver's health probe) is answered; everything else is REFUSED.
func dnsbAuthReply(req *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(1232, opt.Do())
	}
	if len(req.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	zone := ""
	for _, z := range []string{dnsbHitZone, dnsbMissZone} {
		if mdns.IsSubDomain(z, name) {
			zone = z
		}
	}
	switch {
	case zone != "":
		m.Authoritative = true
		if q.Qtype == mdns.TypeA && q.Qclass == mdns.ClassINET && name != zone {
			m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: dnsbTTL}, A: dnsbAddrFor(name)}}
		} else {
			m.Ns = []mdns.RR{&mdns.SOA{Hdr: mdns.RR_Header{Name: zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: dnsbTTL},
				Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: dnsbTTL}}
		}
	case name == "." && q.Qtype == mdns.TypeNS:
		m.Answer = []mdns.RR{&mdns.NS{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeNS, Class: mdns.ClassINET, Ttl: dnsbTTL}, Ns: "ns." + dnsbHitZone}}
	default:
		m.Rcode = mdns.RcodeRefused
	}
	return m
}

// dnsbAddrFor maps a name into 198.18.0.0/15.
func dnsbAddrFor(name string) net.IP {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32() & 0x1ffff
	return net.IPv4(198, 18+byte(v>>16), byte(v>>8), byte(v))
}

// ---------------------------------------------------------------------------
// The hidden child: exitd's resolver.

// dnsbStatsPrefix starts the line of counters the child prints when it stops.
const dnsbStatsPrefix = "dns-bench-stats: "

// dnsbServeStats are the counters the child reports.
type dnsbServeStats struct {
	Queries         uint64 `json:"queries"`
	CacheHits       uint64 `json:"cache_hits"`
	CacheMisses     uint64 `json:"cache_misses"`
	UpstreamQueries uint64 `json:"upstream_queries"`
	UpstreamErrors  uint64 `json:"upstream_errors"`
	Servfails       uint64 `json:"servfails"`
	RebindRewrites  uint64 `json:"rebind_rewrites"`
	CacheEntries    int    `json:"cache_entries"`
	// Go memory at exit: live heap after a GC, and all the runtime holds.
	HeapLiveMiB float64 `json:"heap_live_mib"`
	GoSysMiB    float64 `json:"go_sys_mib"`
}

func newDNSServeCmd() *cobra.Command {
	var listen, upstream, profile string
	var cache int
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "exitd's resolver for dns-bench (runs inside the lab's exit namespace until SIGTERM)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ap, err := netip.ParseAddrPort(listen)
			if err != nil {
				return err
			}
			return dnsbServe(cmd.Context(), cmd.OutOrStdout(), ap, upstream, cache, profile)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", dnsbExitdAddr, "address to serve (UDP and TCP)")
	cmd.Flags().StringVar(&upstream, "upstream", dnsbAuthAddr, "upstream resolver")
	cmd.Flags().IntVar(&cache, "cache-entries", 2000000, "dns.Config.CacheEntries")
	cmd.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile here until SIGTERM")
	return cmd
}

// dnsbDeny is the rebinding deny set for the bench: private, loopback,
// link-local and unspecified addresses, as the daemon's set denies them;
// the zone's answers (198.18.0.0/15) pass.
func dnsbDeny(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast()
}

func dnsbServe(ctx context.Context, out io.Writer, listen netip.AddrPort, upstream string, cache int, profile string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := dns.New(dns.Config{
		Upstreams:    []string{upstream},
		CacheEntries: cache,
		MemberQPS:    -1, // one client address sends everything
		MemberBurst:  -1,
		Rebind:       true,
	}, dns.Options{Logger: log, Deny: dnsbDeny})
	if err != nil {
		return err
	}
	// SIGUSR1 asks for the counters (registered before the socket exists:
	// the bench signals only a resolver that answers).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	srv, err := r.Listen([]netip.AddrPort{listen})
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(profile)
	if err != nil {
		srv.Close()
		return err
	}
	defer stopProfile()
	for {
		select {
		case <-usr1:
			dnsbPrintStats(out, r)
			continue
		case <-ctx.Done(): // SIGTERM from the bench
		}
		break
	}
	pprof.StopCPUProfile() // before Close: the profile is of the load
	return srv.Close()
}

// dnsbPrintStats writes the resolver's counters and the Go heap still live
// after a GC as one line.
func dnsbPrintStats(out io.Writer, r *dns.Resolver) {
	st := r.Stats()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, _ := json.Marshal(dnsbServeStats{
		Queries: st.Queries, CacheHits: st.CacheHits, CacheMisses: st.CacheMisses,
		UpstreamQueries: st.UpstreamQueries, UpstreamErrors: st.UpstreamErrors,
		Servfails: st.Servfails, RebindRewrites: st.RebindRewrites, CacheEntries: st.CacheEntries,
		HeapLiveMiB: float64(ms.HeapAlloc) / (1 << 20), GoSysMiB: float64(ms.Sys) / (1 << 20),
	})
	fmt.Fprintf(out, "%s%s\n", dnsbStatsPrefix, b)
}
