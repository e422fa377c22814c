package main

// socks-bench: exitd's SOCKS5 proxy (package socks) against Debian's Dante
// 1.4.2 on the Dante report's own axis (sessions × 16 KiB/s), plus CONNECT/s
// and bulk throughput (on shared CPUs, and with the loadgen and the proxy
// pinned to CPUs of their own: bulk-split), side by side in one run:
//
//	bench namespace (lo only is used)
//	  loadgen child ──SOCKS5──▶ proxy ──TCP──▶ sink (in the loadgen child)
//	                  proxy = exitlab socks-bench serve (socks.New + Serve)
//	                        | danted -f <generated config>
//	                        | none ("direct": the same client straight to the sink)
//
// The load generator and the sink are one child process running inside the
// bench namespace (every socket is created there without a setns per dial).
// It prints START and END around the measurement window; the parent reads
// the proxy's CPU, RSS and PSS from /proc at those marks (Dante: summed over
// its process tree, found through PPid) and answers "go" so the sessions stay
// open while it reads. Every child is made by NS.Command and started in
// its own session (see sbProc); it is stopped by its process group after
// each run and on any error or Ctrl-C, Dante's children also by PID, and
// Lab.Close kills whatever is left in the namespace before deleting it.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/socks"
)

// Scenario and system names.
const (
	sbScSessions  = "sessions"
	sbScConnect   = "connect"
	sbScBulk      = "bulk"
	sbScBulkSplit = "bulk-split" // bulk, the loadgen and the proxy on CPUs of their own

	sbExitd  = "exitd"
	sbDante  = "dante"
	sbDirect = "direct"
)

// Ports of the proxies inside the bench namespace.
const (
	sbExitdPort = 1080
	sbDantePort = 1081
)

// Targets (the SOCKS issue), printed beside the figures.
const (
	sbTargetDelivered   = 0.99 // "delivered in full" within measurement quantisation
	sbTargetJain        = 0.99
	sbTargetP99         = 50.0  // ms, connect p99 at 9,000 sessions
	sbTargetRSSGrowthMB = 500.0 // MB (10^6 bytes) at 9,000 sessions
	sbTargetConnects    = 10000.0
	sbTargetBulkRatio   = 0.80
	sbTargetBulkJain    = 0.95
)

// sbFDReserve is what a loadgen process keeps beside two fds per session
// (its client end and the sink's end): listeners, probes, the runtime.
const sbFDReserve = 512

type socksBenchOpts struct {
	sessions       []int
	rate           int           // bytes/s per session
	tick           time.Duration // the sink writes rate×tick every tick
	reps           int
	sessionWindow  time.Duration
	window         time.Duration // connect and bulk
	warmup         time.Duration
	ramp           int // concurrent connects while establishing sessions
	probeRate      float64
	concurrency    int // CONNECT/s
	bulkSessions   int
	scenarios      []string
	out            string
	dante          string
	cpuprofile     string
	connectTimeout time.Duration
	setupLimit     time.Duration
	systems        []string
	maxOther       float64 // % of one CPU
	retries        int
	cpus           int // runtime.NumCPU(), for bulk-split
}

