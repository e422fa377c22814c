package main

// members-bench: the scale benchmark of docs/members.md.
//
//	keys ──▶ POST /v1/members:batch (1,000 a time) ──▶ exitd      "add"
//	exitctl member list (JSON and table)                          "list"
//	harness.Fleet ──UDP/443 from one source address each──▶ exitd
//	ICMP echo to the internet host every --ping; replies counted  "connect"
//	SIGTERM + start exitd; wait until every simulated member has a
//	fresh handshake and a ping answered                           "storm"
//
// exitd's RSS is read from /proc at each stage. The simulated members are
// harness.Fleet (internal/harness/fleet.go).

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/keys"
)

type membersOpts struct {
	members    int
	handshaken int
	ping       time.Duration
	timeout    time.Duration
	out        string
	noRestart  bool
	memLimit   string // GOMEMLIMIT for exitd only
	idle       time.Duration
	bulkRate   uint64 // bits/s of the shaped member link; 0: no bulk member
	bulkSecs   int
	perf       string // directory for perf profiles of the idle window and the storm
	upstream   bool   // also measure upstream wireguard-go with the same simulated members
}

func newMembersBenchCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	o := membersOpts{}
	cmd := &cobra.Command{
		Use:   "members-bench",
		Short: "Members at scale: add and list 20,000, exitd RSS with thousands handshaken, reconnect storm",
		Long: `Measures exitd with many members (docs/members.md, "Scale"):

  add      --members keys added through the batch API, 1,000 per request
  list     exitctl member list, JSON and table, with live figures
  rss      exitd's RSS empty, with the members configured, and with
           --handshaken of them connected and pinging the internet host
  connect  time until the simulated members have all handshaken
  idle     exitd's CPU over --idle with the simulated members handshaken,
           keepalive 25 s, pinging every --ping (100 % = one CPU)
  bulk     with --bulk-rate > 0 the exit's member-facing link is shaped to
           that rate (TBF) and exitd paces at 95 % of it; a real member
           (wireguard-go in member 2's namespace) downloads one TCP flow
           alone before the members are added, and again with all of them
           handshaken: the ratio is what the crowd costs it
  storm    exitd restarted (SIGTERM, start): time until every simulated
           member has a new handshake and an answered ping

Simulated members are wireguard-go devices in this process (~250 KiB each,
batch size 1), each sending from its own address in member 1's namespace
(per-IP handshake limits). Targets: add 20,000 ≤ 5 s, list ≤ 1 s, RSS with
20,000 handshaken ≤ 1 GB, idle CPU ≤ 10 %, the bulk member ≥ 95 % of its
rate alone, storm of 20,000 ≤ 60 s. Writes members.json to --out and prints a table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.handshaken > o.members || o.handshaken > netlab.MaxExtraAddrs {
				return fmt.Errorf("--handshaken must be at most --members and %d", netlab.MaxExtraAddrs)
			}
			r, err := membersBench(cmd.Context(), b.binaries(), o, cmd.ErrOrStderr())
			if r != nil {
				printMembersReport(stdout, r)
				if o.out != "" {
					if werr := writeReport(o.out, "members.json", r); werr != nil {
						err = errors.Join(err, werr)
					}
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.members, "members", 20000, "members to add")
	f.IntVar(&o.handshaken, "handshaken", 2000, "of those, simulated members that connect and ping")
	f.DurationVar(&o.ping, "ping", 10*time.Second, "each simulated member pings the internet host this often")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up waiting for connects after this long")
	f.StringVar(&o.out, "out", "bench-results", "directory for members.json (empty: none)")
	f.BoolVar(&o.noRestart, "no-restart", false, "skip the reconnect storm")
	f.StringVar(&o.memLimit, "exitd-gomemlimit", "", "run exitd with this GOMEMLIMIT (e.g. 900MiB); the simulator keeps its own")
	f.DurationVar(&o.idle, "idle", 30*time.Second, "window for exitd's CPU with the members handshaken (0: skip)")
	f.Uint64Var(&o.bulkRate, "bulk-rate", 100_000_000, "member link rate in bit/s for the bulk member's download (0: skip the bulk member)")
	f.IntVar(&o.bulkSecs, "bulk-seconds", 10, "seconds of each bulk download (first 2 s omitted)")
	f.BoolVar(&o.upstream, "upstream-baseline", false, "then run upstream wireguard-go (built at the pinned version) as a plain exit with the same --handshaken simulated members: add, connect, RSS and idle CPU side by side")
	f.StringVar(&o.perf, "perf", "", "directory for `perf record -g` profiles of exitd and this process (the simulated members) in the idle window and the storm")
	return cmd
}

// membersReport is members.json.
type membersReport struct {
	Members       int    `json:"members"`
	Handshaken    int    `json:"handshaken"`
	ExitdMemLimit string `json:"exitd_gomemlimit,omitempty"`

	AddSeconds       float64 `json:"add_seconds"`
	ListAPISeconds   float64 `json:"list_api_seconds"`
	ListJSONSeconds  float64 `json:"list_exitctl_json_seconds"`
	ListTableSeconds float64 `json:"list_exitctl_table_seconds"`

	RSSEmptyMiB      float64 `json:"rss_empty_mib"`
	RSSConfiguredMiB float64 `json:"rss_configured_mib"`
	RSSConnectedMiB  float64 `json:"rss_connected_mib"`
	PerMemberKiB     float64 `json:"per_configured_member_kib"`
	PerConnectedKiB  float64 `json:"per_connected_member_kib"`
	// RSS20kMiB extrapolates: configured RSS + members × per-connected cost.
	RSS20kMiB float64 `json:"rss_all_connected_estimate_mib"`

	ConnectSeconds float64 `json:"connect_seconds"`
	Connected      int     `json:"connected"`
	PingsAnswered  int     `json:"members_with_ping_answered"`

	StormSeconds      float64 `json:"storm_seconds,omitempty"`
	StormAfterReady   float64 `json:"storm_after_ready_seconds,omitempty"`
	StormReconnected  int     `json:"storm_reconnected,omitempty"`
	StormPingAnswered int     `json:"storm_ping_answered,omitempty"`
	// CPU-seconds spent in the storm (from the restart until every member
	// reconnected) by the new exitd and by this process's simulated
	// members, which share the machine's CPUs.
	StormExitdCPU float64 `json:"storm_exitd_cpu_seconds,omitempty"`
	StormSimCPU   float64 `json:"storm_simulator_cpu_seconds,omitempty"`

	// Upstream is the baseline (--upstream-baseline): upstream wireguard-go
	// as a plain exit with the same simulated members.
	Upstream *upstreamFigures `json:"upstream,omitempty"`

	// Profile holds the top of each perf profile (--perf).
	Profile map[string][]string `json:"profile,omitempty"`

	SimRSSMiB float64 `json:"simulator_rss_mib"`

	// IdleCPUPercent is exitd's CPU over IdleSeconds with the members
	// handshaken and pinging (100 = one CPU).
	IdleCPUPercent float64 `json:"idle_cpu_percent,omitempty"`
	IdleSeconds    float64 `json:"idle_seconds,omitempty"`
	// Bulk member: one TCP flow down on a BulkRateMbps link, alone and with
	// the simulated members handshaken.
	BulkRateMbps  float64 `json:"bulk_link_mbps,omitempty"`
	BulkAloneMbps float64 `json:"bulk_alone_mbps,omitempty"`
	BulkCrowdMbps float64 `json:"bulk_crowd_mbps,omitempty"`
	BulkRatio     float64 `json:"bulk_ratio,omitempty"`

	// Go runtime figures of exitd from its metrics endpoint at each stage
	// ("configured", "connected"), when it serves them.
	Runtime map[string]goRuntime `json:"exitd_runtime,omitempty"`
}

// goRuntime is what exitd's Go collector reports.
type goRuntime struct {
	HeapAllocMiB  float64 `json:"heap_alloc_mib"`
	HeapInuseMiB  float64 `json:"heap_inuse_mib"`
	StackInuseMiB float64 `json:"stack_inuse_mib"`
	Goroutines    float64 `json:"goroutines"`
}

// scrapeRuntime reads exitd's Go runtime metrics from inside the exit
// namespace; ok is false when there is no metrics endpoint.
func scrapeRuntime(ctx context.Context, lab *netlab.Lab) (goRuntime, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9586/metrics", nil)
	if err != nil {
		return goRuntime{}, false
	}
	resp, err := lab.Exit.HTTPClient().Do(req)
	if err != nil {
		return goRuntime{}, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return goRuntime{}, false
	}
	var g goRuntime
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_memstats_heap_alloc_bytes":
			g.HeapAllocMiB = v / (1 << 20)
		case "go_memstats_heap_inuse_bytes":
			g.HeapInuseMiB = v / (1 << 20)
		case "go_memstats_stack_inuse_bytes":
			g.StackInuseMiB = v / (1 << 20)
		case "go_goroutines":
			g.Goroutines = v
		}
	}
	return g, true
}

func membersBench(ctx context.Context, bins harness.Binaries, o membersOpts, log io.Writer) (*membersReport, error) {
	r := &membersReport{Members: o.members, Handshaken: o.handshaken, ExitdMemLimit: o.memLimit}
	step := func(format string, args ...any) { fmt.Fprintf(log, "members-bench: "+format+"\n", args...) }

	labOpts := netlab.Options{Members: 1, ExtraMemberAddrs: o.handshaken}
	if o.bulkRate > 0 {
		labOpts.Members, labOpts.DownRate = 2, o.bulkRate
	}
	step("lab: %d member namespaces, %d extra source addresses in the first, member link %s", labOpts.Members, o.handshaken, rateOrUnshaped(o.bulkRate))
	lab, err := netlab.New(ctx, labOpts)
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	dir, err := os.MkdirTemp("", "xmb")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	privs, err := membersExitd(ctx, lab, dir, bins, o, r, step)
	if err != nil || !o.upstream || o.handshaken == 0 {
		return r, err
	}
	step("baseline: upstream wireguard-go as a plain exit with the same %d members", o.handshaken)
	r.Upstream, err = upstreamBaseline(ctx, lab, dir, bins, o, privs[:o.handshaken], step)
	return r, err
}

// membersExitd measures exitd (everything but the baseline) and returns
// the members' private keys; exitd and the simulated members are stopped
// when it returns.
func membersExitd(ctx context.Context, lab *netlab.Lab, dir string, bins harness.Binaries, o membersOpts, r *membersReport, step func(string, ...any)) ([]keys.Key, error) {
	var privs []keys.Key
	nodeOpts := harness.NodeOptions{Bin: bins, Dir: dir, IPv4: "10.96.0.0/12", IPv6: "fd00:96::/64"}
	if o.memLimit != "" {
		// exitd's only: this process keeps its own runtime settings.
		nodeOpts.Env = []string{"GOMEMLIMIT=" + o.memLimit}
	}
	if o.bulkRate > 0 {
		// As docs/scheduler.md says to choose it: 95 % of the link.
		nodeOpts.Extra = fmt.Sprintf("[scheduler]\negress_rate = \"%dkbit\"\n", o.bulkRate*95/100/1000)
	}
	node, err := harness.StartNode(ctx, lab, nodeOpts)
	if err != nil {
		return nil, err
	}
	defer func() { node.Proc.Stop() }() // the process of the moment: the storm restarts it
	r.RSSEmptyMiB = rssMiB(node.Proc.Pid())
	client := control.NewClient(node.Socket)

	var bulk *harness.Member
	if o.bulkRate > 0 {
		r.BulkRateMbps = float64(o.bulkRate) / 1e6
		if _, err := lab.Internet.StartIperfServer(ctx, 0); err != nil {
			return privs, err
		}
		if bulk, err = node.AddMember(ctx, lab.Members[1], "bulk"); err != nil {
			return privs, err
		}
		defer bulk.Down()
		step("bulk member alone: one flow down for %d s", o.bulkSecs)
		if r.BulkAloneMbps, err = bulkDownload(ctx, lab.Members[1], o.bulkSecs); err != nil {
			return privs, err
		}
	}

	step("generating %d key pairs", o.members)
	privs = genKeys(o.members)

	step("adding %d members, 1,000 per request", o.members)
	stop, err := o.startPerf("add", node.Proc.Pid())
	if err != nil {
		return privs, err
	}
	start := time.Now()
	added, err := addMembers(ctx, client, privs)
	r.AddSeconds = time.Since(start).Seconds()
	r.addProfile("add", stop())
	if err != nil {
		return privs, err
	}

	step("listing")
	start = time.Now()
	if ms, err := client.Members(ctx); err != nil || len(ms) != o.members+btoi(bulk != nil) {
		return privs, fmt.Errorf("list: %d members, %v", len(ms), err)
	}
	r.ListAPISeconds = time.Since(start).Seconds()
	if r.ListJSONSeconds, err = timeExitctl(ctx, node, "--json", "member", "list"); err != nil {
		return privs, err
	}
	if r.ListTableSeconds, err = timeExitctl(ctx, node, "member", "list"); err != nil {
		return privs, err
	}
	r.RSSConfiguredMiB = rssMiB(node.Proc.Pid())
	r.Runtime = map[string]goRuntime{}
	if g, ok := scrapeRuntime(ctx, lab); ok {
		r.Runtime["configured"] = g
	}
	r.PerMemberKiB = (r.RSSConfiguredMiB - r.RSSEmptyMiB) * 1024 / float64(max(o.members, 1))
	if o.handshaken == 0 {
		return privs, nil
	}

	step("starting %d simulated members", o.handshaken)
	nodeStatus, err := client.Status(ctx)
	if err != nil {
		return privs, err
	}
	nodeKey, err := keys.Parse(nodeStatus.PublicKey)
	if err != nil {
		return privs, err
	}
	fleet, err := harness.NewFleet(ctx, lab, [32]byte(nodeKey), netip.MustParseAddrPort(netlab.ExitUnderlay4+":443"))
	if err != nil {
		return privs, err
	}
	defer fleet.Close()
	start = time.Now()
	for i := range o.handshaken {
		if err := fleet.Add([32]byte(privs[i]), added[i].IPv4); err != nil {
			return privs, err
		}
	}
	fleet.StartPinging(o.ping)

	// The bulk member is connected too: wait for it as well, report the
	// simulated members.
	extra := btoi(bulk != nil)
	step("waiting for %d handshakes", o.handshaken)
	r.Connected, err = waitConnected(ctx, client, o.handshaken+extra, o.timeout, step)
	r.Connected -= extra
	r.ConnectSeconds = time.Since(start).Seconds()
	if err != nil {
		return privs, err
	}
	// One full ping round after everyone connected, then read the RSS.
	mark := time.Now()
	r.PingsAnswered = fleet.WaitPings(ctx, mark, o.ping*2+5*time.Second)
	r.RSSConnectedMiB = rssMiB(node.Proc.Pid())
	if g, ok := scrapeRuntime(ctx, lab); ok {
		r.Runtime["connected"] = g
	}
	r.PerConnectedKiB = (r.RSSConnectedMiB - r.RSSConfiguredMiB) * 1024 / float64(o.handshaken)
	r.RSS20kMiB = r.RSSConfiguredMiB + float64(o.members)*r.PerConnectedKiB/1024
	r.SimRSSMiB = rssMiB(os.Getpid())
	if o.idle > 0 {
		step("exitd's CPU over %v with %d handshaken", o.idle, o.handshaken)
		var top []string
		r.IdleCPUPercent, r.IdleSeconds, top, err = o.idleCPU(ctx, "idle", node.Proc.Pid(), os.Getpid())
		r.addProfile("idle", top)
		if err != nil {
			return privs, err
		}
	}
	if bulk != nil {
		step("bulk member with %d handshaken: one flow down for %d s", o.handshaken, o.bulkSecs)
		if r.BulkCrowdMbps, err = bulkDownload(ctx, lab.Members[1], o.bulkSecs); err != nil {
			return privs, err
		}
		if r.BulkAloneMbps > 0 {
			r.BulkRatio = r.BulkCrowdMbps / r.BulkAloneMbps
		}
	}
	if o.noRestart {
		return privs, nil
	}

	step("restarting exitd: reconnect storm of %d members", o.handshaken)
	restart := time.Now()
	sim0, _ := harness.CPUSeconds(os.Getpid())
	if code, err := node.Terminate(30 * time.Second); err != nil || code != 0 {
		return privs, fmt.Errorf("stop exitd: exit %d, %v", code, err)
	}
	if err := node.Start(ctx); err != nil {
		return privs, err
	}
	ready := time.Now()
	stop, err = o.startPerf("storm", node.Proc.Pid(), os.Getpid())
	if err != nil {
		return privs, err
	}
	r.StormReconnected, err = waitConnected(ctx, client, o.handshaken+extra, o.timeout, step)
	r.StormReconnected -= extra
	r.StormSeconds = time.Since(restart).Seconds()
	r.StormAfterReady = time.Since(ready).Seconds()
	r.StormExitdCPU, _ = harness.CPUSeconds(node.Proc.Pid())
	sim1, _ := harness.CPUSeconds(os.Getpid())
	r.StormSimCPU = sim1 - sim0
	r.addProfile("storm", stop())
	if err != nil {
		return privs, err
	}
	r.StormPingAnswered = fleet.WaitPings(ctx, ready, o.ping*2+5*time.Second)
	return privs, nil
}

// upstreamFigures are the baseline's: members added in one `wg addconf`.
type upstreamFigures struct {
	AddSeconds     float64 `json:"add_seconds"`
	RSSEmptyMiB    float64 `json:"rss_empty_mib"`
	RSSConfigured  float64 `json:"rss_configured_mib"`
	RSSConnected   float64 `json:"rss_connected_mib"`
	ConnectSeconds float64 `json:"connect_seconds"`
	Connected      int     `json:"connected"`
	PingsAnswered  int     `json:"members_with_ping_answered"`
	IdleCPUPercent float64 `json:"idle_cpu_percent,omitempty"`
	IdleSeconds    float64 `json:"idle_seconds,omitempty"`
	// Profile is the top of the idle window's perf profile (--perf).
	Profile []string `json:"profile,omitempty"`
}

// upstreamBaseline runs upstream wireguard-go as a plain exit (wg, nft
// masquerade) with the simulated members privs: the same fleet, pings and
// idle window as exitd's part of the bench.
func upstreamBaseline(ctx context.Context, lab *netlab.Lab, dir string, bins harness.Binaries, o membersOpts, privs []keys.Key, step func(string, ...any)) (*upstreamFigures, error) {
	u := &upstreamFigures{}
	bin, err := harness.BuildUpstream(ctx, dir)
	if err != nil {
		return u, err
	}
	p, err := harness.StartPlainExit(ctx, lab, bin, bins.WireguardGo, dir)
	if err != nil {
		return u, err
	}
	defer p.Close()
	u.RSSEmptyMiB = rssMiB(p.Pid())
	pubs := make([]string, len(privs))
	addrs := make([]netip.Addr, len(privs))
	for i, k := range privs {
		pubs[i], addrs[i] = k.Public().String(), harness.PlainMemberAddr(i)
	}
	start := time.Now()
	if err := p.AddPeers(ctx, pubs, addrs); err != nil {
		return u, err
	}
	u.AddSeconds = time.Since(start).Seconds()
	u.RSSConfigured = rssMiB(p.Pid())
	exitKey, err := keys.Parse(p.PublicKey())
	if err != nil {
		return u, err
	}
	fleet, err := harness.NewFleet(ctx, lab, [32]byte(exitKey), netip.MustParseAddrPort(netlab.ExitUnderlay4+":443"))
	if err != nil {
		return u, err
	}
	defer fleet.Close()
	start = time.Now()
	for i, k := range privs {
		if err := fleet.Add([32]byte(k), addrs[i]); err != nil {
			return u, err
		}
	}
	fleet.StartPinging(o.ping)
	step("baseline: waiting for %d handshakes", len(privs))
	last := time.Now()
	err = netlab.WaitFor(ctx, o.timeout, func() bool {
		n, err := p.Handshaken(ctx, time.Now(), 3*time.Minute)
		if err == nil {
			u.Connected = n
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			step("baseline: %d of %d connected after %.0f s", u.Connected, len(privs), time.Since(start).Seconds())
		}
		return u.Connected >= len(privs)
	})
	u.ConnectSeconds = time.Since(start).Seconds()
	if err != nil {
		return u, fmt.Errorf("baseline: %d of %d connected: %w", u.Connected, len(privs), err)
	}
	u.PingsAnswered = fleet.WaitPings(ctx, time.Now(), o.ping*2+5*time.Second)
	u.RSSConnected = rssMiB(p.Pid())
	if o.idle > 0 {
		step("baseline: upstream's CPU over %v", o.idle)
		if u.IdleCPUPercent, u.IdleSeconds, u.Profile, err = o.idleCPU(ctx, "upstream-idle", p.Pid()); err != nil {
			return u, err
		}
	}
	return u, nil
}

// idleCPU measures pid's CPU over o.idle (100 = one CPU), profiling pids
// meanwhile with --perf (the top of the profile is returned).
func (o membersOpts) idleCPU(ctx context.Context, phase string, pid int, others ...int) (pct, secs float64, top []string, err error) {
	cpu0, err := harness.CPUSeconds(pid)
	if err != nil {
		return 0, 0, nil, err
	}
	stop, err := o.startPerf(phase, append([]int{pid}, others...)...)
	if err != nil {
		return 0, 0, nil, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, 0, stop(), ctx.Err()
	case <-time.After(o.idle):
	}
	top = stop()
	cpu1, err := harness.CPUSeconds(pid)
	if err != nil {
		return 0, 0, top, err
	}
	secs = time.Since(t0).Seconds()
	return 100 * (cpu1 - cpu0) / secs, secs, top, nil
}

// startPerf profiles pids into o.perf/members-PHASE.perf.data until the
// returned stop (which returns the top of the report); without --perf it
// does nothing.
func (o membersOpts) startPerf(phase string, pids ...int) (stop func() []string, err error) {
	if o.perf == "" {
		return func() []string { return nil }, nil
	}
	if err := os.MkdirAll(o.perf, 0o755); err != nil {
		return nil, err
	}
	return startPerf(filepath.Join(o.perf, "members-"+phase+".perf.data"), pids)
}

func (r *membersReport) addProfile(phase string, top []string) {
	if len(top) == 0 {
		return
	}
	if r.Profile == nil {
		r.Profile = map[string][]string{}
	}
	r.Profile[phase] = top
}

// bulkDownload runs one TCP flow from the internet host to ns for secs
// seconds and returns its goodput in Mbit/s, the first 2 s omitted.
func bulkDownload(ctx context.Context, ns *netlab.NS, secs int) (float64, error) {
	res, err := ns.Iperf(ctx, netlab.IperfOptions{
		Server: netip.MustParseAddr(netlab.Internet4), Duration: time.Duration(secs) * time.Second,
		Streams: 1, Reverse: true, Omit: 2 * time.Second,
	})
	if err != nil {
		return 0, err
	}
	return res.ReceivedBps / 1e6, nil
}

func rateOrUnshaped(bps uint64) string {
	if bps == 0 {
		return "unshaped"
	}
	return fmt.Sprintf("%.0f Mbit/s", float64(bps)/1e6)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// genKeys makes n private keys on every CPU.
func genKeys(n int) []keys.Key {
	out := make([]keys.Key, n)
	var wg sync.WaitGroup
	per := (n + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	for lo := 0; lo < n; lo += per {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				k, err := keys.Generate(rand.Reader)
				if err != nil {
					panic(err) // crypto/rand does not fail
				}
				out[i] = k
			}
		}(lo, min(lo+per, n))
	}
	wg.Wait()
	return out
}

func addMembers(ctx context.Context, c *control.Client, privs []keys.Key) ([]control.Member, error) {
	const chunk = 1000
	out := make([]control.Member, 0, len(privs))
	pubs := make([]string, len(privs))
	for i, k := range privs {
		pubs[i] = k.Public().String()
	}
	for lo := 0; lo < len(privs); lo += chunk {
		hi := min(lo+chunk, len(privs))
		reqs := make([]control.AddMemberRequest, 0, hi-lo)
		for i := lo; i < hi; i++ {
			reqs = append(reqs, control.AddMemberRequest{Label: fmt.Sprintf("sim-%05d", i), PublicKey: pubs[i]})
		}
		ms, err := c.AddMembers(ctx, control.AddMembersRequest{Members: reqs})
		if err != nil {
			return out, fmt.Errorf("add members %d-%d: %w", lo, hi, err)
		}
		out = append(out, ms...)
	}
	return out, nil
}

func timeExitctl(ctx context.Context, n *harness.Node, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, n.Opts.Bin.Exitctl, append([]string{"--socket", n.Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("exitctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return time.Since(start).Seconds(), nil
}

// waitConnected polls exitd until want members have a live session,
// logging the count every 10 s.
func waitConnected(ctx context.Context, c *control.Client, want int, timeout time.Duration, log func(string, ...any)) (int, error) {
	got := 0
	start, last := time.Now(), time.Now()
	err := netlab.WaitFor(ctx, timeout, func() bool {
		s, err := c.Status(ctx)
		if err == nil {
			got = s.MembersConnected
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			log("%d of %d connected after %.0f s", got, want, time.Since(start).Seconds())
		}
		return got >= want
	})
	if err != nil {
		return got, fmt.Errorf("%d of %d members connected: %w", got, want, err)
	}
	return got, nil
}

// rssMiB reads VmRSS of pid.
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// saveReport writes v as dir/name when dir is set and says where, joining
// a write failure to the bench's own error err.
func saveReport(w io.Writer, dir, name string, v any, err error) error {
	if dir == "" {
		return err
	}
	if werr := writeReport(dir, name, v); werr != nil {
		return errors.Join(err, werr)
	}
	fmt.Fprintf(w, "\nwrote %s\n", filepath.Join(dir, name))
	return err
}

func writeReport(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644)
}

func printMembersReport(w io.Writer, r *membersReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "MEASURE\tRESULT\tTARGET\n")
	if r.ExitdMemLimit != "" {
		fmt.Fprintf(tw, "exitd GOMEMLIMIT\t%s\t\n", r.ExitdMemLimit)
	}
	fmt.Fprintf(tw, "add %d members\t%.2f s (%.0f µs each)\t≤ 5 s for 20,000\n", r.Members, r.AddSeconds, r.AddSeconds*1e6/float64(max(r.Members, 1)))
	fmt.Fprintf(tw, "list (API / exitctl --json / table)\t%.2f / %.2f / %.2f s\t≤ 1 s\n", r.ListAPISeconds, r.ListJSONSeconds, r.ListTableSeconds)
	fmt.Fprintf(tw, "exitd RSS empty\t%.0f MiB\t\n", r.RSSEmptyMiB)
	fmt.Fprintf(tw, "exitd RSS, %d configured\t%.0f MiB (%.1f KiB/member)\t\n", r.Members, r.RSSConfiguredMiB, r.PerMemberKiB)
	if r.Handshaken > 0 {
		fmt.Fprintf(tw, "exitd RSS, %d handshaken + pinging\t%.0f MiB (%.1f KiB/connected member)\t\n", r.Handshaken, r.RSSConnectedMiB, r.PerConnectedKiB)
		fmt.Fprintf(tw, "estimate, all %d handshaken\t%.0f MiB\t≤ 1024 MiB\n", r.Members, r.RSS20kMiB)
		fmt.Fprintf(tw, "initial connect of %d\t%.1f s (%d connected, %d pings answered)\t\n", r.Handshaken, r.ConnectSeconds, r.Connected, r.PingsAnswered)
	}
	if r.IdleSeconds > 0 {
		fmt.Fprintf(tw, "exitd CPU, %d handshaken, keepalive 25 s, pinging\t%.1f %% of a CPU over %.0f s\t≤ 10 %%\n", r.Handshaken, r.IdleCPUPercent, r.IdleSeconds)
	}
	if r.BulkRateMbps > 0 {
		fmt.Fprintf(tw, "bulk member, 1 flow down, %.0f Mbit/s link\t%.1f Mbit/s alone, %.1f with %d handshaken: %.3f\t≥ 0.95\n",
			r.BulkRateMbps, r.BulkAloneMbps, r.BulkCrowdMbps, r.Handshaken, r.BulkRatio)
	}
	if r.StormSeconds > 0 {
		fmt.Fprintf(tw, "reconnect storm of %d after restart\t%.1f s (%.1f s after ready; %d reconnected, %d pings answered)\t≤ 60 s for 20,000\n",
			r.Handshaken, r.StormSeconds, r.StormAfterReady, r.StormReconnected, r.StormPingAnswered)
		fmt.Fprintf(tw, "CPU in the storm: exitd / simulated members\t%.1f / %.1f CPU-s\t\n", r.StormExitdCPU, r.StormSimCPU)
	}
	if u := r.Upstream; u != nil {
		fmt.Fprintf(tw, "baseline: upstream wireguard-go, %d members (one wg addconf)\tadd %.2f s; RSS %.0f → %.0f → %.0f MiB (empty, configured, handshaken); connect %.1f s (%d, %d pings answered)\t\n",
			r.Handshaken, u.AddSeconds, u.RSSEmptyMiB, u.RSSConfigured, u.RSSConnected, u.ConnectSeconds, u.Connected, u.PingsAnswered)
		if u.IdleSeconds > 0 {
			fmt.Fprintf(tw, "baseline: upstream's CPU with them\t%.1f %% of a CPU over %.0f s (exitd: %.1f %%)\t\n", u.IdleCPUPercent, u.IdleSeconds, r.IdleCPUPercent)
		}
	}
	for _, stage := range []string{"configured", "connected"} {
		if g, ok := r.Runtime[stage]; ok {
			fmt.Fprintf(tw, "exitd Go runtime, %s\theap alloc %.0f / in use %.0f MiB, stacks %.0f MiB, %.0f goroutines\t\n",
				stage, g.HeapAllocMiB, g.HeapInuseMiB, g.StackInuseMiB, g.Goroutines)
		}
	}
	if r.SimRSSMiB > 0 {
		fmt.Fprintf(tw, "simulator RSS (this process)\t%.0f MiB\t\n", r.SimRSSMiB)
	}
	tw.Flush()
}
