package main

// conn-bench: one greedy member against nine light ones for the kernel's
// connection tracking table, quotas on vs off (docs/nat.md, "Fair state";
// issue 16).
//
//	light members 2-10 ── routineLight: TCP connect + close, --light-rate/s each,
//	  open loop (a slow connect never delays the next) ──▶ internet host :8080
//	greedy member 1 ── routineGreedy: new UDP flows (harness.FlowSender) at
//	  the pace the sampler sets ──▶ exit (exitd) ──▶ internet host
//	  harness.UDPEcho answers each flow at once and again 2.5 s later, so
//	  the exit's entries become ASSURED (early_drop cannot evict them);
//	  harness.ReplySink drops the answers in the exit before the tunnel and
//	  counts the greedy's new flows around exitd's forward chain
//	the sampler, each second: nf_conntrack_count in the exit, the sink's
//	  and the echo's counters; it steers the pace (AIMD on lost flows) and
//	  ends the flood
//
// One lab, one exitd, 1 + --light members for the whole run. A mode is a
// [conntrack] table applied with SIGHUP (exitd reloads it); between runs
// the greedy stops, late second answers drain, quotas go off, the exit's
// and the internet host's conntrack tables are flushed and the next mode
// is applied (its dynamic sets start empty). Per rep, modes alternate
// (off on, then on off):
//
//	idle   light members only, --idle s: their connect time without a flood
//	flood  greedy + light: "off" until the table is full and --hold s more,
//	       "on" for --on-seconds; never beyond --max-flood; also reported
//	       in 10 s windows (the greedy's connections pile up)
//
// Then the cost of the rules: the greedy alone with quotas off and with
// quotas on but never binding (quota 1,000,000, rate 1,000,000/s),
// alternating, at --cost-rate flows/s for --cost-seconds (exitd's CPU per
// new flow, each second, against the greedy's tracked connections), then
// at the default rate limit of 500/s for 5 s (exitd's CPU with that many
// tracked). exitd's process time includes the kernel's forward path of
// every packet it writes to the TUN, the nft rules among it; the
// connlimit of a member's quota re-checks that member's tracked
// connections when it opens new ones, so their number is the variable.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"exitd/config"
	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
)

// Modes: [conntrack] tables appended to exitd's config.
const (
	connModeOn    = "on"    // exitd's defaults: auto quota, 500/s burst 2,000
	connModeOff   = "off"   // quotas and rate limits off
	connModeRules = "rules" // on but never binding: the rules' cost alone
)

// connModeConfig returns the config a mode appends.
func connModeConfig(mode string) string {
	switch mode {
	case connModeOff:
		return "[conntrack]\nmax_conns_per_member = -1\nnew_conn_rate = -1\n"
	case connModeRules:
		return fmt.Sprintf("[conntrack]\nmax_conns_per_member = %d\nnew_conn_rate = %d\nnew_conn_burst = %d\n",
			connRulesQuota, 1_000_000, 10_000_000)
	}
	return "" // on: the defaults
}

const (
	connRulesQuota  = 1_000_000 // bounds.MaxConns
	connServerPort  = 8080
	connFullFrac    = 0.99 // "full": nf_conntrack_count at 99 % of max
	connTick        = time.Second
	connMinRate     = 500
	connLossDown    = 0.10 // lost flows above this fraction slow the greedy
	connLossUp      = 0.03 // ... below this (and keeping up) speed it up
	connDrain       = 3 * time.Second
	connMaxLight    = 30
	connMaxFloodCap = 90 // s
	connHoldSettle  = time.Second
	connHold        = 5 * time.Second
)

type connOpts struct {
	light          int
	lightRate      float64
	connectTimeout time.Duration
	idle           int
	onSecs         int
	maxFlood       int
	hold           int
	reps           int
	floodStart     int
	floodMax       int
	sockets        int
	costRate       int
	costSecs       int
	costReps       int
	out            string
}

func newConnBenchCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	o := connOpts{}
	cmd := &cobra.Command{
		Use:   "conn-bench",
		Short: "Conntrack fair state: one greedy member vs nine light ones, quotas on vs off; light connect success and p99, CPU of the rules",
		Long: `One member floods new UDP flows that the kernel cannot evict early (each
answered at once and again 2.5 s later) while nine light members each open
--light-rate TCP connections a second to the internet host. Two modes on
the same exitd, switched with SIGHUP, alternating per rep:

  off   [conntrack] max_conns_per_member = -1, new_conn_rate = -1
  on    exitd's defaults (auto quota, 500 new connections/s burst 2,000)

Per mode: the light members' connect success and p50/p99 connect time
without the flood (idle) and during it, the greedy member's tracked
connections and drops, the table's fill each second, the flood's rate.
The flood stops by itself: "off" once the table is full and --hold s more,
"on" after --on-seconds, both at most --max-flood s. Then the CPU of the
rules: the greedy alone at --cost-rate flows/s, quotas off vs on but never
binding, exitd CPU-microseconds per new flow.

Targets (quotas on): light success >= 99.9 % and flood p99 <= 2x idle p99.
Writes conn.json to --out and prints the tables. nf_conntrack_max is
global and read-only in a namespace: it is read, never changed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			r, err := connBench(cmd.Context(), b.binaries(), o, stdout)
			if r != nil {
				printConnReport(stdout, r)
				err = saveReport(stdout, o.out, "conn.json", r, err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.light, "light", 9, "light members")
	f.Float64Var(&o.lightRate, "light-rate", 20, "connections per second per light member")
	f.DurationVar(&o.connectTimeout, "connect-timeout", 3*time.Second, "a light connect not established by then fails")
	f.IntVar(&o.idle, "idle", 10, "seconds of the idle phase")
	f.IntVar(&o.onSecs, "on-seconds", 30, "seconds of the flood with quotas on")
	f.IntVar(&o.maxFlood, "max-flood", 90, "longest flood, seconds")
	f.IntVar(&o.hold, "hold", 10, "seconds the flood goes on once the table is full (quotas off)")
	f.IntVar(&o.reps, "reps", 1, "repetitions of the off/on pair (order alternates)")
	f.IntVar(&o.floodStart, "flood-start", 4000, "the greedy's first pace, new flows/s")
	f.IntVar(&o.floodMax, "flood-max", 40000, "the greedy's highest pace, new flows/s")
	f.IntVar(&o.sockets, "sockets", 8, "greedy source sockets (64,512 flows each)")
	f.IntVar(&o.costRate, "cost-rate", 3000, "new flows/s of the CPU-cost runs (0: none)")
	f.IntVar(&o.costSecs, "cost-seconds", 7, "seconds of a CPU-cost run's fast stage (then 6 s at 500/s)")
	f.IntVar(&o.costReps, "cost-reps", 2, "CPU-cost runs per variant (alternating)")
	f.StringVar(&o.out, "out", "bench-results", "directory for conn.json (empty: none)")
	return cmd
}

// check bounds the run before anything is built.
func (o connOpts) check() error {
	switch {
	case o.light < 1 || o.light > connMaxLight:
		return fmt.Errorf("--light: %d out of range [1, %d]", o.light, connMaxLight)
	case o.lightRate <= 0 || o.lightRate > 200:
		return fmt.Errorf("--light-rate: %g out of range (0, 200]", o.lightRate)
	case o.connectTimeout < 100*time.Millisecond || o.connectTimeout > 30*time.Second:
		return fmt.Errorf("--connect-timeout: %v out of range [100ms, 30s]", o.connectTimeout)
	case o.idle < 2 || o.idle > 120:
		return fmt.Errorf("--idle: %d out of range [2, 120]", o.idle)
	case o.maxFlood < 5 || o.maxFlood > connMaxFloodCap:
		return fmt.Errorf("--max-flood: %d out of range [5, %d]", o.maxFlood, connMaxFloodCap)
	case o.onSecs < 2 || o.onSecs > o.maxFlood:
		return fmt.Errorf("--on-seconds: %d out of range [2, --max-flood %d]", o.onSecs, o.maxFlood)
	case o.hold < 0 || o.hold >= o.maxFlood:
		return fmt.Errorf("--hold: %d must be in [0, --max-flood %d)", o.hold, o.maxFlood)
	case o.reps < 1 || o.reps > 5:
		return fmt.Errorf("--reps: %d out of range [1, 5]", o.reps)
	case o.floodStart < connMinRate || o.floodStart > o.floodMax:
		return fmt.Errorf("--flood-start: %d out of range [%d, --flood-max %d]", o.floodStart, connMinRate, o.floodMax)
	case o.floodMax > 200_000:
		return fmt.Errorf("--flood-max: %d above 200000", o.floodMax)
	case o.sockets < 1 || o.sockets > 32:
		return fmt.Errorf("--sockets: %d out of range [1, 32]", o.sockets)
	case o.costRate < 0 || o.costRate > o.floodMax:
		return fmt.Errorf("--cost-rate: %d out of range [0, --flood-max %d]", o.costRate, o.floodMax)
	case o.costRate > 0 && (o.costSecs < 2 || o.costSecs > 60):
		return fmt.Errorf("--cost-seconds: %d out of range [2, 60]", o.costSecs)
	case o.costRate > 0 && (o.costReps < 1 || o.costReps > 5):
		return fmt.Errorf("--cost-reps: %d out of range [1, 5]", o.costReps)
	}
	return nil
}

// connModesOf returns rep's mode order: off on, then on off.
func connModesOf(rep int) []string {
	if rep%2 == 1 {
		return []string{connModeOff, connModeOn}
	}
	return []string{connModeOn, connModeOff}
}

// ---------------------------------------------------------------------------
// Report.

// connLatency is the light members' connects of one phase. Percentiles
// are nearest-rank over every attempt, a failed one counting as infinitely
// slow: a p99 that lands on a failure is reported as the timeout with
// P99Failed set.
type connLatency struct {
	Attempts   int            `json:"attempts"`
	OK         int            `json:"ok"`
	SuccessPct float64        `json:"success_pct"`
	P50Ms      float64        `json:"p50_ms"`
	P99Ms      float64        `json:"p99_ms"`
	P50Failed  bool           `json:"p50_is_failure,omitempty"`
	P99Failed  bool           `json:"p99_is_failure,omitempty"`
	Errors     map[string]int `json:"errors,omitempty"`
}

// connAttempt is one light connect.
type connAttempt struct {
	At  time.Duration // start, since the phase began
	Dur time.Duration
	Err string // "" when established in time
}

// connSample is one second of a flood.
type connSample struct {
	T        float64 `json:"t_s"`
	Fill     int     `json:"conntrack"`
	Pace     float64 `json:"pace_per_s"` // the greedy's target
	Sent     uint64  `json:"sent"`       // cumulative, greedy flows
	Passed   uint64  `json:"passed"`     // through exitd's forward chain
	Dropped  uint64  `json:"dropped"`    // by exitd's quota and rate rules
	Answered uint64  `json:"answered"`   // reached the internet host
	Lost     float64 `json:"lost_frac"`  // of the second's sent flows
	Exitd    float64 `json:"exitd_cpu_cores"`
}

// connWindow is a slice of a flood: the light members' connects begun in
// it, exitd's mean CPU and the greedy's flows through exitd by its end.
type connWindow struct {
	From    float64 `json:"from_s"`
	To      float64 `json:"to_s"`
	Success float64 `json:"success_pct"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	Failed  bool    `json:"p99_is_failure,omitempty"`
	Exitd   float64 `json:"exitd_cpu_cores"`
	Passed  uint64  `json:"greedy_passed"`
	Fill    int     `json:"conntrack"`
}