func newSocksBenchCmd(_ *binFlags, stdout io.Writer) *cobra.Command {
	o := socksBenchOpts{sessionWindow: 8 * time.Second, window: 10 * time.Second, cpus: runtime.NumCPU()}
	cmd := &cobra.Command{
		Use:   "socks-bench",
		Short: "SOCKS5 proxy: exitd vs Debian's Dante 1.4.2 — sessions × 16 KiB/s, CONNECT/s, bulk",
		Long: `Runs exitd's SOCKS5 server (package socks, in a child process) and Debian's
dante-server (danted) side by side in one bench namespace, over loopback, with
the same Go load generator, alternating the systems (A B A B), --reps times:

  sessions  N sessions each downloading --rate from a sink through the proxy
            (N from --sessions): delivered vs offered, per-session Jain index,
            connect p50/p99 of new connections under that load, proxy RSS
            growth and CPU
  connect   CONNECT/s (dial, SOCKS handshake, close) at --concurrency, and
            the same dial+close straight to the sink
  bulk      --bulk-sessions downloading as fast as they can (the sink starts
            once all are established): aggregate as a ratio of the same
            without a proxy, per-session Jain; every process on every CPU
  bulk-split
            the same with the load generator on the first half of the CPUs
            and the proxy on the other half (direct: the load generator on
            its half alone), as if the proxy ran on a machine of its own:
            in "bulk" a proxy's second TCP hop takes CPU from the load
            generator, which alone already fills every CPU in the direct run

The exitd proxy allows 127.0.0.0/8 without authentication, Deny refuses
everything but loopback (the daemon's deny set refuses loopback; here the
sink is on loopback), and per-source limits are raised (one source address
opens every session). Dante gets a minimal config (errors-only logging).
Writes socks.json, socks.md (the table in Markdown) and socks-sessions.svg
to --out and prints the table. The full Dante-report axis is
--sessions 1000,3000,5000,7000,9000.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(sbNoFileHard()); err != nil {
				return err
			}
			return socksBench(cmd.Context(), o, stdout, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.sessions, "sessions", []int{1000, 3000, 5000}, "session counts of the sessions scenario (full run: 1000,3000,5000,7000,9000)")
	f.IntVar(&o.rate, "rate", 16<<10, "bytes per second each session downloads in the sessions scenario")
	f.DurationVar(&o.tick, "tick", 250*time.Millisecond, "the sink writes rate×tick bytes every tick")
	f.IntVar(&o.reps, "reps", 3, "repetitions per system and scenario (medians reported)")
	f.Var(sbSecondsFlag{&o.sessionWindow}, "session-seconds", "seconds measured per run of the sessions scenario (default 8)")
	f.Var(sbSecondsFlag{&o.window}, "seconds", "seconds measured per run of the connect and bulk scenarios (default 10)")
	f.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each window starts (after all sessions are established)")
	f.IntVar(&o.ramp, "ramp", 64, "concurrent connects while establishing sessions")
	f.Float64Var(&o.probeRate, "probe-rate", 25, "new connections per second measured for connect latency under load")
	f.IntVar(&o.concurrency, "concurrency", 32, "concurrent clients in the connect scenario")
	f.IntVar(&o.bulkSessions, "bulk-sessions", 100, "sessions in the bulk scenario")
	f.StringSliceVar(&o.scenarios, "scenarios", []string{sbScSessions, sbScConnect, sbScBulk, sbScBulkSplit}, "scenarios to run")
	f.StringVar(&o.out, "out", "bench-results", "directory for socks.json, socks.md and socks-sessions.svg (empty: none)")
	f.StringVar(&o.dante, "danted", "danted", "Dante server binary (apt-get install dante-server)")
	f.StringVar(&o.cpuprofile, "cpuprofile", "", "directory for a CPU profile of every exitd proxy run (exitd-SCENARIO-N-repR.pprof)")
	f.DurationVar(&o.connectTimeout, "connect-timeout", 10*time.Second, "a connect and SOCKS handshake slower than this counts as failed")
	f.DurationVar(&o.setupLimit, "setup-limit", 2*time.Minute, "time to establish a run's sessions; sessions not attempted by then count as failed")
	f.StringSliceVar(&o.systems, "systems", []string{sbExitd, sbDante}, "proxies to compare (exitd, dante)")
	f.Float64Var(&o.maxOther, "max-other-cpu", 50, "a run during which other work on the box took more CPU than this (% of one CPU) is run again")
	f.IntVar(&o.retries, "retries", 2, "how often a run disturbed by other work is run again (the least disturbed attempt is kept)")
	cmd.AddCommand(newSocksServeCmd(), newSocksLoadgenCmd(stdout))
	return cmd
}

// sbSecondsFlag is a duration flag given in (possibly fractional) seconds.
type sbSecondsFlag struct{ d *time.Duration }

func (f sbSecondsFlag) String() string {
	if f.d == nil {
		return ""
	}
	return strconv.FormatFloat(f.d.Seconds(), 'f', -1, 64)
}

func (f sbSecondsFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("not a number of seconds: %q", s)
	}
	*f.d = time.Duration(v * float64(time.Second))
	return nil
}

func (sbSecondsFlag) Type() string { return "seconds" }

// sbMaxSessions is how many sessions one loadgen process can hold open with
// a hard RLIMIT_NOFILE of hard (two fds per session, plus a reserve).
func sbMaxSessions(hard uint64) int {
	if hard <= sbFDReserve {
		return 0
	}
	return int((hard - sbFDReserve) / 2)
}

func sbNoFileHard() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Max
}

// validate checks the flags; hard is the RLIMIT_NOFILE hard limit.
func (o *socksBenchOpts) validate(hard uint64) error {
	maxN := sbMaxSessions(hard)
	if len(o.sessions) == 0 && slices.Contains(o.scenarios, sbScSessions) {
		return errors.New("--sessions: none given")
	}
	for _, n := range o.sessions {
		if n < 1 || n > maxN {
			return fmt.Errorf("--sessions: %d out of range [1, %d] (two fds per session in one loadgen process, hard RLIMIT_NOFILE %d)", n, maxN, hard)
		}
		if float64(n)*float64(o.rate) > 512<<20 {
			return fmt.Errorf("--sessions %d × --rate %d: offered load above 512 MiB/s", n, o.rate)
		}
	}
	switch {
	case o.rate < 1024 || o.rate > 16<<20:
		return fmt.Errorf("--rate: %d bytes/s out of range [1024, 16 MiB]", o.rate)
	case o.tick < 10*time.Millisecond || o.tick > time.Second:
		return fmt.Errorf("--tick: %v out of range [10ms, 1s]", o.tick)
	case o.reps < 1 || o.reps > 20:
		return fmt.Errorf("--reps: %d out of range [1, 20]", o.reps)
	case o.sessionWindow < time.Second || o.sessionWindow > 5*time.Minute:
		return fmt.Errorf("--session-seconds: %g out of range [1, 300]", o.sessionWindow.Seconds())
	case o.window < time.Second || o.window > 5*time.Minute:
		return fmt.Errorf("--seconds: %g out of range [1, 300]", o.window.Seconds())
	case o.warmup < 0 || o.warmup > time.Minute:
		return fmt.Errorf("--warmup: %v out of range [0, 1m]", o.warmup)
	case o.ramp < 1 || o.ramp > 1024:
		return fmt.Errorf("--ramp: %d out of range [1, 1024]", o.ramp)
	case o.probeRate <= 0 || o.probeRate > 1000:
		return fmt.Errorf("--probe-rate: %g out of range (0, 1000]", o.probeRate)
	case o.concurrency < 1 || o.concurrency > 1024:
		return fmt.Errorf("--concurrency: %d out of range [1, 1024]", o.concurrency)
	case o.bulkSessions < 1 || o.bulkSessions > min(maxN, 2000):
		return fmt.Errorf("--bulk-sessions: %d out of range [1, %d]", o.bulkSessions, min(maxN, 2000))
	case o.connectTimeout < 100*time.Millisecond || o.connectTimeout > time.Minute:
		return fmt.Errorf("--connect-timeout: %v out of range [100ms, 1m]", o.connectTimeout)
	case o.setupLimit < time.Second || o.setupLimit > 10*time.Minute:
		return fmt.Errorf("--setup-limit: %v out of range [1s, 10m]", o.setupLimit)
	case len(o.scenarios) == 0:
		return errors.New("--scenarios: none given")
	case len(o.systems) == 0:
		return errors.New("--systems: none given")
	case o.maxOther <= 0:
		return fmt.Errorf("--max-other-cpu: %g must be positive", o.maxOther)
	case o.retries < 0 || o.retries > 10:
		return fmt.Errorf("--retries: %d out of range [0, 10]", o.retries)
	}
	for _, s := range o.systems {
		if s != sbExitd && s != sbDante {
			return fmt.Errorf("--systems: unknown system %q (want %s or %s)", s, sbExitd, sbDante)
		}
	}
	for _, s := range o.scenarios {
		if s != sbScSessions && s != sbScConnect && s != sbScBulk && s != sbScBulkSplit {
			return fmt.Errorf("--scenarios: unknown scenario %q (want %s, %s, %s or %s)", s, sbScSessions, sbScConnect, sbScBulk, sbScBulkSplit)
		}
	}
	if o.want(sbScBulkSplit) && o.cpus < 2 {
		return fmt.Errorf("--scenarios %s: needs at least 2 CPUs, this machine has %d", sbScBulkSplit, o.cpus)
	}
	return nil
}

func (o *socksBenchOpts) want(sc string) bool { return slices.Contains(o.scenarios, sc) }

// ---------------------------------------------------------------------------
// Report.

// sbRun is one system × scenario (× session count) × rep.
type sbRun struct {
	Scenario string `json:"scenario"`
	System   string `json:"system"`
	Sessions int    `json:"sessions"`
	Rep      int    `json:"rep"`

	// sessions and bulk
	OfferedBps     float64 `json:"offered_bytes_per_s,omitempty"`
	DeliveredBps   float64 `json:"delivered_bytes_per_s,omitempty"`
	DeliveredRatio float64 `json:"delivered_ratio,omitempty"` // of offered (sessions)
	Jain           float64 `json:"jain,omitempty"`
	Established    int     `json:"established,omitempty"`
	SetupFailed    int     `json:"setup_failed,omitempty"`
	Broken         int     `json:"broken,omitempty"` // ended before the window did
	SetupP50Ms     float64 `json:"setup_connect_p50_ms,omitempty"`
	SetupP99Ms     float64 `json:"setup_connect_p99_ms,omitempty"`
	ConnectP50Ms   float64 `json:"connect_p50_ms,omitempty"` // probes under load; connect scenario: every connect
	ConnectP99Ms   float64 `json:"connect_p99_ms,omitempty"`
	Probes         int     `json:"probes,omitempty"`
	ProbesFailed   int     `json:"probes_failed,omitempty"`

	// connect
	ConnectsPerSec float64 `json:"connects_per_s,omitempty"`
	ConnectsFailed int     `json:"connects_failed,omitempty"`

	// the proxy, from /proc (0 for direct)
	CPUPercent   float64 `json:"proxy_cpu_percent"` // 100 = one CPU
	RSSIdleMB    float64 `json:"proxy_rss_idle_mb,omitempty"`
	RSSMB        float64 `json:"proxy_rss_mb,omitempty"`
	RSSGrowthMB  float64 `json:"proxy_rss_growth_mb,omitempty"`
	PSSMB        float64 `json:"proxy_pss_mb,omitempty"`
	Procs        int     `json:"proxy_processes,omitempty"`
	LoadgenCPU   float64 `json:"loadgen_cpu_percent"`
	OtherCPU     float64 `json:"other_cpu_percent"` // the rest of the machine's busy time (shared box)
	Attempts     int     `json:"attempts"`          // runs made to get one with little other work
	TookSeconds  float64 `json:"took_s"`            // wall time of all attempts, proxy start to stop
	WindowSecond float64 `json:"window_s"`

	SetupSeconds float64          `json:"setup_s,omitempty"`
	KernelSetup  map[string]int64 `json:"kernel_setup,omitempty"`
	KernelWindow map[string]int64 `json:"kernel_window,omitempty"`
	Errors       []string         `json:"errors,omitempty"`
}

// sbRow is the median over reps of one system × scenario × session count.
type sbRow struct {
	Scenario       string  `json:"scenario"`
	System         string  `json:"system"`
	Sessions       int     `json:"sessions"`
	Reps           int     `json:"reps"`
	DeliveredBps   float64 `json:"delivered_bytes_per_s"`
	DeliveredRatio float64 `json:"delivered_ratio,omitempty"`
	Jain           float64 `json:"jain,omitempty"`
	ConnectP50Ms   float64 `json:"connect_p50_ms,omitempty"`
	ConnectP99Ms   float64 `json:"connect_p99_ms,omitempty"`
	SetupP99Ms     float64 `json:"setup_connect_p99_ms,omitempty"`
	ConnectsPerSec float64 `json:"connects_per_s,omitempty"`
	BulkRatio      float64 `json:"bulk_ratio_to_direct,omitempty"`
	CPUPercent     float64 `json:"proxy_cpu_percent"`
	RSSMB          float64 `json:"proxy_rss_mb,omitempty"`
	RSSGrowthMB    float64 `json:"proxy_rss_growth_mb,omitempty"`
	PSSMB          float64 `json:"proxy_pss_mb,omitempty"`
	Procs          int     `json:"proxy_processes,omitempty"`
	Failures       int     `json:"failures,omitempty"` // setup failed + broken + probes failed, worst rep
}

type sbMachine struct {
	CPU      string `json:"cpu"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mb"`
	Kernel   string `json:"kernel"`
}

type sbReport struct {
	When    time.Time `json:"when"`
	Machine sbMachine `json:"machine"`
	Dante   string    `json:"dante_version,omitempty"`
	Command string    `json:"command"`

	Rate          int     `json:"rate_bytes_per_s"`
	Tick          string  `json:"tick"`
	Reps          int     `json:"reps"`
	SessionWindow float64 `json:"session_window_s"`
	Window        float64 `json:"window_s"`
	Concurrency   int     `json:"connect_concurrency"`
	BulkSessions  int     `json:"bulk_sessions"`

	Seconds float64 `json:"took_s"`
	Runs    []sbRun `json:"runs"`
	Rows    []sbRow `json:"medians"`
}

// ---------------------------------------------------------------------------
// The parent: lab, proxies, runs.

func socksBench(ctx context.Context, o socksBenchOpts, stdout, log io.Writer) error {
	step := func(format string, args ...any) { fmt.Fprintf(log, "socks-bench: "+format+"\n", args...) }
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var systems []string
	for _, s := range []string{sbExitd, sbDante} { // exitd first: A B A B
		if slices.Contains(o.systems, s) {
			systems = append(systems, s)
		}
	}
	rep := &sbReport{When: time.Now().UTC(), Machine: sbMachineInfo(), Command: strings.Join(os.Args, " "),
		Rate: o.rate, Tick: o.tick.String(), Reps: o.reps, SessionWindow: o.sessionWindow.Seconds(),
		Window: o.window.Seconds(), Concurrency: o.concurrency, BulkSessions: o.bulkSessions}
	if slices.Contains(systems, sbDante) {
		p, err := exec.LookPath(o.dante)
		if err != nil {
			return fmt.Errorf("Dante not found (apt-get install dante-server, or --systems exitd): %w", err)
		}
		o.dante = p
		v, _ := exec.CommandContext(ctx, p, "-v").CombinedOutput()
		rep.Dante = strings.TrimSpace(strings.SplitN(string(v), "\n", 2)[0])
	}
	if o.cpuprofile != "" {
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			return err
		}
	}
	// Children inherit the soft limit: Dante's processes as well.
	if _, _, err := socks.RaiseNoFileLimit(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "exitlab-socks")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("lab: building the bench namespace")
	lab, err := netlab.New(ctx, netlab.Options{Members: 1})
	if err != nil {
		return err
	}
	defer lab.Close()
	ns := lab.Internet // only its loopback is used
	if err := sbCheckNetns(ns); err != nil {
		return err
	}
	// 9,000 sessions use 18,000 loopback connections; CONNECT/s leaves
	// TIME_WAITs. Widen the ephemeral range in the bench namespace only,
	// above the proxies' ports.
	if err := ns.Run(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("2000 65535"), 0o644)
	}); err != nil {
		return fmt.Errorf("widen ip_local_port_range in %s: %w", ns.Name, err)
	}
	b := &sbBench{ctx: ctx, o: o, ns: ns, exe: exe, dir: dir, step: step}
	defer b.stopAll() // before lab.Close, which sweeps the namespace too

	var runErr error
	record := func(r *sbRun, err error) bool {
		if err == nil && r.Attempts > 1 {
			step("kept attempt with %.0f %% other CPU", r.OtherCPU)
		}
		if err != nil {
			runErr = err
			return false
		}
		rep.Runs = append(rep.Runs, *r)
		step("%s", sbRunLine(r))
		return true
	}
loop:
	for r := 1; r <= o.reps; r++ {
		if o.want(sbScSessions) {
			for _, n := range o.sessions {
				for _, sys := range systems {
					if !record(b.runQuiet(sbScSessions, sys, n, r)) {
						break loop
					}
				}
			}
		}
		for _, sc := range []string{sbScConnect, sbScBulk, sbScBulkSplit} {
			if !o.want(sc) {
				continue
			}
			n := o.concurrency
			if sc != sbScConnect {
				n = o.bulkSessions
			}
			for _, sys := range append(slices.Clone(systems), sbDirect) {
				if !record(b.runQuiet(sc, sys, n, r)) {
					break loop
				}
			}
		}
	}
	rep.Rows = sbSummarize(rep.Runs)
	rep.Seconds = time.Since(rep.When).Seconds()
	step("took %.1f min", rep.Seconds/60)
	if len(rep.Runs) > 0 {
		fmt.Fprintln(stdout)
		sbPrintTable(stdout, rep, false)
		if o.out != "" {
			if err := sbWriteOutputs(o.out, rep); err != nil {
				runErr = errors.Join(runErr, err)
			} else {
				fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join([]string{
					filepath.Join(o.out, "socks.json"), filepath.Join(o.out, "socks.md"), filepath.Join(o.out, "socks-sessions.svg")}, ", "))
			}
		}
	}
	return runErr
}

// sbCheckNetns makes sure the bench namespace is not the host's: the
// loadgen and proxies run there and its sysctl was just written.
func sbCheckNetns(ns *netlab.NS) error {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	var inside string
	if err := ns.Run(func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		return err
	}
	if inside == self {
		return fmt.Errorf("bench namespace %s is this process's own namespace", ns.Name)
	}
	return nil
}

type sbBench struct {
	ctx  context.Context
	o    socksBenchOpts
	ns   *netlab.NS
	exe  string
	dir  string
	step func(string, ...any)

	mu    sync.Mutex
	procs map[*sbProc]struct{} // started and not yet reaped
}