// connWindowSecs is the width of a connWindow.
const connWindowSecs = 10

// floodWindows cuts a flood of d into windows of width; a remainder
// shorter than a tenth of width joins the last window.
func floodWindows(as []connAttempt, ss []connSample, d, width, timeout time.Duration) []connWindow {
	var out []connWindow
	for from := time.Duration(0); from < d; from += width {
		to := min(from+width, d)
		if d-to < width/10 {
			to = d
		}
		var in []connAttempt
		for _, a := range as {
			if a.At >= from && a.At < to {
				in = append(in, a)
			}
		}
		l := summarizeAttempts(in, timeout)
		w := connWindow{From: from.Seconds(), To: to.Seconds(), Success: l.SuccessPct, P50Ms: l.P50Ms, P99Ms: l.P99Ms, Failed: l.P99Failed}
		n := 0
		for _, s := range ss {
			if s.T > from.Seconds()+0.5 && s.T <= to.Seconds()+0.5 { // samples come just after each second
				w.Exitd += s.Exitd
				w.Passed, w.Fill = s.Passed, s.Fill
				n++
			}
		}
		if n > 0 {
			w.Exitd /= float64(n)
		}
		out = append(out, w)
		if to == d {
			break
		}
	}
	return out
}

// connRun is one mode's idle and flood phases.
type connRun struct {
	Rep        int          `json:"rep"`
	Mode       string       `json:"mode"`
	Quota      int          `json:"quota_in_force"` // exitctl status; 0 off
	Idle       connLatency  `json:"idle"`
	Flood      connLatency  `json:"flood"`
	AtFull     *connLatency `json:"while_full,omitempty"`  // connects begun with the table >= 99 % full
	BeforeFull *connLatency `json:"before_full,omitempty"` // ... before it was (when it was at all)
	Windows    []connWindow `json:"windows"`               // the flood in 10 s slices
	FloodSecs  float64      `json:"flood_s"`
	FullAfter  float64      `json:"full_after_s"` // -1: never
	StopReason string       `json:"stop_reason"`
	CTMax      int          `json:"conntrack_max"`
	PeakFill   int          `json:"peak_conntrack"`
	Sent       uint64       `json:"greedy_sent"`
	Passed     uint64       `json:"greedy_passed"`
	Dropped    uint64       `json:"greedy_dropped"`
	Answered   uint64       `json:"greedy_answered"`
	SentRate   float64      `json:"greedy_sent_per_s"`
	PassRate   float64      `json:"greedy_passed_per_s"`
	Tracked    int          `json:"greedy_tracked"`      // exitctl top, after the flood
	InTable    int          `json:"greedy_tracked_dump"` // the exit's table, dumped at the same time
	QuotaDrops uint64       `json:"greedy_quota_drops"`
	RateDrops  uint64       `json:"greedy_rate_drops"`
	LightLimit int          `json:"light_members_dropped"` // light members in status at_limit
	ExitdCPU   float64      `json:"exitd_cpu_cores"`       // during the flood
	ExitdEnd   float64      `json:"exitd_cpu_cores_last_10s"`
	ExitdUsPer float64      `json:"exitd_cpu_us_per_sent_flow"`
	EchoErrors uint64       `json:"echo_send_errors"`
	LoadAvg    string       `json:"loadavg_before"`
	Samples    []connSample `json:"samples"`
}

// connCostRun is one CPU-cost run.
type connCostRun struct {
	Mode     string          `json:"mode"`
	Rate     int             `json:"pace_per_s"`
	HoldRate int             `json:"hold_pace_per_s"`
	Seconds  float64         `json:"seconds"`
	Sent     uint64          `json:"sent"`
	Passed   uint64          `json:"passed"`
	Tracked  int             `json:"greedy_tracked"`      // exitctl top, after the run
	InTable  int             `json:"greedy_tracked_dump"` // the exit's table, dumped at the same time
	Fill     int             `json:"conntrack"`           // the exit's table, after the run
	UserS    float64         `json:"exitd_user_s"`        // net of exitd's idle CPU
	SysS     float64         `json:"exitd_system_s"`      // ditto
	UsPer    float64         `json:"exitd_cpu_us_per_flow"`
	SysUsPer float64         `json:"exitd_system_us_per_flow"`
	Points   []connCostPoint `json:"seconds_detail"`
	// The hold stage: exitd's CPU (cores, net of idle) while the greedy
	// goes on at HoldRate with HoldFrom entries in the table.
	HoldFrom   int     `json:"hold_conntrack"`
	HoldCores  float64 `json:"hold_exitd_cpu_cores"`
	HoldPassed float64 `json:"hold_passed_per_s"`
	LoadAvg    string  `json:"loadavg_before"`
}