// sbProc is a child started in its own session. A new session gets its
// own scheduler autogroup, so the load generator and the proxy share the
// CPUs group against group, as on two machines, instead of thread against
// thread: Dante's hundreds of processes would otherwise starve the
// loadgen's two busy threads, and what was measured would be the loadgen.
// (netlab's NS.Start puts a child in a new process group, which cannot
// also lead a session; the process group is still the pid, so stopping
// works the same way. Lab.Close kills whatever is left in the namespace.)
type sbProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// start starts cmd (from NS.Command) in a new session, on cpus (nil:
// every CPU), and tracks it until it is reaped; stopAll stops what is left.
func (b *sbBench) start(cmd *exec.Cmd, cpus *unix.CPUSet) (*sbProc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.procs == nil {
		b.procs = map[*sbProc]struct{}{}
	}
	if err := sbStartOn(cmd, cpus); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &sbProc{cmd: cmd, done: make(chan struct{})}
	b.procs[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		b.mu.Lock()
		delete(b.procs, p)
		b.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// sbSplitCPUs is bulk-split's division of n CPUs: the first half for the
// load generator, the rest for the proxy.
func sbSplitCPUs(n int) (load, proxy unix.CPUSet) {
	for c := range n {
		if c < n/2 {
			load.Set(c)
		} else {
			proxy.Set(c)
		}
	}
	return load, proxy
}

// sbStartOn starts cmd with the CPU affinity cpus (nil: unchanged). The
// thread that forks holds the mask for the moment of the fork, so the
// child (through ip netns exec) and everything it forks later (Dante's
// processes) have it from their first instruction; a Go child sizes
// GOMAXPROCS by it.
func sbStartOn(cmd *exec.Cmd, cpus *unix.CPUSet) error {
	if cpus == nil {
		return cmd.Start()
	}
	runtime.LockOSThread() // the fork happens on this thread
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	if err := unix.SchedSetaffinity(0, cpus); err != nil {
		return fmt.Errorf("sched_setaffinity: %w", err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil {
		// Never let a pinned thread back into the scheduler's pool.
		runtime.LockOSThread()
		return errors.Join(err, fmt.Errorf("restore sched_setaffinity: %w", rerr))
	}
	return err
}

func (b *sbBench) stopAll() {
	b.mu.Lock()
	ps := make([]*sbProc, 0, len(b.procs))
	for p := range b.procs {
		ps = append(ps, p)
	}
	b.mu.Unlock()
	for _, p := range ps {
		_ = p.Stop()
	}
}

func (p *sbProc) Pid() int              { return p.cmd.Process.Pid }
func (p *sbProc) Done() <-chan struct{} { return p.done }
func (p *sbProc) Wait() error           { <-p.done; return p.err }

// Stop sends SIGTERM to the process group (= session), SIGKILL after 3 s,
// and waits until the process is reaped.
func (p *sbProc) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pid := p.Pid()
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(3 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("process %d did not exit after SIGKILL", pid)
	}
}

// runQuiet runs once, and again (up to --retries times, 10 s apart) while
// other work on the shared box took more than --max-other-cpu during the
// window; it keeps the least disturbed attempt.
func (b *sbBench) runQuiet(scenario, sys string, n, rep int) (*sbRun, error) {
	var best *sbRun
	start := time.Now()
	for attempt := 1; ; attempt++ {
		r, err := b.run(scenario, sys, n, rep)
		if err != nil {
			return nil, err
		}
		r.Attempts = attempt
		r.TookSeconds = time.Since(start).Seconds()
		if best == nil || r.OtherCPU < best.OtherCPU {
			best = r
		}
		if r.OtherCPU <= b.o.maxOther || attempt > b.o.retries {
			return best, nil
		}
		b.step("%s — other work took %.0f %% CPU in the window: again in 10 s", sbRunLine(r), r.OtherCPU)
		sbSleep(b.ctx, 10*time.Second)
		if err := b.ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// run starts the system's proxy (none for direct), runs the loadgen once
// and stops the proxy.
func (b *sbBench) run(scenario, sys string, n, rep int) (*sbRun, error) {
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	b.waitTimeWait()
	var loadCPUs, proxyCPUs *unix.CPUSet // nil: every CPU
	if scenario == sbScBulkSplit {
		l, p := sbSplitCPUs(b.o.cpus)
		loadCPUs, proxyCPUs = &l, &p
	}
	var px *sbProxy
	if sys != sbDirect {
		profile := ""
		if sys == sbExitd && b.o.cpuprofile != "" {
			profile = filepath.Join(b.o.cpuprofile, fmt.Sprintf("exitd-%s-%d-rep%d.pprof", scenario, n, rep))
		}
		var err error
		if px, err = b.startProxy(sys, profile, proxyCPUs); err != nil {
			return nil, fmt.Errorf("%s %s rep %d: %w", sys, scenario, rep, err)
		}
		defer px.stop()
	}
	mode := scenario
	if scenario == sbScBulkSplit {
		mode = sbScBulk // the same load; only where it runs differs
	}
	spec := sbSpec{Mode: mode, Sessions: n, Rate: b.o.rate, Tick: b.o.tick, Ramp: b.o.ramp,
		ProbeRate: b.o.probeRate, Warmup: b.o.warmup, Window: b.o.window, Timeout: b.o.connectTimeout, SetupLimit: b.o.setupLimit}
	switch scenario {
	case sbScSessions:
		spec.Window = b.o.sessionWindow
	case sbScConnect:
		spec.Concurrency, spec.Sessions = n, 0
		spec.Warmup = min(b.o.warmup, time.Second)
	case sbScBulk, sbScBulkSplit:
		spec.Warmup = min(b.o.warmup, time.Second)
	}
	if px != nil {
		spec.Proxy = px.addr
	}
	res, use, err := b.loadgen(spec, px, loadCPUs)
	if err != nil {
		if px != nil {
			err = fmt.Errorf("%w (proxy stderr: %s)", err, px.stderr())
		}
		return nil, fmt.Errorf("%s %s n=%d rep %d: %w", sys, scenario, n, rep, err)
	}
	r := sbRunFrom(scenario, sys, n, rep, spec, res, use)
	return &r, nil
}

// sbMaxTimeWaitPorts is how many local ports TIME_WAIT sockets of the
// bench namespace may hold when a run starts (of the 63,536 in its
// ephemeral range; 9,000 sessions leave about 18,000). Where TIME_WAITs
// hold ephemeral ports, a proxy that binds its outgoing sockets before
// connecting (Dante's "external:") cannot use those ports and refuses
// CONNECTs. The CONNECT/s scenario keeps its TIME_WAITs on the sink's and
// the proxy's listening ports.
const sbMaxTimeWaitPorts = 30000

// waitTimeWait waits (at most 70 s) until TIME_WAIT sockets of the bench
// namespace hold fewer than sbMaxTimeWaitPorts local ports, so a run does
// not inherit the previous run's.
func (b *sbBench) waitTimeWait() {
	ports := func() int {
		var n int
		_ = b.ns.Run(func() error {
			data, err := os.ReadFile("/proc/thread-self/net/tcp")
			n = sbTimeWaitPorts(string(data))
			return err
		})
		return n
	}
	if n := ports(); n >= sbMaxTimeWaitPorts {
		b.step("waiting for TIME_WAIT sockets on %d local ports to expire", n)
		_ = netlab.WaitFor(b.ctx, 70*time.Second, func() bool { return ports() < sbMaxTimeWaitPorts })
	}
}

// sbTimeWaitPorts counts the distinct local ports of TIME_WAIT sockets
// (state 06) in a /proc/net/tcp.
func sbTimeWaitPorts(table string) int {
	seen := map[string]bool{}
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[3] != "06" {
			continue
		}
		if _, port, ok := strings.Cut(f[1], ":"); ok {
			seen[port] = true
		}
	}
	return len(seen)
}

// sbUsageWindow is what the parent read around the window.
type sbUsageWindow struct {
	idle, start, end sbUsage
	loadStart        float64 // loadgen CPU seconds
	loadEnd          float64
	hostStart        sbHostCPU
	hostEnd          sbHostCPU
	seconds          float64
}

// sbRunFrom folds a loadgen result and the proxy's usage into a run.
func sbRunFrom(scenario, sys string, n, rep int, spec sbSpec, res *sbLoadResult, u sbUsageWindow) sbRun {
	r := sbRun{Scenario: scenario, System: sys, Sessions: n, Rep: rep, WindowSecond: res.Window,
		Established: res.Established, SetupFailed: res.SetupFailed, Broken: res.Broken,
		SetupP50Ms: res.SetupP50Ms, SetupP99Ms: res.SetupP99Ms,
		ConnectP50Ms: res.ConnectP50Ms, ConnectP99Ms: res.ConnectP99Ms,
		Probes: res.Probes, ProbesFailed: res.ProbesFailed, Errors: res.Errors,
		SetupSeconds: res.SetupSeconds, KernelSetup: res.KernelSetup, KernelWindow: res.KernelWindow}
	for _, v := range res.Rates {
		r.DeliveredBps += v
	}
	switch scenario {
	case sbScSessions:
		r.OfferedBps = float64(n * spec.Rate)
		if r.OfferedBps > 0 {
			r.DeliveredRatio = r.DeliveredBps / r.OfferedBps
		}
		r.Jain = Jain(res.Rates)
	case sbScBulk, sbScBulkSplit:
		r.Jain = Jain(res.Rates)
	case sbScConnect:
		r.ConnectsPerSec = res.ConnectsPerSec
		r.ConnectsFailed = res.ConnectsFailed
	}
	if u.seconds > 0 {
		r.CPUPercent = 100 * (u.end.CPU - u.start.CPU) / u.seconds
		r.LoadgenCPU = 100 * (u.loadEnd - u.loadStart) / u.seconds
		// Whatever else ran on the shared box meanwhile.
		r.OtherCPU = max(0, u.hostEnd.busyPercent(u.hostStart)-r.CPUPercent-r.LoadgenCPU)
	}
	if sys != sbDirect {
		r.RSSIdleMB = float64(u.idle.RSS) / 1e6
		r.RSSMB = float64(u.end.RSS) / 1e6
		r.RSSGrowthMB = r.RSSMB - r.RSSIdleMB
		r.PSSMB = float64(u.end.PSS) / 1e6
		r.Procs = u.end.Procs
	}
	return r
}

func sbRunLine(r *sbRun) string {
	switch r.Scenario {
	case sbScSessions:
		return fmt.Sprintf("rep %d  %-6s sessions %5d: delivered %.3f of offered (%.1f MiB/s), Jain %.4f, connect p50/p99 %.1f/%.1f ms, setup p99 %.0f ms, RSS %+.0f MB (%.0f), CPU %.0f %% (loadgen %.0f, others %.0f), %d procs, failures %d/%d/%d",
			r.Rep, r.System, r.Sessions, r.DeliveredRatio, r.DeliveredBps/(1<<20), r.Jain, r.ConnectP50Ms, r.ConnectP99Ms, r.SetupP99Ms,
			r.RSSGrowthMB, r.RSSMB, r.CPUPercent, r.LoadgenCPU, r.OtherCPU, r.Procs, r.SetupFailed, r.Broken, r.ProbesFailed)
	case sbScConnect:
		return fmt.Sprintf("rep %d  %-6s connect x%d: %.0f CONNECT/s, p50/p99 %.2f/%.2f ms, %d failed, CPU %.0f %% (loadgen %.0f, others %.0f)",
			r.Rep, r.System, r.Sessions, r.ConnectsPerSec, r.ConnectP50Ms, r.ConnectP99Ms, r.ConnectsFailed, r.CPUPercent, r.LoadgenCPU, r.OtherCPU)
	default:
		return fmt.Sprintf("rep %d  %-6s %s x%d: %.0f MiB/s, Jain %.3f, CPU %.0f %% (loadgen %.0f, others %.0f), failures %d/%d",
			r.Rep, r.System, r.Scenario, r.Sessions, r.DeliveredBps/(1<<20), r.Jain, r.CPUPercent, r.LoadgenCPU, r.OtherCPU, r.SetupFailed, r.Broken)
	}
}

// ---------------------------------------------------------------------------
// Proxies.

type sbProxy struct {
	sys     string
	addr    string
	proc    *sbProc
	errPath string
	tree    map[int]bool // every pid seen in the proxy's tree, for the final kill
	idle    sbUsage
}

// startProxy starts the proxy on cpus (nil: every CPU).
func (b *sbBench) startProxy(sys, profile string, cpus *unix.CPUSet) (*sbProxy, error) {
	errf, err := os.CreateTemp(b.dir, sys+"-stderr-")
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	var cmd *exec.Cmd
	var port int
	switch sys {
	case sbExitd:
		port = sbExitdPort
		args := []string{"socks-bench", "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}
		if profile != "" {
			args = append(args, "--cpuprofile", profile)
		}
		cmd = b.ns.Command(b.ctx, b.exe, args...)
	case sbDante:
		port = sbDantePort
		if cmd, err = harness.DanteCommand(b.ctx, b.ns, b.o.dante, b.dir, "danted", sbDanteConfig(port)); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown system %q", sys)
	}
	cmd.Stdout, cmd.Stderr = errf, errf
	proc, err := b.start(cmd, cpus)
	if err != nil {
		return nil, err
	}
	px := &sbProxy{sys: sys, addr: fmt.Sprintf("127.0.0.1:%d", port), proc: proc, errPath: errf.Name(), tree: map[int]bool{}}
	err = netlab.WaitFor(b.ctx, 10*time.Second, func() bool {
		select {
		case <-proc.Done():
			return true
		default:
		}
		c, err := b.ns.DialContext(b.ctx, "tcp", px.addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	select {
	case <-proc.Done():
		err = fmt.Errorf("%s exited at start: %v", sys, proc.Wait())
	default:
	}
	if err != nil {
		px.stop()
		return nil, fmt.Errorf("%s not listening on %s: %w: %s", sys, px.addr, err, px.stderr())
	}
	time.Sleep(500 * time.Millisecond) // let it settle (Dante pre-forks)
	px.idle = px.usage(false)
	return px, nil
}

func (px *sbProxy) stderr() string {
	b, _ := os.ReadFile(px.errPath)
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// usage sums CPU and RSS (and PSS when asked) over the proxy's process
// tree; it remembers every pid it saw.
func (px *sbProxy) usage(pss bool) sbUsage {
	pids := sbTree(px.proc.Pid())
	for _, p := range pids {
		px.tree[p] = true
	}
	return sbProcUsage(pids, px.proc.Pid(), pss)
}

// stop ends the proxy's process group, then any process of its tree still
// alive (by PID: Dante's children).
func (px *sbProxy) stop() {
	px.usage(false) // refresh the tree
	_ = px.proc.Stop()
	for pid := range px.tree {
		if pid == px.proc.Pid() {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "danted" {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sbDanteConfig is the Dante server configuration: loopback only, no
// authentication, errors-only logging, like the Dante report's setup.
func sbDanteConfig(port int) string {
	lo := netip.MustParsePrefix("127.0.0.0/8")
	return harness.DanteConfig{
		Comment:  "generated by exitlab socks-bench",
		Listen:   []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))},
		External: "lo",
		Clients:  []netip.Prefix{lo},
		Rules:    []harness.DanteRule{{From: lo, To: lo, Commands: []string{"connect"}}},
	}.String()
}

// ---------------------------------------------------------------------------
// /proc.

type sbUsage struct {
	CPU   float64 // seconds, user + system (+ reaped children of the root)
	RSS   uint64  // bytes
	PSS   uint64  // bytes; 0 unless asked
	Procs int
}

// sbStat is what socks-bench reads from /proc/PID/stat.
type sbStat struct {
	PPid      int
	CPUTicks  uint64 // utime + stime
	ChildTick uint64 // cutime + cstime (reaped children)
	RSSPages  uint64
}

// sbParseStat parses /proc/PID/stat.
func sbParseStat(s string) (sbStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return sbStat{}, errors.New("stat: no command name")
	}
	// After ")": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17) ... rss(24).
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return sbStat{}, fmt.Errorf("stat: %d fields", len(f))
	}
	num := func(k int) uint64 { // field number k of proc(5)
		v, _ := strconv.ParseInt(f[k-3], 10, 64)
		return uint64(max(v, 0))
	}
	return sbStat{PPid: int(num(4)), CPUTicks: num(14) + num(15), ChildTick: num(16) + num(17), RSSPages: num(24)}, nil
}

func sbReadStat(pid int) (sbStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return sbStat{}, err
	}
	return sbParseStat(string(b))
}

// sbTree returns root and its descendants, found through PPid.
func sbTree(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := sbReadStat(pid); err == nil {
			children[st.PPid] = append(children[st.PPid], pid)
		}
	}
	return sbDescendants(root, children)
}

// sbDescendants walks a parent → children map from root (root first).
func sbDescendants(root int, children map[int][]int) []int {
	out := []int{root}
	seen := map[int]bool{root: true}
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i]] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

const sbClockTick = 100 // USER_HZ

// sbHostCPU is the machine's CPU time from /proc/stat, in ticks.
type sbHostCPU struct{ busy, total uint64 }

// sbParseHostCPU reads the aggregate "cpu" line of /proc/stat. Busy is
// what processes ran (user, nice, system) plus steal (taken by the
// hypervisor); irq and softirq are left out: on loopback they are mostly
// this bench's own packets, which /proc/PID/stat does not charge to the
// proxy or the loadgen. Guest time is already in user.
func sbParseHostCPU(s string) sbHostCPU {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return sbHostCPU{}
	}
	var h sbHostCPU
	for i, v := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		n, _ := strconv.ParseUint(v, 10, 64)
		h.total += n
		if i <= 2 || i == 7 {
			h.busy += n
		}
	}
	return h
}

func sbReadHostCPU() sbHostCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return sbHostCPU{}
	}
	return sbParseHostCPU(string(b))
}

// busyPercent is the machine's busy time since a, in percent of one CPU.
func (h sbHostCPU) busyPercent(a sbHostCPU) float64 {
	if h.total <= a.total {
		return 0
	}
	return 100 * float64(h.busy-a.busy) / float64(h.total-a.total) * float64(runtime.NumCPU())
}

func sbProcUsage(pids []int, root int, pss bool) sbUsage {
	var u sbUsage
	page := uint64(os.Getpagesize())
	for _, pid := range pids {
		st, err := sbReadStat(pid)
		if err != nil {
			continue
		}
		u.Procs++
		ticks := st.CPUTicks
		if pid == root {
			ticks += st.ChildTick // children that exited and were reaped
		}
		u.CPU += float64(ticks) / sbClockTick
		u.RSS += st.RSSPages * page
		if pss {
			u.PSS += sbPSS(pid)
		}
	}
	return u
}

// sbPSS reads the proportional set size of pid (shared pages divided
// among the processes sharing them: Dante's forks share most of theirs).
func sbPSS(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// ---------------------------------------------------------------------------
// Running the loadgen child.

// sbSpec tells the loadgen child what to run.
type sbSpec struct {
	Mode        string        `json:"mode"`  // sessions, connect, bulk
	Proxy       string        `json:"proxy"` // SOCKS5 server; empty: straight to the sink
	Sessions    int           `json:"sessions"`
	Rate        int           `json:"rate"` // bytes/s per session (sessions mode)
	Tick        time.Duration `json:"tick"`
	Ramp        int           `json:"ramp"`
	ProbeRate   float64       `json:"probe_rate"`
	Concurrency int           `json:"concurrency"`
	Warmup      time.Duration `json:"warmup"`
	Window      time.Duration `json:"window"`
	Timeout     time.Duration `json:"timeout"`     // per connect + handshake
	SetupLimit  time.Duration `json:"setup_limit"` // establishing every session; the rest count as failed
}

// sbLoadResult is the loadgen child's answer.
type sbLoadResult struct {
	Window         float64   `json:"window_s"`
	Rates          []float64 `json:"rates,omitempty"` // bytes/s per session in the window; failed sessions 0
	Established    int       `json:"established"`
	SetupFailed    int       `json:"setup_failed"`
	Broken         int       `json:"broken"`
	SetupP50Ms     float64   `json:"setup_p50_ms"`
	SetupP99Ms     float64   `json:"setup_p99_ms"`
	Probes         int       `json:"probes"`
	ProbesFailed   int       `json:"probes_failed"`
	ConnectP50Ms   float64   `json:"connect_p50_ms"`
	ConnectP99Ms   float64   `json:"connect_p99_ms"`
	ConnectsPerSec float64   `json:"connects_per_s"`
	ConnectsFailed int       `json:"connects_failed"`
	SetupSeconds   float64   `json:"setup_s"`
	// Kernel TCP counters of the bench namespace (nstat names), deltas
	// over the establishment and over the window.
	KernelSetup  map[string]int64 `json:"kernel_setup,omitempty"`
	KernelWindow map[string]int64 `json:"kernel_window,omitempty"`
	Errors       []string         `json:"errors,omitempty"`
}

// loadgen runs the loadgen child once on cpus (nil: every CPU), reading
// the proxy's usage at the window marks.
func (b *sbBench) loadgen(spec sbSpec, px *sbProxy, cpus *unix.CPUSet) (*sbLoadResult, sbUsageWindow, error) {
	var u sbUsageWindow
	if px != nil {
		u.idle = px.idle
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, u, err
	}
	limit := spec.SetupLimit + spec.Warmup + spec.Window + 3*spec.Timeout + 2*time.Minute
	ctx, cancel := context.WithTimeout(b.ctx, limit)
	defer cancel()

	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, u, err
	}
	defer outR.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return nil, u, err
	}
	defer inW.Close()
	errf, err := os.CreateTemp(b.dir, "loadgen-stderr-")
	if err != nil {
		outW.Close()
		inR.Close()
		return nil, u, err
	}
	defer errf.Close()
	cmd := b.ns.Command(ctx, b.exe, "socks-bench", "loadgen", "--spec", string(js))
	cmd.Stdout, cmd.Stdin, cmd.Stderr = outW, inR, errf
	proc, err := b.start(cmd, cpus)
	outW.Close()
	inR.Close()
	if err != nil {
		return nil, u, err
	}
	defer proc.Stop()
	failed := func(err error) error {
		_ = proc.Stop()
		msg, _ := os.ReadFile(errf.Name())
		if s := strings.TrimSpace(string(msg)); s != "" {
			return fmt.Errorf("loadgen: %w: %s", err, sbTail(s, 2000))
		}
		return fmt.Errorf("loadgen: %w", err)
	}

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	var start time.Time
	loadPid := proc.Pid()
	for {
		var line string
		select {
		case l, ok := <-lines:
			if !ok {
				return nil, u, failed(fmt.Errorf("ended without a result (%v)", proc.Wait()))
			}
			line = l
		case <-ctx.Done():
			return nil, u, failed(ctx.Err())
		}
		switch {
		case line == "START":
			start = time.Now()
			if px != nil {
				u.start = px.usage(false)
			}
			if st, err := sbReadStat(loadPid); err == nil {
				u.loadStart = float64(st.CPUTicks) / sbClockTick
			}
			u.hostStart = sbReadHostCPU()
		case line == "END":
			u.seconds = time.Since(start).Seconds()
			if px != nil {
				u.end = px.usage(true)
			}
			if st, err := sbReadStat(loadPid); err == nil {
				u.loadEnd = float64(st.CPUTicks) / sbClockTick
			}
			u.hostEnd = sbReadHostCPU()
			if _, err := io.WriteString(inW, "go\n"); err != nil {
				return nil, u, failed(err)
			}
		case strings.HasPrefix(line, "RESULT "):
			var res sbLoadResult
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &res); err != nil {
				return nil, u, failed(err)
			}
			if err := proc.Wait(); err != nil {
				return nil, u, failed(err)
			}
			return &res, u, nil
		default:
			b.step("loadgen: %s", line)
		}
	}
}

func sbTail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ---------------------------------------------------------------------------
// The hidden children.

// newSocksServeCmd is exitd's proxy for the bench: the real socks package.
func newSocksServeCmd() *cobra.Command {
	var listen, profile string
	var maxSessions int
	var rate float64
	cmd := &cobra.Command{
		Use:    "serve",
		Short:  "exitd's SOCKS5 server for socks-bench (runs inside the bench namespace)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ap, err := netip.ParseAddrPort(listen)
			if err != nil {
				return err
			}
			return sbServe(cmd.Context(), ap, maxSessions, rate, profile)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:1080", "address to serve")
	cmd.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile here until SIGTERM")
	cmd.Flags().IntVar(&maxSessions, "max-sessions", 100000, "socks.Options.MaxSessions (per source address)")
	cmd.Flags().Float64Var(&rate, "connect-rate", 1e6, "socks.Options.ConnectRate and ConnectBurst (per source address)")
	return cmd
}

// sbServerOptions are the bench's socks.Options: every session comes from
// 127.0.0.1, so the per-source limits are raised out of the way; Deny lets
// loopback through (the sink is there; the daemon's deny set refuses it)
// and refuses everything else.
func sbServerOptions(maxSessions int, rate float64, log *slog.Logger) (socks.Options, socks.ListenerConfig) {
	return socks.Options{
			Logger:       log,
			Deny:         func(a netip.Addr) bool { return !a.Unmap().IsLoopback() },
			MaxSessions:  maxSessions,
			ConnectRate:  rate,
			ConnectBurst: int(min(rate, 1e9)),
		}, socks.ListenerConfig{
			Rules: []socks.Rule{{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}},
		}
}

func sbServe(ctx context.Context, listen netip.AddrPort, maxSessions int, rate float64, profile string) error {
	if _, _, err := socks.RaiseNoFileLimit(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts, lc := sbServerOptions(maxSessions, rate, log)
	lc.Addr = listen
	srv, err := socks.New(opts)
	if err != nil {
		return err
	}
	// socks.Listen: the listener the daemon's Start opens (no TCP
	// keep-alive), not net.Listen's.
	l, err := socks.Listen(ctx, listen)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(profile)
	if err != nil {
		l.Close()
		return err
	}
	defer stopProfile()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l, lc) }()
	select {
	case <-ctx.Done(): // SIGTERM from the parent
	case err := <-done:
		return err
	}
	pprof.StopCPUProfile() // before Close: the profile is of the load
	srv.Close()
	if err := <-done; err != nil && !errors.Is(err, socks.ErrServerClosed) {
		return err
	}
	return nil
}