// connCostPoint is one second of a CPU-cost run: exitd's CPU per new flow
// while the greedy member had about Tracked connections (the length of
// its connlimit list when quotas are on).
type connCostPoint struct {
	Tracked float64 `json:"tracked"`
	UsPer   float64 `json:"exitd_cpu_us_per_flow"`
}

// connCost is the CPU-cost summary.
type connCost struct {
	Runs     []connCostRun `json:"runs"`
	OffUs    float64       `json:"off_us_per_flow"` // medians of the runs
	RulesUs  float64       `json:"rules_us_per_flow"`
	OffSysUs float64       `json:"off_system_us_per_flow"`
	RulesSys float64       `json:"rules_system_us_per_flow"`
	DeltaUs  float64       `json:"rules_minus_off_us_per_flow"`
	// Per second, exitd's CPU per flow against the greedy's tracked
	// connections, fitted with a line per mode: the rules' cost grows
	// with the member's own connections (the kernel's connlimit walks
	// them), so it is given per 1,000 and at the auto quota.
	OffSlope   float64 `json:"off_us_per_flow_per_1k_tracked"`
	RulesSlope float64 `json:"rules_us_per_flow_per_1k_tracked"`
	OffAt      float64 `json:"off_us_per_flow_at_quota"`
	RulesAt    float64 `json:"rules_us_per_flow_at_quota"`
	AtTracked  int     `json:"at_quota_tracked"`
	ListLen    int     `json:"greedy_tracked_at_end"` // the longest connlimit list
	SetElems   int     `json:"connlimit_set_elements_max"`
	GrowSecs   int     `json:"grow_seconds"`
	// The hold stage, medians: exitd's CPU with HoldFrom tracked.
	HoldRate      int     `json:"hold_pace_per_s"`
	HoldFrom      int     `json:"hold_conntrack"`
	OffHoldCores  float64 `json:"off_hold_exitd_cpu_cores"`
	RulesHoldCore float64 `json:"rules_hold_exitd_cpu_cores"`
}

// connRow is one mode's medians over the reps.
type connRow struct {
	Mode        string  `json:"mode"`
	Runs        int     `json:"runs"`
	IdleSuccess float64 `json:"idle_success_pct"`
	IdleP50     float64 `json:"idle_p50_ms"`
	IdleP99     float64 `json:"idle_p99_ms"`
	Success     float64 `json:"flood_success_pct"`
	P50         float64 `json:"flood_p50_ms"`
	P99         float64 `json:"flood_p99_ms"`
	P99Failed   bool    `json:"flood_p99_is_failure"` // in any run
	P99Ratio    float64 `json:"flood_p99_over_idle_p99"`
	FullSuccess float64 `json:"while_full_success_pct"` // -1: never full
	BeforeP99   float64 `json:"before_full_p99_ms"`     // -1: never full
	Tracked     float64 `json:"greedy_tracked"`
	InTable     float64 `json:"greedy_tracked_dump"`
	QuotaDrops  float64 `json:"greedy_quota_drops"`
	RateDrops   float64 `json:"greedy_rate_drops"`
	PeakFill    float64 `json:"peak_conntrack"`
	FloodSecs   float64 `json:"flood_s"`
	SentRate    float64 `json:"greedy_sent_per_s"`
	PassRate    float64 `json:"greedy_passed_per_s"`
	ExitdCPU    float64 `json:"exitd_cpu_cores"`
	ExitdEnd    float64 `json:"exitd_cpu_cores_last_10s"`
	ExitdUsPer  float64 `json:"exitd_cpu_us_per_sent_flow"`
}

// connVerdict judges issue 16's targets (quotas on).
type connVerdict struct {
	Judged     bool     `json:"judged"` // a run with quotas on exists
	SuccessPct float64  `json:"on_flood_success_pct"`
	P99Ratio   float64  `json:"on_flood_p99_over_idle"`
	SuccessOK  bool     `json:"success_ok"` // >= 99.9 %
	P99OK      bool     `json:"p99_ok"`     // <= 2x idle
	OffFilled  bool     `json:"off_filled_table"`
	OffSuccess float64  `json:"off_flood_success_pct"`
	Pass       bool     `json:"pass"`
	Notes      []string `json:"notes,omitempty"`
}

// connReport is conn.json.
type connReport struct {
	When      time.Time    `json:"when"`
	Machine   string       `json:"machine"`
	LoadStart string       `json:"loadavg_start"`
	LoadEnd   string       `json:"loadavg_end"`
	Light     int          `json:"light_members"`
	LightRate float64      `json:"light_connects_per_s_each"`
	TimeoutMs float64      `json:"connect_timeout_ms"`
	Reps      int          `json:"reps"`
	CTMax     int          `json:"conntrack_max"`
	AutoQuota int          `json:"auto_quota"`
	Runs      []connRun    `json:"runs"`
	Rows      []connRow    `json:"rows"`
	Cost      *connCost    `json:"cost,omitempty"`
	Verdict   *connVerdict `json:"verdict,omitempty"`
}

// summarizeAttempts reduces one phase's connects (see connLatency).
func summarizeAttempts(as []connAttempt, timeout time.Duration) connLatency {
	l := connLatency{Attempts: len(as)}
	if len(as) == 0 {
		return l
	}
	ms := make([]float64, len(as))
	for i, a := range as {
		if a.Err == "" {
			l.OK++
			ms[i] = float64(a.Dur) / float64(time.Millisecond)
			continue
		}
		ms[i] = math.Inf(1)
		if l.Errors == nil {
			l.Errors = map[string]int{}
		}
		l.Errors[a.Err]++
	}
	sort.Float64s(ms)
	l.SuccessPct = 100 * float64(l.OK) / float64(len(as))
	to := float64(timeout) / float64(time.Millisecond)
	pick := func(q float64) (float64, bool) {
		v := dnsbPercentile(ms, q)
		if math.IsInf(v, 1) {
			return to, true
		}
		return v, false
	}
	l.P50Ms, l.P50Failed = pick(0.50)
	l.P99Ms, l.P99Failed = pick(0.99)
	return l
}

// attemptsFrom returns the attempts begun at or after t.
func attemptsFrom(as []connAttempt, t time.Duration) []connAttempt {
	var out []connAttempt
	for _, a := range as {
		if a.At >= t {
			out = append(out, a)
		}
	}
	return out
}

// summarise fills the rows and the verdict from the runs.
func (r *connReport) summarise() {
	r.Rows = nil
	for _, mode := range []string{connModeOff, connModeOn} {
		var runs []connRun
		for _, run := range r.Runs {
			if run.Mode == mode {
				runs = append(runs, run)
			}
		}
		if len(runs) == 0 {
			continue
		}
		pick := func(f func(connRun) float64) float64 {
			v := make([]float64, len(runs))
			for i, run := range runs {
				v[i] = f(run)
			}
			return median(v)
		}
		row := connRow{Mode: mode, Runs: len(runs),
			IdleSuccess: pick(func(x connRun) float64 { return x.Idle.SuccessPct }),
			IdleP50:     pick(func(x connRun) float64 { return x.Idle.P50Ms }),
			IdleP99:     pick(func(x connRun) float64 { return x.Idle.P99Ms }),
			Success:     pick(func(x connRun) float64 { return x.Flood.SuccessPct }),
			P50:         pick(func(x connRun) float64 { return x.Flood.P50Ms }),
			P99:         pick(func(x connRun) float64 { return x.Flood.P99Ms }),
			Tracked:     pick(func(x connRun) float64 { return float64(x.Tracked) }),
			InTable:     pick(func(x connRun) float64 { return float64(x.InTable) }),
			QuotaDrops:  pick(func(x connRun) float64 { return float64(x.QuotaDrops) }),
			RateDrops:   pick(func(x connRun) float64 { return float64(x.RateDrops) }),
			PeakFill:    pick(func(x connRun) float64 { return float64(x.PeakFill) }),
			FloodSecs:   pick(func(x connRun) float64 { return x.FloodSecs }),
			SentRate:    pick(func(x connRun) float64 { return x.SentRate }),
			PassRate:    pick(func(x connRun) float64 { return x.PassRate }),
			ExitdCPU:    pick(func(x connRun) float64 { return x.ExitdCPU }),
			ExitdEnd:    pick(func(x connRun) float64 { return x.ExitdEnd }),
			ExitdUsPer:  pick(func(x connRun) float64 { return x.ExitdUsPer }),
			FullSuccess: -1,
		}
		var full, before []float64
		for _, run := range runs {
			row.P99Failed = row.P99Failed || run.Flood.P99Failed
			if run.AtFull != nil {
				full = append(full, run.AtFull.SuccessPct)
			}
			if run.BeforeFull != nil {
				before = append(before, run.BeforeFull.P99Ms)
			}
		}
		row.BeforeP99 = -1
		if len(full) > 0 {
			row.FullSuccess = median(full)
		}
		if len(before) > 0 {
			row.BeforeP99 = median(before)
		}
		if row.IdleP99 > 0 {
			row.P99Ratio = row.P99 / row.IdleP99
		}
		r.Rows = append(r.Rows, row)
	}
	r.Verdict = connJudge(r.Rows, r.CTMax, r.AutoQuota)
}

// connJudge applies the targets to the rows; quota is the auto quota in
// force with quotas on.
func connJudge(rows []connRow, ctMax, quota int) *connVerdict {
	v := &connVerdict{}
	var on, off *connRow
	for i := range rows {
		switch rows[i].Mode {
		case connModeOn:
			on = &rows[i]
		case connModeOff:
			off = &rows[i]
		}
	}
	if on == nil {
		v.Notes = append(v.Notes, "no run with quotas on: the targets are not judged")
		return v
	}
	v.Judged = true
	v.SuccessPct, v.P99Ratio = on.Success, on.P99Ratio
	v.SuccessOK = on.Success >= 99.9
	v.P99OK = !on.P99Failed && on.IdleP99 > 0 && on.P99Ratio <= 2
	if !v.SuccessOK {
		v.Notes = append(v.Notes, fmt.Sprintf("quotas on: %.2f %% of the light members' connects succeeded during the flood, below 99.9 %%", on.Success))
	}
	if !v.P99OK {
		v.Notes = append(v.Notes, fmt.Sprintf("quotas on: flood p99 %.1f ms is %.1fx the idle p99 %.1f ms (target <= 2x)", on.P99, on.P99Ratio, on.IdleP99))
	}
	if on.QuotaDrops == 0 && on.RateDrops > 0 {
		v.Notes = append(v.Notes, fmt.Sprintf("quotas on: the rate limit alone held the greedy member (%.0f tracked, quota %d, no quota drops)", max(on.InTable, on.Tracked), quota))
	}
	if off != nil {
		v.OffSuccess = off.Success
		v.OffFilled = ctMax > 0 && off.PeakFill >= connFullFrac*float64(ctMax)
		if !v.OffFilled {
			v.Notes = append(v.Notes, fmt.Sprintf("quotas off: the flood filled %.0f of %d entries; the comparison shows less than a full table", off.PeakFill, ctMax))
		}
	}
	v.Pass = v.SuccessOK && v.P99OK
	return v
}

// ---------------------------------------------------------------------------
// The lab.

// connLab is what the runs need from the built lab.
type connLab struct {
	lab    *netlab.Lab
	node   *harness.Node
	client *control.Client
	greedy *harness.Member
	light  []*harness.Member
	// greedyAddr is the greedy member's inner IPv4 address.
	greedyAddr netip.Addr
	echo       *harness.UDPEcho
	sink       *harness.ReplySink
	server     netip.AddrPort
	ctMax      int
	mode       string // applied
	// autoQuota is the quota exitd derived (quotas on), 0 until applied.
	autoQuota int
	o         connOpts
	log       func(string, ...any)
}

func connBench(ctx context.Context, bins harness.Binaries, o connOpts, w io.Writer) (*connReport, error) {
	r := &connReport{When: time.Now().UTC(), Machine: dnsbMachine(), LoadStart: dnsbLoadAvg(),
		Light: o.light, LightRate: o.lightRate, TimeoutMs: ms2(o.connectTimeout), Reps: o.reps}
	log := func(format string, args ...any) { fmt.Fprintf(w, "conn-bench: "+format+"\n", args...) }
	cl, cleanup, err := connSetup(ctx, bins, o, log)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	r.CTMax = cl.ctMax
	finish := func(err error) (*connReport, error) {
		r.LoadEnd = dnsbLoadAvg()
		r.summarise()
		return r, err
	}
	for rep := 1; rep <= o.reps; rep++ {
		for _, mode := range connModesOf(rep) {
			if err := ctx.Err(); err != nil {
				return finish(err)
			}
			run, err := cl.run(ctx, rep, mode)
			if err == nil {
				err = ctx.Err() // an interrupted run measured nothing
			}
			if err != nil {
				return finish(fmt.Errorf("rep %d, quotas %s: %w", rep, mode, err))
			}
			if mode == connModeOn {
				r.AutoQuota = run.Quota
				cl.autoQuota = run.Quota
			}
			r.Runs = append(r.Runs, run)
			log("rep %d quotas %-3s  idle ok %.2f%% p99 %.1f ms | flood %.0f s: ok %.2f%% p99 %.1f ms, greedy %d tracked, drops %d quota %d rate, peak %d/%d, %.0f sent/s %.0f passed/s (%s)",
				rep, mode, run.Idle.SuccessPct, run.Idle.P99Ms, run.FloodSecs, run.Flood.SuccessPct, run.Flood.P99Ms,
				run.Tracked, run.QuotaDrops, run.RateDrops, run.PeakFill, run.CTMax, run.SentRate, run.PassRate, run.StopReason)
		}
	}
	if o.costRate > 0 {
		cost, err := cl.cost(ctx)
		r.Cost = cost
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return finish(fmt.Errorf("cpu cost: %w", err))
		}
	}
	return finish(nil)
}

// connSetup builds the lab, starts exitd with quotas off, the members, the
// internet host's TCP server and echo, and the exit's reply sink. cleanup
// is always non-nil and undoes everything, also after an error.
func connSetup(ctx context.Context, bins harness.Binaries, o connOpts, log func(string, ...any)) (*connLab, func(), error) {
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	log("lab: 1 greedy + %d light members", o.light)
	lab, err := netlab.New(ctx, netlab.Options{Members: 1 + o.light})
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { lab.Close() })
	cl := &connLab{lab: lab, o: o, log: log,
		server: netip.AddrPortFrom(netip.MustParseAddr(netlab.Internet4), connServerPort)}
	stopServer, err := serveAcceptClose(lab.Internet, cl.server)
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, stopServer)
	if cl.echo, err = harness.StartUDPEcho(ctx, lab.Internet, harness.EchoOptions{}); err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { cl.echo.Close() })
	dir, err := os.MkdirTemp("", "exitd-conn")
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	log("starting exitd and %d members", 1+o.light)
	cl.node, err = harness.StartNode(ctx, lab, harness.NodeOptions{Bin: bins, Dir: dir, Extra: connModeConfig(connModeOff)})
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { cl.node.Close() })
	cl.mode = connModeOff
	cl.client = control.NewClient(cl.node.Socket)
	if cl.greedy, err = cl.node.AddMember(ctx, lab.Members[0], "greedy"); err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { cl.greedy.Down() })
	for i := 1; i <= o.light; i++ {
		m, err := cl.node.AddMember(ctx, lab.Members[i], "light"+strconv.Itoa(i))
		if err != nil {
			return nil, cleanup, err
		}
		undo = append(undo, func() { m.Down() })
		cl.light = append(cl.light, m)
	}
	if cl.greedyAddr, err = netip.ParseAddr(cl.greedy.Addr4); err != nil {
		return nil, cleanup, fmt.Errorf("greedy member's address %q: %w", cl.greedy.Addr4, err)
	}
	if cl.sink, err = harness.StartReplySink(ctx, lab.Exit, cl.server.Addr(), cl.greedyAddr); err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { cl.sink.Close() })
	if cl.ctMax, err = readNetInt(lab.Exit, "netfilter/nf_conntrack_max"); err != nil {
		return nil, cleanup, err
	}
	if err := cl.waitReachable(ctx); err != nil {
		return nil, cleanup, err
	}
	log("ready: conntrack max %d; every member reaches the internet host", cl.ctMax)
	return cl, cleanup, nil
}