func newSocksLoadgenCmd(stdout io.Writer) *cobra.Command {
	var js string
	cmd := &cobra.Command{
		Use:    "loadgen",
		Short:  "socks-bench's load generator and sink (runs inside the bench namespace)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var spec sbSpec
			if err := json.Unmarshal([]byte(js), &spec); err != nil {
				return fmt.Errorf("--spec: %w", err)
			}
			res, err := sbLoad(cmd.Context(), spec, stdout, os.Stdin)
			if err != nil {
				return err
			}
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "RESULT %s\n", b)
			return err
		},
	}
	cmd.Flags().StringVar(&js, "spec", "", "what to run (JSON)")
	return cmd
}

// ---------------------------------------------------------------------------
// The loadgen child: sink and clients in one process.

// sbSink serves the loadgen's connections: in sessions mode it sends
// rate×tick every tick to each (from its first moment: sessions arrive
// while others stream), in bulk mode as fast as it can once every session
// is established (open), in connect mode nothing (it closes at once).
type sbSink struct {
	l     net.Listener
	spec  sbSpec
	gate  chan struct{} // bulk: closed by open
	once  sync.Once
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func sbNewSink(spec sbSpec) (*sbSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sbSink{l: l, spec: spec, gate: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	if spec.Mode != sbScBulk {
		s.open()
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// open lets bulk senders start.
func (s *sbSink) open() { s.once.Do(func() { close(s.gate) }) }

func (s *sbSink) addr() netip.AddrPort { return netip.MustParseAddrPort(s.l.Addr().String()) }

func (s *sbSink) accept() {
	defer s.wg.Done()
	chunk := make([]byte, max(s.spec.Rate*int(s.spec.Tick/time.Millisecond)/1000, 1))
	bulk := make([]byte, 128<<10)
	for {
		c, err := s.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			switch s.spec.Mode {
			case sbScSessions:
				sbPaced(c, chunk, s.spec.Tick)
			case sbScBulk:
				<-s.gate
				for {
					if _, err := c.Write(bulk); err != nil {
						return
					}
				}
			default:
				// connect: close at once. The active closer keeps the
				// TIME_WAIT, and here that is the sink's listening port:
				// a proxy that binds its outgoing sockets before
				// connecting (Dante, "external:") would otherwise find
				// its ephemeral ports held by its own TIME_WAITs.
			}
		}()
	}
}

// sbPaced writes chunk every tick from a random phase; when writes block
// (the proxy does not keep up) it catches up at most one second.
func sbPaced(c net.Conn, chunk []byte, tick time.Duration) {
	next := time.Now().Add(time.Duration(rand.Int64N(int64(tick))))
	for {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		if _, err := c.Write(chunk); err != nil {
			return
		}
		next = next.Add(tick)
		if time.Since(next) > time.Second {
			next = time.Now()
		}
	}
}

func (s *sbSink) close() {
	s.open()
	s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// sbConnectRequest is a SOCKS5 CONNECT request for dst (RFC 1928).
func sbConnectRequest(dst netip.AddrPort) []byte {
	a := dst.Addr().Unmap()
	req := []byte{5, 1, 0}
	if a.Is4() {
		req = append(req, 1)
	} else {
		req = append(req, 4)
	}
	req = append(req, a.AsSlice()...)
	return append(req, byte(dst.Port()>>8), byte(dst.Port()))
}

// sbHandshake does a no-auth SOCKS5 CONNECT to dst on c.
func sbHandshake(c net.Conn, dst netip.AddrPort) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	var b [262]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fmt.Errorf("method reply: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("method reply %x", b[:2])
	}
	if _, err := c.Write(sbConnectRequest(dst)); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, b[:5]); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("reply code 0x%02x", b[1])
	}
	var rest int // after the 5 bytes read: rest of BND.ADDR, BND.PORT
	switch b[3] {
	case 1:
		rest = 4 - 1 + 2
	case 4:
		rest = 16 - 1 + 2
	case 3:
		rest = int(b[4]) + 2
	default:
		return fmt.Errorf("reply address type %d", b[3])
	}
	_, err := io.ReadFull(c, b[:rest])
	return err
}

// sbDial connects to dst through proxy (or straight when proxy is empty)
// and returns the connection and how long it took.
func sbDial(ctx context.Context, proxy string, dst netip.AddrPort, timeout time.Duration) (net.Conn, time.Duration, error) {
	start := time.Now()
	d := net.Dialer{Timeout: timeout}
	if proxy == "" {
		c, err := d.DialContext(ctx, "tcp", dst.String())
		return c, time.Since(start), err
	}
	c, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, time.Since(start), err
	}
	_ = c.SetDeadline(start.Add(timeout))
	if err := sbHandshake(c, dst); err != nil {
		c.Close()
		return nil, time.Since(start), err
	}
	_ = c.SetDeadline(time.Time{})
	return c, time.Since(start), nil
}

// sbErrors keeps the first few distinct error texts.
type sbErrors struct {
	mu   sync.Mutex
	seen map[string]int
}

func (e *sbErrors) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen == nil {
		e.seen = map[string]int{}
	}
	s := err.Error()
	if _, ok := e.seen[s]; ok || len(e.seen) < 8 {
		e.seen[s]++
	}
}

func (e *sbErrors) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for s, n := range e.seen {
		out = append(out, fmt.Sprintf("%d× %s", n, s))
	}
	slices.Sort(out)
	return out
}

// sbLatencies collects connect latencies from many goroutines.
type sbLatencies struct {
	mu sync.Mutex
	ms []float64
}

func (l *sbLatencies) add(d time.Duration) {
	l.mu.Lock()
	l.ms = append(l.ms, float64(d)/float64(time.Millisecond))
	l.mu.Unlock()
}

func (l *sbLatencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ms)
}

func (l *sbLatencies) pct(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sbPercentile(l.ms, q)
}