// waitReachable waits until every light member connects to the server and
// a greedy flow is answered.
func (cl *connLab) waitReachable(ctx context.Context) error {
	for _, m := range cl.light {
		if err := netlab.WaitFor(ctx, 20*time.Second, func() bool {
			_, err := dialTimed(m.NS, cl.server, time.Second)
			return err == nil
		}); err != nil {
			return fmt.Errorf("%s never reached %v: %w", m.Label, cl.server, err)
		}
	}
	s, err := harness.NewFlowSender(cl.greedy.NS, cl.server.Addr(), 1)
	if err != nil {
		return err
	}
	defer s.Close()
	before := cl.echo.Counts().Received
	return netlab.WaitFor(ctx, 20*time.Second, func() bool {
		if cl.echo.Counts().Received > before {
			return true
		}
		s.Send(1)
		time.Sleep(100 * time.Millisecond)
		return cl.echo.Counts().Received > before
	})
}

// serveAcceptClose accepts TCP connections at addr inside ns and closes
// them at once. The returned func stops it.
func serveAcceptClose(ns *netlab.NS, addr netip.AddrPort) (func(), error) {
	var ln net.Listener
	err := ns.Run(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %v in %s: %w", addr, ns.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			c.Close()
		}
	}()
	return func() { ln.Close(); <-done }, nil
}

// readNetInt reads /proc/sys/net/<key> inside ns.
func readNetInt(ns *netlab.NS, key string) (int, error) {
	var v int
	err := ns.Run(func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys/net", key))
		if err != nil {
			return err
		}
		v, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read %s in %s: %w", key, ns.Name, err)
	}
	return v, nil
}

// apply makes mode exitd's [conntrack] (config file + SIGHUP) and waits
// until status shows its quota; the quota it reports is returned.
func (cl *connLab) apply(ctx context.Context, mode string) (int, error) {
	if mode != cl.mode {
		opts := cl.node.Opts
		opts.Extra = connModeConfig(mode)
		if _, err := harness.WriteConfig(&opts); err != nil {
			return 0, err
		}
		if err := cl.node.Proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return 0, fmt.Errorf("reload exitd: %w", err)
		}
	}
	var quota int
	err := netlab.WaitFor(ctx, 15*time.Second, func() bool {
		st, err := cl.client.Status(ctx)
		if err != nil || st.Conntrack == nil {
			return false
		}
		quota = st.Conntrack.Quota
		switch mode {
		case connModeOff:
			return quota == 0
		case connModeRules:
			return quota == connRulesQuota
		}
		return quota > 0 && quota != connRulesQuota
	})
	if err != nil {
		return 0, fmt.Errorf("exitd did not apply quotas %s (status quota %d): %w", mode, quota, err)
	}
	cl.mode = mode
	return quota, nil
}

// reset ends a run's state and applies mode: quotas off (no dynamic sets
// hold counts of flushed entries), the greedy's late second answers
// drained, both conntrack tables flushed, then mode with fresh sets.
func (cl *connLab) reset(ctx context.Context, mode string) (int, error) {
	if _, err := cl.apply(ctx, connModeOff); err != nil {
		return 0, err
	}
	netlab.WaitFor(ctx, connDrain+time.Second, func() bool { return cl.echo.Pending() == 0 })
	for _, ns := range []*netlab.NS{cl.lab.Exit, cl.lab.Internet} {
		if err := flushConntrack(ns); err != nil {
			return 0, err
		}
	}
	return cl.apply(ctx, mode)
}

// flushConntrack empties ns's connection tracking table.
func flushConntrack(ns *netlab.NS) error {
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", ns.Name, err)
	}
	defer h.Close()
	if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush conntrack in %s: %w", ns.Name, err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Light members.

// lightLoad is the light members' connects: each member dials the server
// rate times a second, open loop.
type lightLoad struct {
	start  time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup // routineLight, and every dial

	mu       sync.Mutex // guards attempts
	attempts []connAttempt
}

func startLight(ctx context.Context, members []*harness.Member, dst netip.AddrPort, rate float64, timeout time.Duration) *lightLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &lightLoad{start: time.Now(), cancel: cancel}
	period := time.Duration(float64(time.Second) / rate)
	for i, m := range members {
		// Members start spread over one period, not in step.
		offset := period * time.Duration(i) / time.Duration(len(members))
		l.wg.Go(func() { l.routineLight(ctx, m.NS, dst, period, offset, timeout) })
	}
	return l
}

// routineLight starts one dial per period until ctx ends.
func (l *lightLoad) routineLight(ctx context.Context, ns *netlab.NS, dst netip.AddrPort, period, offset, timeout time.Duration) {
	if sleepCtx(ctx, offset); ctx.Err() != nil {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		at := time.Since(l.start)
		l.wg.Go(func() {
			d, err := dialTimed(ns, dst, timeout)
			a := connAttempt{At: at, Dur: d}
			if err != nil {
				a.Err = dialErrKind(err)
			}
			l.mu.Lock()
			l.attempts = append(l.attempts, a)
			l.mu.Unlock()
		})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stop ends the load, waits for the dials in flight and returns every
// attempt.
func (l *lightLoad) stop() []connAttempt {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.attempts)
}

// dialTimed opens a TCP connection from ns to dst, returns how long the
// handshake took and closes it. The socket is made in the namespace and
// connected through the runtime's poller, so a slow connect holds no
// thread.
func dialTimed(ns *netlab.NS, dst netip.AddrPort, timeout time.Duration) (time.Duration, error) {
	var fd int
	if err := ns.Run(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		return 0, err
	}
	f := os.NewFile(uintptr(fd), "tcp") // owns fd; non-blocking, so pollable
	defer f.Close()
	start := time.Now()
	err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return 0, err
	}
	if err == nil {
		return time.Since(start), nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	f.SetWriteDeadline(start.Add(timeout))
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case v != 0:
			cerr = syscall.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false // still connecting (a wake-up before the handshake ended)
			}
		}
		return true
	})
	d := time.Since(start)
	if werr != nil {
		return d, werr
	}
	return d, cerr
}

// dialErrKind names a failed connect for the report.
func dialErrKind(err error) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, unix.ECONNREFUSED):
		return "refused"
	case errors.Is(err, unix.ECONNRESET):
		return "reset"
	case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH):
		return "unreachable"
	}
	return err.Error()
}

// ---------------------------------------------------------------------------
// The greedy member.

// greedyFlood sends the greedy's new flows at the pace the sampler sets.
type greedyFlood struct {
	s         *harness.FlowSender
	pace      atomic.Uint64 // flows/s
	sent      atomic.Uint64
	exhausted atomic.Bool
	err       error // after done
	done      chan struct{}
}

// startGreedy starts routineGreedy with a fresh sender; it stops when ctx
// ends or after d, whichever is first.
func startGreedy(ctx context.Context, ns *netlab.NS, dst netip.Addr, sockets, pace int, d time.Duration) (*greedyFlood, error) {
	s, err := harness.NewFlowSender(ns, dst, sockets)
	if err != nil {
		return nil, err
	}
	g := &greedyFlood{s: s, done: make(chan struct{})}
	g.pace.Store(uint64(pace))
	go g.routineGreedy(ctx, d)
	return g, nil
}

func (g *greedyFlood) routineGreedy(ctx context.Context, d time.Duration) {
	defer close(g.done)
	defer g.s.Close()
	const batch = 64
	start := time.Now()
	end := start.Add(d) // a bound of its own: the flood stops even if nothing cancels it
	p := newPacer(float64(g.pace.Load()), batch, start)
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		p.rate = float64(g.pace.Load())
		p.burst = max(2*batch, p.rate/50) // 20 ms: catch up after a late wake-up
		n, wait := p.take(now, batch)
		if n == 0 {
			time.Sleep(min(wait, end.Sub(now)))
			continue
		}
		k, err := g.s.Send(n)
		g.sent.Add(uint64(k))
		if errors.Is(err, harness.ErrFlowsExhausted) {
			g.exhausted.Store(true)
			return
		}
		if err != nil {
			g.err = err
			return
		}
		if k < n {
			time.Sleep(time.Millisecond) // the member's queue is full
		}
	}
}