// sbPercentile is the nearest-rank q-quantile (0 < q ≤ 1) of v; 0 for none.
func sbPercentile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// sbLoad is the loadgen child's work. It prints START and END around the
// window and waits for a line on in after END before closing anything.
func sbLoad(ctx context.Context, spec sbSpec, out io.Writer, in io.Reader) (*sbLoadResult, error) {
	if _, _, err := socks.RaiseNoFileLimit(); err != nil {
		return nil, err
	}
	sink, err := sbNewSink(spec)
	if err != nil {
		return nil, err
	}
	defer sink.close()
	dst := sink.addr()
	res := &sbLoadResult{}
	var errs sbErrors
	defer func() { res.Errors = errs.list() }()
	resume := func() error {
		line := make(chan error, 1)
		go func() {
			_, err := bufio.NewReader(in).ReadString('\n')
			line <- err
		}()
		select {
		case err := <-line:
			return err
		case <-time.After(time.Minute):
			return errors.New("no go-ahead from the parent")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if spec.Mode == sbScConnect {
		return res, sbLoadConnect(ctx, spec, dst, out, resume, res, &errs)
	}

	// sessions and bulk: establish, then measure.
	n := spec.Sessions
	conns := make([]net.Conn, n)
	counts := make([]atomic.Int64, n)
	ended := make([]atomic.Bool, n)
	var closing atomic.Bool
	var readers sync.WaitGroup
	bufSize := 16 << 10
	if spec.Mode == sbScBulk {
		bufSize = 128 << 10
	}
	var setup sbLatencies
	jobs := make(chan int)
	var workers sync.WaitGroup
	var failed atomic.Int64
	for range min(spec.Ramp, n) {
		workers.Go(func() {
			for i := range jobs {
				c, d, err := sbDial(ctx, spec.Proxy, dst, spec.Timeout)
				if err != nil {
					failed.Add(1)
					errs.add(fmt.Errorf("setup: %w", err))
					continue
				}
				setup.add(d)
				conns[i] = c
				readers.Go(func() {
					buf := make([]byte, bufSize)
					for {
						k, err := c.Read(buf)
						counts[i].Add(int64(k))
						if err != nil {
							if !closing.Load() {
								ended[i].Store(true)
							}
							return
						}
					}
				})
			}
		})
	}
	k0 := sbNetstat()
	setupStart := time.Now()
	deadline := time.NewTimer(spec.SetupLimit)
	progress := time.NewTicker(10 * time.Second)
	skipped := 0
feed:
	for i := range n {
		for {
			select {
			case jobs <- i:
				continue feed
			case <-progress.C:
				fmt.Fprintf(out, "%d of %d sessions established, %d failed, after %.0f s\n",
					int(setup.count()), n, failed.Load(), time.Since(setupStart).Seconds())
			case <-deadline.C:
				skipped = n - i
				errs.add(fmt.Errorf("setup: %d sessions not attempted within %v", skipped, spec.SetupLimit))
				break feed
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	workers.Wait()
	deadline.Stop()
	progress.Stop()
	failed.Add(int64(skipped))
	res.SetupSeconds = time.Since(setupStart).Seconds()
	res.KernelSetup = sbDelta(k0, sbNetstat())
	defer func() {
		closing.Store(true)
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		readers.Wait()
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.SetupFailed = int(failed.Load())
	res.Established = n - res.SetupFailed
	res.SetupP50Ms, res.SetupP99Ms = setup.pct(0.50), setup.pct(0.99)
	if n >= 1000 {
		fmt.Fprintf(out, "%d of %d sessions established in %.1f s (%d failed)\n", res.Established, n, res.SetupSeconds, res.SetupFailed)
	}
	sink.open()
	sbSleep(ctx, spec.Warmup)

	c0 := make([]int64, n)
	fmt.Fprintln(out, "START")
	t0 := time.Now()
	k1 := sbNetstat()
	for i := range counts {
		c0[i] = counts[i].Load()
	}
	// Probes: new connections at ProbeRate while the load runs.
	var probes sync.WaitGroup
	var probeLat sbLatencies
	var probeN, probeFail atomic.Int64
	stopProbes := make(chan struct{})
	if spec.Mode == sbScSessions {
		probes.Go(func() {
			t := time.NewTicker(time.Duration(float64(time.Second) / spec.ProbeRate))
			defer t.Stop()
			for {
				select {
				case <-stopProbes:
					return
				case <-ctx.Done():
					return
				case <-t.C:
				}
				probes.Go(func() {
					probeN.Add(1)
					c, d, err := sbDial(ctx, spec.Proxy, dst, spec.Timeout)
					if err != nil {
						probeFail.Add(1)
						probeLat.add(spec.Timeout) // a failure counts as the timeout
						errs.add(fmt.Errorf("probe: %w", err))
						return
					}
					probeLat.add(d)
					c.Close()
				})
			}
		})
	}
	sbSleep(ctx, spec.Window)
	c1 := make([]int64, n)
	for i := range counts {
		c1[i] = counts[i].Load()
	}
	secs := time.Since(t0).Seconds()
	broken := 0
	for i := range ended {
		if ended[i].Load() {
			broken++
		}
	}
	close(stopProbes)
	if d := time.Since(t0) - spec.Window; d > time.Second {
		fmt.Fprintf(out, "window overran by %.1f s\n", d.Seconds())
	}
	probes.Wait() // at most Timeout
	res.KernelWindow = sbDelta(k1, sbNetstat())
	fmt.Fprintln(out, "END")
	if err := resume(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Window = secs
	res.Broken = broken
	res.Rates = sbRates(c0, c1, secs)
	res.Probes, res.ProbesFailed = int(probeN.Load()), int(probeFail.Load())
	res.ConnectP50Ms, res.ConnectP99Ms = probeLat.pct(0.50), probeLat.pct(0.99)
	return res, nil
}

// sbKernelCounters are the TCP counters (nstat names) socks-bench reports:
// what explains a slow connect (a dropped SYN waits a 1 s retransmission
// timeout) or a lost session.
var sbKernelCounters = []string{
	"TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPBacklogDrop", "TcpExtTCPReqQFullDrop",
	"TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent", "TcpExtTCPSynRetrans", "TcpExtTCPTimeouts",
	"TcpRetransSegs", "TcpAttemptFails", "TcpEstabResets", "TcpExtTCPAbortOnMemory", "TcpExtTCPMemoryPressures",
}

// sbNetstat reads the kernel's TCP counters of this process's network
// namespace.
func sbNetstat() map[string]int64 {
	m := map[string]int64{}
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sbParseNetstat(string(b), m)
	}
	return m
}

// sbParseNetstat adds the counters of a /proc/net/{netstat,snmp} file to
// m, named like nstat: prefix (without the colon) + field.
func sbParseNetstat(s string, m map[string]int64) {
	lines := strings.Split(s, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(h) == 0 || len(h) != len(v) || h[0] != v[0] {
			continue
		}
		prefix := strings.TrimSuffix(h[0], ":")
		for j := 1; j < len(h); j++ {
			if n, err := strconv.ParseInt(v[j], 10, 64); err == nil {
				m[prefix+h[j]] = n
			}
		}
	}
}

// sbDelta is b − a for the reported counters, without the zeros.
func sbDelta(a, b map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for _, k := range sbKernelCounters {
		if v := b[k] - a[k]; v != 0 {
			d[k] = v
		}
	}
	return d
}

// sbRates is bytes per second per session between two counter snapshots.
func sbRates(c0, c1 []int64, secs float64) []float64 {
	out := make([]float64, len(c0))
	if secs <= 0 {
		return out
	}
	for i := range c0 {
		out[i] = float64(c1[i]-c0[i]) / secs
	}
	return out
}

// sbLoadConnect runs Concurrency clients that connect, handshake and close
// in a loop; it counts completions inside the window. The sink closes
// first (its listening port keeps the TIME_WAITs), the client when it has
// read the EOF.
func sbLoadConnect(ctx context.Context, spec sbSpec, dst netip.AddrPort, out io.Writer, resume func() error, res *sbLoadResult, errs *sbErrors) error {
	var measuring atomic.Bool
	var ok, fail atomic.Int64
	lats := make([][]float64, spec.Concurrency)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range spec.Concurrency {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, d, err := sbDial(ctx, spec.Proxy, dst, spec.Timeout)
				m := measuring.Load()
				if err != nil {
					if m {
						fail.Add(1)
						errs.add(err)
					}
					if ctx.Err() != nil {
						return
					}
					continue
				}
				// The sink closes at once; wait for that EOF and close
				// second, so that no TIME_WAIT holds the client's port.
				_ = c.SetReadDeadline(time.Now().Add(spec.Timeout))
				_, rerr := io.Copy(io.Discard, c)
				c.Close()
				if rerr != nil {
					if m {
						fail.Add(1)
						errs.add(fmt.Errorf("waiting for close: %w", rerr))
					}
					continue
				}
				if m {
					ok.Add(1)
					lats[w] = append(lats[w], float64(d)/float64(time.Millisecond))
				}
			}
		})
	}
	sbSleep(ctx, spec.Warmup)
	fmt.Fprintln(out, "START")
	measuring.Store(true)
	t0 := time.Now()
	k0 := sbNetstat()
	sbSleep(ctx, spec.Window)
	measuring.Store(false)
	secs := time.Since(t0).Seconds()
	res.KernelWindow = sbDelta(k0, sbNetstat())
	fmt.Fprintln(out, "END")
	close(stop)
	wg.Wait()
	if err := resume(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var all []float64
	for _, l := range lats {
		all = append(all, l...)
	}
	res.Window = secs
	res.ConnectsPerSec = float64(ok.Load()) / secs
	res.ConnectsFailed = int(fail.Load())
	res.ConnectP50Ms, res.ConnectP99Ms = sbPercentile(all, 0.50), sbPercentile(all, 0.99)
	return nil
}

func sbSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ---------------------------------------------------------------------------
// Summary, table, plot.

// sbSummarize takes the median of every figure over reps, per system ×
// scenario × session count; bulk rows get their ratio to direct.
func sbSummarize(runs []sbRun) []sbRow {
	type key struct {
		sc, sys string
		n       int
	}
	var order []key
	groups := map[key][]sbRun{}
	for _, r := range runs {
		k := key{r.Scenario, r.System, r.Sessions}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var rows []sbRow
	for _, k := range order {
		g := groups[k]
		med := func(f func(sbRun) float64) float64 {
			v := make([]float64, len(g))
			for i, r := range g {
				v[i] = f(r)
			}
			return median(v)
		}
		row := sbRow{Scenario: k.sc, System: k.sys, Sessions: k.n, Reps: len(g),
			DeliveredBps:   med(func(r sbRun) float64 { return r.DeliveredBps }),
			DeliveredRatio: med(func(r sbRun) float64 { return r.DeliveredRatio }),
			Jain:           med(func(r sbRun) float64 { return r.Jain }),
			ConnectP50Ms:   med(func(r sbRun) float64 { return r.ConnectP50Ms }),
			ConnectP99Ms:   med(func(r sbRun) float64 { return r.ConnectP99Ms }),
			SetupP99Ms:     med(func(r sbRun) float64 { return r.SetupP99Ms }),
			ConnectsPerSec: med(func(r sbRun) float64 { return r.ConnectsPerSec }),
			CPUPercent:     med(func(r sbRun) float64 { return r.CPUPercent }),
			RSSMB:          med(func(r sbRun) float64 { return r.RSSMB }),
			RSSGrowthMB:    med(func(r sbRun) float64 { return r.RSSGrowthMB }),
			PSSMB:          med(func(r sbRun) float64 { return r.PSSMB }),
			Procs:          int(med(func(r sbRun) float64 { return float64(r.Procs) })),
		}
		for _, r := range g {
			row.Failures = max(row.Failures, r.SetupFailed+r.Broken+r.ProbesFailed+r.ConnectsFailed)
		}
		rows = append(rows, row)
	}
	// Bulk through a proxy as a ratio of direct: per rep (the runs of one
	// rep are minutes apart at most; the machine drifts more between reps),
	// then the median.
	for i := range rows {
		row := &rows[i]
		if row.Scenario != sbScBulk && row.Scenario != sbScBulkSplit || row.System == sbDirect {
			continue
		}
		var ratios []float64
		for _, r := range groups[key{row.Scenario, row.System, row.Sessions}] {
			for _, d := range groups[key{row.Scenario, sbDirect, row.Sessions}] {
				if d.Rep == r.Rep && d.DeliveredBps > 0 {
					ratios = append(ratios, r.DeliveredBps/d.DeliveredBps)
				}
			}
		}
		row.BulkRatio = median(ratios)
	}
	return rows
}

func sbFind(rows []sbRow, sc, sys string, n int) *sbRow {
	for i := range rows {
		if rows[i].Scenario == sc && rows[i].System == sys && (n < 0 || rows[i].Sessions == n) {
			return &rows[i]
		}
	}
	return nil
}

// sbVerdict says whether exitd's figure meets a target.
func sbVerdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// sbTableRows builds the table: measure, exitd, Dante, target, verdict.
func sbTableRows(rep *sbReport) [][]string {
	rows := [][]string{{"measure", "exitd", "Dante 1.4.2", "target", "exitd"}}
	cell := func(sys string, f func(*sbRow) string, sc string, n int) string {
		if r := sbFind(rep.Rows, sc, sys, n); r != nil {
			return f(r)
		}
		return "—"
	}
	var ns []int
	for _, r := range rep.Rows {
		if r.Scenario == sbScSessions && r.System == sbExitd {
			ns = append(ns, r.Sessions)
		}
	}
	slices.Sort(ns)
	kib := rep.Rate >> 10
	for _, n := range ns {
		ex := sbFind(rep.Rows, sbScSessions, sbExitd, n)
		add := func(measure string, f func(*sbRow) string, target, verdict string) {
			rows = append(rows, []string{measure, cell(sbExitd, f, sbScSessions, n), cell(sbDante, f, sbScSessions, n), target, verdict})
		}
		add(fmt.Sprintf("%d × %d KiB/s: delivered / offered", n, kib),
			func(r *sbRow) string {
				return fmt.Sprintf("%.3f (%.1f MiB/s)", r.DeliveredRatio, r.DeliveredBps/(1<<20))
			},
			"full (≥ 0.99)", sbVerdict(ex.DeliveredRatio >= sbTargetDelivered))
		add(fmt.Sprintf("%d: per-session Jain", n),
			func(r *sbRow) string { return fmt.Sprintf("%.4f", r.Jain) },
			"≥ 0.99", sbVerdict(ex.Jain >= sbTargetJain))
		add(fmt.Sprintf("%d: connect p50 / p99 under load", n),
			func(r *sbRow) string { return fmt.Sprintf("%s / %s ms", sbMs(r.ConnectP50Ms), sbMs(r.ConnectP99Ms)) },
			"p99 ≤ 50 ms", sbVerdict(ex.ConnectP99Ms <= sbTargetP99))
		add(fmt.Sprintf("%d: proxy RSS growth (RSS; PSS)", n),
			func(r *sbRow) string {
				return fmt.Sprintf("%.0f MB (%.0f; %.0f)", r.RSSGrowthMB, r.RSSMB, r.PSSMB)
			},
			"≤ 500 MB", sbVerdict(ex.RSSGrowthMB <= sbTargetRSSGrowthMB))
		add(fmt.Sprintf("%d: proxy CPU (processes)", n),
			func(r *sbRow) string { return fmt.Sprintf("%.0f %% (%d)", r.CPUPercent, r.Procs) }, "—", "")
		add(fmt.Sprintf("%d: failed connects / broken sessions", n),
			func(r *sbRow) string { return strconv.Itoa(r.Failures) }, "0", sbVerdict(ex.Failures == 0))
	}
	if ex := sbFind(rep.Rows, sbScConnect, sbExitd, -1); ex != nil {
		direct := cell(sbDirect, func(r *sbRow) string { return fmt.Sprintf("%.0f", r.ConnectsPerSec) }, sbScConnect, ex.Sessions)
		rows = append(rows, []string{
			fmt.Sprintf("CONNECT/s, %d clients (direct: %s)", ex.Sessions, direct),
			cell(sbExitd, func(r *sbRow) string { return fmt.Sprintf("%.0f", r.ConnectsPerSec) }, sbScConnect, ex.Sessions),
			cell(sbDante, func(r *sbRow) string { return fmt.Sprintf("%.0f", r.ConnectsPerSec) }, sbScConnect, ex.Sessions),
			"≥ 10,000", sbVerdict(ex.ConnectsPerSec >= sbTargetConnects)})
		rows = append(rows, []string{"CONNECT: p50 / p99, proxy CPU",
			cell(sbExitd, sbConnectCell, sbScConnect, ex.Sessions), cell(sbDante, sbConnectCell, sbScConnect, ex.Sessions), "—", ""})
	}
	for _, sc := range []string{sbScBulk, sbScBulkSplit} {
		ex := sbFind(rep.Rows, sc, sbExitd, -1)
		if ex == nil {
			continue
		}
		where := "shared CPUs"
		if sc == sbScBulkSplit {
			where = "loadgen and proxy on CPUs of their own"
		}
		direct := cell(sbDirect, func(r *sbRow) string { return fmt.Sprintf("%.0f MiB/s", r.DeliveredBps/(1<<20)) }, sc, ex.Sessions)
		rows = append(rows, []string{
			fmt.Sprintf("%s, %d sessions, %s: × direct (direct: %s)", sc, ex.Sessions, where, direct),
			cell(sbExitd, sbBulkCell, sc, ex.Sessions), cell(sbDante, sbBulkCell, sc, ex.Sessions),
			"≥ 0.80", sbVerdict(ex.BulkRatio >= sbTargetBulkRatio)})
		rows = append(rows, []string{sc + ": per-session Jain",
			cell(sbExitd, func(r *sbRow) string { return fmt.Sprintf("%.3f", r.Jain) }, sc, ex.Sessions),
			cell(sbDante, func(r *sbRow) string { return fmt.Sprintf("%.3f", r.Jain) }, sc, ex.Sessions),
			"≥ 0.95", sbVerdict(ex.Jain >= sbTargetBulkJain)})
	}
	return rows
}

func sbConnectCell(r *sbRow) string {
	return fmt.Sprintf("%s / %s ms, %.0f %%", sbMs(r.ConnectP50Ms), sbMs(r.ConnectP99Ms), r.CPUPercent)
}

func sbBulkCell(r *sbRow) string {
	return fmt.Sprintf("%.2f (%.0f MiB/s, CPU %.0f %%)", r.BulkRatio, r.DeliveredBps/(1<<20), r.CPUPercent)
}

func sbMs(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// sbPrintTable prints the table with tabwriter, or as Markdown.
func sbPrintTable(w io.Writer, rep *sbReport, markdown bool) {
	rows := sbTableRows(rep)
	fmt.Fprintf(w, "SOCKS5 proxies, loopback in one namespace, median of %d reps (%s, %d CPUs, %s; %s)\n",
		rep.Reps, rep.Machine.CPU, rep.Machine.CPUs, rep.Machine.Kernel, rep.When.Format("2006-01-02"))
	if len(rep.Runs) > 0 {
		var other []float64
		for _, r := range rep.Runs {
			other = append(other, r.OtherCPU)
		}
		fmt.Fprintf(w, "Other work on the box during the kept windows: median %.0f %%, max %.0f %% of one CPU.\n",
			median(other), slices.Max(other))
	}
	if markdown {
		fmt.Fprintln(w)
		for i, r := range rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
			if i == 0 {
				fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(r)))
			}
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, r := range rows {
		if i == 0 {
			for j := range r {
				r[j] = strings.ToUpper(r[j])
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func sbWriteOutputs(dir string, rep *sbReport) error {
	if err := writeReport(dir, "socks.json", rep); err != nil {
		return err
	}
	var md strings.Builder
	sbPrintTable(&md, rep, true)
	if err := os.WriteFile(filepath.Join(dir, "socks.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "socks-sessions.svg"), []byte(sbPlot(rep)), 0o644)
}

// sbPlot draws sessions vs delivered rate (MiB/s) for each proxy, with the
// offered load dashed.
func sbPlot(rep *sbReport) string {
	type series struct {
		name, color string
		dash        bool
		pts         [][2]float64
	}
	ss := []*series{
		{name: "offered", color: "#777777", dash: true},
		{name: "exitd", color: "#0072B2"},
		{name: "Dante 1.4.2", color: "#D55E00"},
	}
	var xmax, ymax float64
	for _, r := range rep.Rows {
		if r.Scenario != sbScSessions {
			continue
		}
		x, y := float64(r.Sessions), r.DeliveredBps/(1<<20)
		switch r.System {
		case sbExitd:
			ss[1].pts = append(ss[1].pts, [2]float64{x, y})
			ss[0].pts = append(ss[0].pts, [2]float64{x, float64(r.Sessions*rep.Rate) / (1 << 20)})
		case sbDante:
			ss[2].pts = append(ss[2].pts, [2]float64{x, y})
		}
	}
	for _, s := range ss {
		slices.SortFunc(s.pts, func(a, b [2]float64) int { return int(a[0] - b[0]) })
		for _, p := range s.pts {
			xmax, ymax = max(xmax, p[0]), max(ymax, p[1])
		}
	}
	const w, h, ml, mr, mt, mb = 640, 400, 70, 20, 40, 50
	xmax, ymax = sbNice(xmax), sbNice(ymax)
	px := func(x float64) float64 { return ml + x/xmax*(w-ml-mr) }
	py := func(y float64) float64 { return h - mb - y/ymax*(h-mt-mb) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<title>Sessions × %d KiB/s: delivered rate through each proxy</title>`+"\n", rep.Rate>>10)
	b.WriteString(`<rect width="100%" height="100%" fill="#ffffff"/>` + "\n")
	for i := 0; i <= 5; i++ {
		xv, yv := xmax*float64(i)/5, ymax*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`+"\n", ml, py(yv), w-mr, py(yv))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%g</text>`+"\n", ml-6, py(yv), math.Round(yv*10)/10)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", px(xv), h-mb+16, math.Round(xv))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", ml, mt, w-ml-mr, h-mt-mb)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">concurrent sessions</text>`+"\n", ml+(w-ml-mr)/2, h-12)
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">delivered MiB/s (median of %d)</text>`+"\n", mt+(h-mt-mb)/2, rep.Reps)
	for i, s := range ss {
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="6 4"`
		}
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.color, dash)
			for _, p := range s.pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(p[0]), py(p[1]), s.color)
			}
		}
		lx := ml + 10 + i*130
		fmt.Fprintf(&b, `<line x1="%d" y1="22" x2="%d" y2="22" stroke="%s" stroke-width="3"%s/><text x="%d" y="26">%s</text>`+"\n", lx, lx+22, s.color, dash, lx+28, s.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// sbNice rounds v up to 1, 2 or 5 × a power of ten (1 for v ≤ 0).
func sbNice(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func sbMachineInfo() sbMachine {
	m := sbMachine{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				m.MemoryMB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