// stop ends the flood and waits for it.
func (g *greedyFlood) stop(cancel context.CancelFunc) error {
	cancel()
	<-g.done
	return g.err
}

// nextPace is the sampler's AIMD step: slower when more than connLossDown
// of the last second's flows were lost (neither answered nor dropped by
// exitd's rules), faster when under connLossUp and the sender kept up;
// unchanged while the table is full (losses are then the point).
func nextPace(pace, sentPerSec, lost float64, full bool, lo, hi float64) float64 {
	switch {
	case full:
		return pace
	case lost > connLossDown:
		return max(lo, pace*0.8)
	case lost < connLossUp && sentPerSec >= 0.9*pace:
		return min(hi, pace+max(500, pace/10))
	}
	return pace
}

// lostFrac is the fraction of sent flows neither answered nor dropped.
func lostFrac(sent, answered, dropped uint64) float64 {
	if sent == 0 {
		return 0
	}
	return max(0, 1-float64(answered+dropped)/float64(sent))
}

// ---------------------------------------------------------------------------
// Runs.

// run measures one mode: reset, idle, flood.
func (cl *connLab) run(ctx context.Context, rep int, mode string) (connRun, error) {
	run := connRun{Rep: rep, Mode: mode, CTMax: cl.ctMax, FullAfter: -1}
	var err error
	if run.Quota, err = cl.reset(ctx, mode); err != nil {
		return run, err
	}
	run.LoadAvg = dnsbLoadAvg()
	cl.log("rep %d quotas %s (quota %d): idle %d s", rep, mode, run.Quota, cl.o.idle)
	l := startLight(ctx, cl.light, cl.server, cl.o.lightRate, cl.o.connectTimeout)
	sleepCtx(ctx, time.Duration(cl.o.idle)*time.Second)
	run.Idle = summarizeAttempts(l.stop(), cl.o.connectTimeout)
	if err := ctx.Err(); err != nil {
		return run, err
	}
	if err := cl.flood(ctx, &run); err != nil {
		return run, err
	}
	return run, nil
}

// flood runs the flood phase into run.
func (cl *connLab) flood(ctx context.Context, run *connRun) error {
	o := cl.o
	limit := time.Duration(o.maxFlood) * time.Second
	if run.Mode != connModeOff {
		limit = time.Duration(o.onSecs) * time.Second
	}
	sink0, err := cl.sink.Counts(ctx)
	if err != nil {
		return err
	}
	echo0 := cl.echo.Counts()
	pid := cl.node.Proc.Pid()
	cpu0, _ := harness.CPUSeconds(pid)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := startLight(fctx, cl.light, cl.server, o.lightRate, o.connectTimeout)
	g, err := startGreedy(fctx, cl.greedy.NS, cl.server.Addr(), o.sockets, o.floodStart, limit+5*time.Second)
	if err != nil {
		l.stop()
		return err
	}
	cl.log("quotas %s: flood (at most %v)", run.Mode, limit)
	start := time.Now()
	tick := time.NewTicker(connTick)
	defer tick.Stop()
	var prev connSample
	prevCPU := cpu0
	full := time.Duration(-1)
	run.StopReason = "time limit"
	for done := false; !done; {
		select {
		case <-ctx.Done():
			g.stop(cancel)
			l.stop()
			return ctx.Err()
		case <-g.done:
			done = true
			if g.exhausted.Load() {
				run.StopReason = "greedy used every flow"
			} else {
				run.StopReason = "greedy stopped"
			}
		case <-tick.C:
		}
		el := time.Since(start)
		fill, _ := readNetInt(cl.lab.Exit, "netfilter/nf_conntrack_count")
		sc, err := cl.sink.Counts(ctx)
		if err != nil {
			g.stop(cancel)
			l.stop()
			return err
		}
		s := connSample{T: el.Seconds(), Fill: fill, Pace: float64(g.pace.Load()), Sent: g.sent.Load(),
			Passed: sc.Out - sink0.Out, Dropped: sc.Dropped() - sink0.Dropped(), Answered: cl.echo.Counts().Received - echo0.Received}
		s.Lost = lostFrac(s.Sent-prev.Sent, s.Answered-prev.Answered, s.Dropped-prev.Dropped)
		if c, err := harness.CPUSeconds(pid); err == nil {
			if dt := s.T - prev.T; dt > 0 {
				s.Exitd = (c - prevCPU) / dt
			}
			prevCPU = c
		}
		isFull := float64(fill) >= connFullFrac*float64(cl.ctMax)
		if isFull && full < 0 {
			full = el
			run.FullAfter = el.Seconds()
			cl.log("quotas %s: table full (%d of %d) after %.0f s", run.Mode, fill, cl.ctMax, el.Seconds())
		}
		dt := s.T - prev.T
		if dt > 0 {
			g.pace.Store(uint64(nextPace(s.Pace, float64(s.Sent-prev.Sent)/dt, s.Lost, isFull, connMinRate, float64(o.floodMax))))
		}
		run.Samples = append(run.Samples, s)
		run.PeakFill = max(run.PeakFill, fill)
		prev = s
		if int(el.Seconds())%10 == 0 && !done {
			cl.log("quotas %s: t=%2.0fs conntrack %6d/%d pace %5.0f/s sent %d passed %d dropped %d answered %d, exitd %.0f%% CPU",
				run.Mode, el.Seconds(), fill, cl.ctMax, s.Pace, s.Sent, s.Passed, s.Dropped, s.Answered, 100*s.Exitd)
		}
		switch {
		case el >= limit:
			done = true
		case run.Mode == connModeOff && full >= 0 && el-full >= time.Duration(o.hold)*time.Second:
			done, run.StopReason = true, "table full + hold"
		}
	}
	gerr := g.stop(cancel)
	run.FloodSecs = time.Since(start).Seconds()
	cpu1, _ := harness.CPUSeconds(pid)
	attempts := l.stop()
	if gerr != nil {
		return gerr
	}
	run.Flood = summarizeAttempts(attempts, o.connectTimeout)
	if full >= 0 {
		at := summarizeAttempts(attemptsFrom(attempts, full), o.connectTimeout)
		run.AtFull = &at
		var before []connAttempt
		for _, a := range attempts {
			if a.At < full {
				before = append(before, a)
			}
		}
		bf := summarizeAttempts(before, o.connectTimeout)
		run.BeforeFull = &bf
	}
	run.Windows = floodWindows(attempts, run.Samples, time.Duration(run.FloodSecs*float64(time.Second)),
		connWindowSecs*time.Second, o.connectTimeout)
	// The last flows' answers and drops: exitd may be behind.
	cl.waitDrained(ctx)
	sleepCtx(ctx, 300*time.Millisecond)
	sc, err := cl.sink.Counts(ctx)
	if err != nil {
		return err
	}
	run.Sent = g.sent.Load()
	run.Passed, run.Dropped = sc.Out-sink0.Out, sc.Dropped()-sink0.Dropped()
	ec := cl.echo.Counts()
	run.Answered, run.EchoErrors = ec.Received-echo0.Received, ec.Errors-echo0.Errors
	if run.FloodSecs > 0 {
		run.SentRate = float64(run.Sent) / run.FloodSecs
		run.PassRate = float64(run.Passed) / run.FloodSecs
		run.ExitdCPU = (cpu1 - cpu0) / run.FloodSecs
	}
	if run.Sent > 0 {
		run.ExitdUsPer = (cpu1 - cpu0) / float64(run.Sent) * 1e6
	}
	run.ExitdEnd = lastSecondsMean(run.Samples, 10)
	return cl.memberView(ctx, run)
}

// lastSecondsMean is the mean exitd CPU of the samples in the last secs
// seconds of a flood.
func lastSecondsMean(ss []connSample, secs float64) float64 {
	if len(ss) == 0 {
		return 0
	}
	from := ss[len(ss)-1].T - secs
	var sum float64
	n := 0
	for _, s := range ss {
		if s.T > from {
			sum += s.Exitd
			n++
		}
	}
	return sum / float64(n)
}

// memberView fills the greedy's tracked connections and drops from
// exitd's own view (status and top; tracked counts are a walk of the
// table at most 5 s old, and nothing asked during the flood).
func (cl *connLab) memberView(ctx context.Context, run *connRun) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := cl.client.Status(sctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if st.Conntrack != nil {
		for _, m := range st.Conntrack.AtLimit {
			if m.Label == cl.greedy.Label {
				run.QuotaDrops, run.RateDrops = m.QuotaDrops, m.RateDrops
			} else {
				run.LightLimit++
			}
		}
	}
	top, err := cl.client.Top(sctx, control.MaxTop, control.SortRate)
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	for _, m := range top.Members {
		if m.Label == cl.greedy.Label {
			run.Tracked = m.Conns
		}
	}
	n, err := countFrom(cl.lab.Exit, cl.greedyAddr)
	if err != nil {
		return err
	}
	run.InTable = n
	return nil
}

// countFrom counts the entries of ns's conntrack table whose original
// source is src (a dump of the whole table).
func countFrom(ns *netlab.NS, src netip.Addr) (int, error) {
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		return 0, fmt.Errorf("netlink in %s: %w", ns.Name, err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		return 0, fmt.Errorf("conntrack dump in %s: %w", ns.Name, err)
	}
	n := 0
	for _, f := range flows {
		if a, ok := netip.AddrFromSlice(f.Forward.SrcIP); ok && a.Unmap() == src {
			n++
		}
	}
	return n, nil
}

// cost runs the CPU-cost runs: the greedy alone at a fixed pace, quotas
// off and on-but-not-binding, alternating.
func (cl *connLab) cost(ctx context.Context) (*connCost, error) {
	o := cl.o
	c := &connCost{GrowSecs: o.costSecs}
	for rep := 1; rep <= o.costReps; rep++ {
		order := []string{connModeOff, connModeRules}
		if rep%2 == 0 {
			order = []string{connModeRules, connModeOff}
		}
		for _, mode := range order {
			run, err := cl.costRun(ctx, mode)
			if err != nil {
				return c, err
			}
			c.Runs = append(c.Runs, run)
			cl.log("cost quotas %-5s %d flows/s %.0f s: %d passed, exitd %.1f µs/flow (system %.1f), greedy %d tracked",
				mode, run.Rate, run.Seconds, run.Passed, run.UsPer, run.SysUsPer, run.Tracked)
		}
	}
	c.SetElems = 1 + o.light // at most one element per member with tracked connections
	c.summarise(cl.autoQuota)
	return c, nil
}

// summarise fills the medians and the fits; at is the tracked count the
// fits are read at (the auto quota).
func (c *connCost) summarise(at int) {
	var off, rules, offSys, rulesSys, offHold, rulesHold, from []float64
	var offX, offY, rulesX, rulesY []float64
	for _, r := range c.Runs {
		c.HoldRate = r.HoldRate
		from = append(from, float64(r.HoldFrom))
		switch r.Mode {
		case connModeOff:
			offHold = append(offHold, r.HoldCores)
			off, offSys = append(off, r.UsPer), append(offSys, r.SysUsPer)
			for _, p := range r.Points {
				offX, offY = append(offX, p.Tracked), append(offY, p.UsPer)
			}
		case connModeRules:
			rulesHold = append(rulesHold, r.HoldCores)
			rules, rulesSys = append(rules, r.UsPer), append(rulesSys, r.SysUsPer)
			c.ListLen = max(c.ListLen, r.Tracked)
			for _, p := range r.Points {
				rulesX, rulesY = append(rulesX, p.Tracked), append(rulesY, p.UsPer)
			}
		}
	}
	c.OffUs, c.RulesUs = median(off), median(rules)
	c.OffSysUs, c.RulesSys = median(offSys), median(rulesSys)
	c.DeltaUs = c.RulesUs - c.OffUs
	c.OffHoldCores, c.RulesHoldCore, c.HoldFrom = median(offHold), median(rulesHold), int(median(from))
	c.AtTracked = at
	if a, b, ok := fitLine(offX, offY); ok {
		c.OffSlope, c.OffAt = b*1000, a+b*float64(at)
	}
	if a, b, ok := fitLine(rulesX, rulesY); ok {
		c.RulesSlope, c.RulesAt = b*1000, a+b*float64(at)
	}
}

// fitLine is the least-squares line y = a + b·x through the points; ok is
// false with fewer than two distinct x.
func fitLine(xs, ys []float64) (a, b float64, ok bool) {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0, 0, false
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy = sx+xs[i], sy+ys[i]
		sxx, sxy = sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if math.Abs(d) < 1e-9*max(1, sxx*n) {
		return 0, 0, false
	}
	b = (n*sxy - sx*sy) / d
	return (sy - b*sx) / n, b, true
}

// costRun measures exitd's CPU in one mode: while the greedy member opens
// --cost-rate flows/s for --cost-seconds ("grow": µs per flow as its
// connections pile up), then while it goes on at the default rate limit,
// 500/s, with that many tracked ("hold": what a member near its quota
// that keeps opening connections costs).
func (cl *connLab) costRun(ctx context.Context, mode string) (connCostRun, error) {
	o := cl.o
	run := connCostRun{Mode: mode, Rate: o.costRate, HoldRate: config.DefaultNewConnRate}
	if _, err := cl.reset(ctx, mode); err != nil {
		return run, err
	}
	run.LoadAvg = dnsbLoadAvg()
	pid := cl.node.Proc.Pid()
	// exitd's own background CPU, subtracted below.
	const baseWin = 2 * time.Second
	bu0, bs0, _ := cpuSplit(pid)
	sleepCtx(ctx, baseWin)
	bu1, bs1, _ := cpuSplit(pid)
	baseU, baseS := (bu1-bu0)/baseWin.Seconds(), (bs1-bs0)/baseWin.Seconds()

	sink0, err := cl.sink.Counts(ctx)
	if err != nil {
		return run, err
	}
	u0, s0, _ := cpuSplit(pid)
	start := time.Now()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	grow := time.Duration(o.costSecs) * time.Second
	g, err := startGreedy(fctx, cl.greedy.NS, cl.server.Addr(), o.sockets, o.costRate, grow+connHoldSettle+connHold+time.Second)
	if err != nil {
		return run, err
	}
	stopped := false
	defer func() {
		if !stopped {
			g.stop(cancel)
		}
	}()
	tick := time.NewTicker(connTick)
	defer tick.Stop()
	pt, pu, ps, pp := start, u0, s0, uint64(0) // the previous second
	for time.Since(start) < grow {
		select {
		case <-ctx.Done():
			return run, ctx.Err()
		case <-g.done:
			return run, fmt.Errorf("the greedy member stopped early: %v", g.err)
		case <-tick.C:
		}
		now := time.Now()
		u, s, _ := cpuSplit(pid)
		sc, err := cl.sink.Counts(ctx)
		if err != nil {
			return run, err
		}
		passed := sc.Out - sink0.Out
		if dt := now.Sub(pt).Seconds(); passed > pp && dt > 0.5 {
			cpu := max(0, u-pu+s-ps-(baseU+baseS)*dt)
			run.Points = append(run.Points, connCostPoint{Tracked: float64(pp+passed) / 2,
				UsPer: cpu / float64(passed-pp) * 1e6})
		}
		pt, pu, ps, pp = now, u, s, passed
	}
	// Hold: exitd may be seconds behind the grow stage; that backlog
	// drains first, then the CPU is measured at the rate limit.
	g.pace.Store(uint64(run.HoldRate))
	if err := cl.waitPassRate(ctx, float64(run.HoldRate)*1.2, connHoldSettle); err != nil {
		return run, err
	}
	hu0, hs0, _ := cpuSplit(pid)
	h0 := time.Now()
	hc0, err := cl.sink.Counts(ctx)
	if err != nil {
		return run, err
	}
	run.HoldFrom, _ = readNetInt(cl.lab.Exit, "netfilter/nf_conntrack_count")
	sleepCtx(ctx, connHold)
	hu1, hs1, _ := cpuSplit(pid)
	hc1, err := cl.sink.Counts(ctx)
	if err != nil {
		return run, err
	}
	hold := time.Since(h0).Seconds()
	run.HoldCores = max(0, hu1-hu0+hs1-hs0-(baseU+baseS)*hold) / hold
	run.HoldPassed = float64(hc1.Out-hc0.Out) / hold
	stopped = true
	if err := g.stop(cancel); err != nil {
		return run, err
	}
	cl.waitDrained(ctx)
	u1, s1, _ := cpuSplit(pid)
	run.Seconds = time.Since(start).Seconds()
	sc, err := cl.sink.Counts(ctx)
	if err != nil {
		return run, err
	}
	run.Sent, run.Passed = g.sent.Load(), sc.Out-sink0.Out
	run.Fill, _ = readNetInt(cl.lab.Exit, "netfilter/nf_conntrack_count")
	run.UserS = max(0, u1-u0-baseU*run.Seconds)
	run.SysS = max(0, s1-s0-baseS*run.Seconds)
	if run.Passed > 0 {
		run.UsPer = (run.UserS + run.SysS) / float64(run.Passed) * 1e6
		run.SysUsPer = run.SysS / float64(run.Passed) * 1e6
	}
	var view connRun
	if err := cl.memberView(ctx, &view); err != nil {
		return run, err
	}
	run.Tracked, run.InTable = view.Tracked, view.InTable
	return run, ctx.Err()
}

// waitPassRate waits (at most 10 s) until the greedy's flows pass exitd's
// forward chain at no more than rate per second, over windows of half of
// settle (and at least settle in all).
func (cl *connLab) waitPassRate(ctx context.Context, rate float64, settle time.Duration) error {
	win := settle / 2
	start := time.Now()
	prev, err := cl.sink.Counts(ctx)
	if err != nil {
		return err
	}
	for time.Since(start) < 10*time.Second {
		sleepCtx(ctx, win)
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := cl.sink.Counts(ctx)
		if err != nil {
			return err
		}
		if float64(c.Out-prev.Out)/win.Seconds() <= rate && time.Since(start) >= settle {
			return nil
		}
		prev = c
	}
	return nil // still behind: measured anyway, HoldPassed shows it
}

// waitDrained waits (at most 5 s) until the greedy's flows stop arriving
// at the exit's forward hook: exitd may be seconds behind a flood.
func (cl *connLab) waitDrained(ctx context.Context) {
	var last uint64
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := cl.sink.Counts(ctx)
		if err != nil || c.In == last {
			return
		}
		last = c.In
		sleepCtx(ctx, 300*time.Millisecond)
	}
}

// cpuSplit returns pid's user and system CPU seconds.
func cpuSplit(pid int) (user, system float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseCPUSplit(string(b))
}

// parseCPUSplit reads utime and stime (fields 14 and 15) of a
// /proc/PID/stat line, in seconds.
func parseCPUSplit(s string) (user, system float64, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no command name")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("stat: %w", err)
	}
	return float64(ut) / sbClockTick, float64(st) / sbClockTick, nil
}

// ---------------------------------------------------------------------------
// Output.

func printConnReport(w io.Writer, r *connReport) {
	fmt.Fprintf(w, "\nConntrack fair state: 1 greedy member vs %d light (%g TCP connects/s each, %.0f ms timeout); conntrack max %d, auto quota %d; %d rep(s)\n",
		r.Light, r.LightRate, r.TimeoutMs, r.CTMax, r.AutoQuota, r.Reps)
	fmt.Fprintf(w, "%s; load %s → %s\n\n", r.Machine, r.LoadStart, r.LoadEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "light members\tidle ok\tidle p50\tidle p99\tflood ok\tflood p50\tflood p99\tp99/idle\tok while full\tp99 before full\t")
	for _, row := range r.Rows {
		full, before := "never full", "-"
		if row.FullSuccess >= 0 {
			full = fmt.Sprintf("%.2f%%", row.FullSuccess)
		}
		if row.BeforeP99 >= 0 {
			before = fmt.Sprintf("%.1f ms", row.BeforeP99)
		}
		p99 := fmt.Sprintf("%.1f ms", row.P99)
		if row.P99Failed {
			p99 = "timeout"
		}
		fmt.Fprintf(tw, "quotas %s\t%.2f%%\t%.1f ms\t%.1f ms\t%.2f%%\t%.1f ms\t%s\t%.1f×\t%s\t%s\t\n", row.Mode,
			row.IdleSuccess, row.IdleP50, row.IdleP99, row.Success, row.P50, p99, row.P99Ratio, full, before)
	}
	tw.Flush()
	for _, run := range r.Runs {
		var parts []string
		for _, win := range run.Windows {
			p99 := fmt.Sprintf("%.0f", win.P99Ms)
			if win.Failed {
				p99 = "timeout"
			}
			parts = append(parts, fmt.Sprintf("%.0f-%.0f s: %s ms, %.1f%% ok, exitd %.0f%%, %dk passed",
				win.From, win.To, p99, win.Success, 100*win.Exitd, win.Passed/1000))
		}
		fmt.Fprintf(w, "  rep %d quotas %s, light p99 by %d s: %s\n", run.Rep, run.Mode, connWindowSecs, strings.Join(parts, " | "))
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "greedy member\tflood s\tsent/s\tpassed/s\ttracked (top/table)\tquota drops\trate drops\tpeak fill\texitd CPU\tlast 10 s\texitd µs/sent flow\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "quotas %s\t%.0f\t%.0f\t%.0f\t%.0f / %.0f\t%.0f\t%.0f\t%.0f (%.0f%%)\t%.0f%%\t%.0f%%\t%.1f\t\n", row.Mode,
			row.FloodSecs, row.SentRate, row.PassRate, row.Tracked, row.InTable, row.QuotaDrops, row.RateDrops,
			row.PeakFill, 100*row.PeakFill/float64(max(r.CTMax, 1)), 100*row.ExitdCPU, 100*row.ExitdEnd, row.ExitdUsPer)
	}
	tw.Flush()
	if c := r.Cost; c != nil && len(c.Runs) > 0 {
		fmt.Fprintf(w, "\nCPU of the rules: the greedy member alone, %d new flows/s for %d s, then %d/s; %d run(s) per mode; exitd CPU (user + system, net of idle)\n",
			c.Runs[0].Rate, c.GrowSecs, c.HoldRate, len(c.Runs)/2)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		hold := fmt.Sprintf("exitd CPU at %d/s, ~%dk tracked", c.HoldRate, (c.HoldFrom+500)/1000)
		fmt.Fprintln(tw, "mode\tµs/flow\tsystem µs/flow\t+µs/flow per 1k tracked\tµs/flow at "+strconv.Itoa(c.AtTracked)+" tracked\t"+hold+"\t")
		fmt.Fprintf(tw, "quotas off\t%.1f\t%.1f\t%+.2f\t%.1f\t%.0f%%\t\n", c.OffUs, c.OffSysUs, c.OffSlope, c.OffAt, 100*c.OffHoldCores)
		fmt.Fprintf(tw, "quotas on, not binding\t%.1f\t%.1f\t%+.2f\t%.1f\t%.0f%%\t\n", c.RulesUs, c.RulesSys, c.RulesSlope, c.RulesAt, 100*c.RulesHoldCore)
		tw.Flush()
		fmt.Fprintf(w, "the greedy's connlimit list reached %d entries; the quota set held at most %d elements (one per member with tracked connections)\n",
			c.ListLen, c.SetElems)
	}
	v := r.Verdict
	if v == nil {
		return
	}
	verdict := "FAIL"
	if v.Pass {
		verdict = "PASS"
	}
	fmt.Fprintln(w)
	if v.Judged {
		fmt.Fprintf(w, "target (quotas on): light success >= 99.9%% (%.2f%%: %s), flood p99 <= 2× idle (%.1f×: %s): %s\n",
			v.SuccessPct, okWord(v.SuccessOK), v.P99Ratio, okWord(v.P99OK), verdict)
	}
	if v.OffFilled {
		fmt.Fprintf(w, "quotas off: the greedy member filled the table; light success %.2f%%\n", v.OffSuccess)
	}
	for _, n := range v.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

func okWord(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}
