package main

// cluster-bench: issue 15's benchmark of a lab cluster (docs/members.md,
// "A cluster of exit nodes"): three exitd nodes, one per exit namespace,
// on a three-member etcd (harness.StartEtcd, harness.StartCluster).
//
//	keys, generated before the clock starts
//	  └─▶ node A: POST /v1/members:batch, --batch a request, one after
//	      another ──▶ etcd ──watch──▶ nodes B, C                   "bulk"
//	routineBulkWait, one per node, every --poll: the node's log, stamped
//	  by exitd after its device took the members: A's "members added",
//	  B's and C's "cluster: applied other nodes' member changes"
//	  (added=K): when the device holds N; then GET /v1/members?limit=1
//	  &stats=0 (the X-Total count) confirms the node lists N (its
//	  registry leads its device, so it does at once)
//	then, one at a time through A: an add, a weight change or a removal;
//	  latency = the log line on B and on C that applied it − A's answer
//	                                                           "single"
//
// The log is the cheapest exact signal: it costs the nodes nothing, it is
// written after the device (or the scheduler) took the change, and exitd
// stamps it to the millisecond. Polling a member view costs the node: a
// member or the status means a device dump (~60-150 ms at 20,000 peers),
// and even the count without live figures builds a view of every member
// (at 4 polls a second on each node, 20 % of exitd's CPU during the bulk
// add in a profile); --list-poll brings that poll back. After the bulk add: each device's peer count (`wg show`, once),
// each process's RSS and CPU, and each etcd member's database size.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
)

// Issue 15's targets.
const (
	clusterBulkTarget = 10 * time.Second       // 20,000 members live on all three
	clusterP99Target  = 500 * time.Millisecond // a single change on the other nodes
)

// Log messages the bench reads (node/backend.go, node/cluster.go).
const (
	logApplied     = "cluster: applied other nodes' member changes"
	logAddedBatch  = "members added"
	logAddedSingle = "member added"
)

// Kinds of single change, in the order they rotate.
const (
	changeAdd    = "add"
	changeWeight = "weight"
	changeRemove = "remove"
)

var changeKinds = []string{changeAdd, changeWeight, changeRemove}

type clusterOpts struct {
	members       int
	batch         int
	changes       int
	poll          time.Duration
	listPoll      time.Duration
	timeout       time.Duration
	changeTimeout time.Duration
	gap           time.Duration
	profile       string
	out           string
}

func newClusterBenchCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	o := clusterOpts{}
	cmd := &cobra.Command{
		Use:   "cluster-bench",
		Short: "Cluster of 3 nodes on 3 etcd members: 20,000 members added through one node until live on all, single-change sync p50/p99, RSS, etcd DB size",
		Long: `Issue 15's benchmark: a lab with three exit namespaces, a three-member
etcd (Debian's etcd 3.4) and one exitd per exit sharing the member store.

  bulk    --members public keys (generated before the clock starts) added
          through node A's control API, --batch per request; timed from
          the first request until every node's device holds them all (the
          node's own log line, stamped after the device took them) and
          every node lists them (polled every --poll)
  single  --changes single operations through A, rotating add, weight
          change, removal, one at a time; each timed from A's answer to
          the log line on B and on C that applied it
  size    each exitd's RSS and CPU, each etcd member's RSS, CPU and
          database size (its /metrics and the member/snap/db file)

Targets: bulk <= 10 s for 20,000, sync p99 <= 500 ms. --profile DIR
records the bulk phase with perf (exitd and etcd, call graphs) and writes
the top of the report; build exitd unstripped for Go symbols (go build -o
/tmp/exitd ./cmd/exitd; --exitd /tmp/exitd). Writes cluster.json to --out
and prints the tables. Everything is removed at the end and on Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if _, err := harness.EtcdBinary(""); err != nil {
				return err
			}
			r, err := clusterBench(cmd.Context(), b.binaries(), o, stdout)
			if r != nil {
				printClusterReport(stdout, r)
				err = saveReport(stdout, o.out, "cluster.json", r, err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.members, "members", 20000, "members added in the bulk phase")
	f.IntVar(&o.batch, "batch", control.MaxBatch, "members per add request (the API's most)")
	f.IntVar(&o.changes, "changes", 200, "single changes after the bulk add (adds, weight changes, removals in turn)")
	f.DurationVar(&o.poll, "poll", 100*time.Millisecond, "how often each node's log is read during the bulk add")
	f.DurationVar(&o.listPoll, "list-poll", 0, "also poll each node's member count this often during the bulk add (it costs the node a view of every member a call; 0: once its log says it has them all)")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on the bulk add after this long")
	f.DurationVar(&o.changeTimeout, "change-timeout", 5*time.Second, "a single change not applied on a node by then counts as a timeout")
	f.DurationVar(&o.gap, "gap", 50*time.Millisecond, "pause between single changes")
	f.StringVar(&o.profile, "profile", "", "directory for a perf profile of the bulk phase (empty: none)")
	f.StringVar(&o.out, "out", "bench-results", "directory for cluster.json (empty: none)")
	return cmd
}

// clusterMaxMembers keeps the run inside the lab's /16 member prefix.
const clusterMaxMembers = 60000

// check bounds the run before anything is built.
func (o clusterOpts) check() error {
	switch {
	case o.members < 1 || o.members > clusterMaxMembers:
		return fmt.Errorf("--members: %d out of range [1, %d]", o.members, clusterMaxMembers)
	case o.batch < 1 || o.batch > control.MaxBatch:
		return fmt.Errorf("--batch: %d out of range [1, %d]", o.batch, control.MaxBatch)
	case o.changes < 0 || o.changes > 3000:
		return fmt.Errorf("--changes: %d out of range [0, 3000]", o.changes)
	case o.changes > o.members:
		// Weight changes and removals each take a bulk member of their own.
		return fmt.Errorf("--changes: %d is more than --members %d", o.changes, o.members)
	case o.poll < 20*time.Millisecond || o.poll > 5*time.Second:
		return fmt.Errorf("--poll: %v out of range [20ms, 5s]", o.poll)
	case o.listPoll != 0 && (o.listPoll < 20*time.Millisecond || o.listPoll > 5*time.Second):
		return fmt.Errorf("--list-poll: %v out of range [20ms, 5s] (or 0)", o.listPoll)
	case o.timeout < 10*time.Second || o.timeout > 10*time.Minute:
		return fmt.Errorf("--timeout: %v out of range [10s, 10m]", o.timeout)
	case o.changeTimeout < 100*time.Millisecond || o.changeTimeout > 30*time.Second:
		return fmt.Errorf("--change-timeout: %v out of range [100ms, 30s]", o.changeTimeout)
	case o.gap < 0 || o.gap > 5*time.Second:
		return fmt.Errorf("--gap: %v out of range [0, 5s]", o.gap)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Report.

// clusterReport is cluster.json.
type clusterReport struct {
	When      time.Time `json:"when"`
	Machine   string    `json:"machine"`
	LoadStart string    `json:"loadavg_start"`
	LoadEnd   string    `json:"loadavg_end"`
	Etcd      string    `json:"etcd_version"`
	Members   int       `json:"members"`
	Batch     int       `json:"batch"`
	Requests  int       `json:"requests"`
	Through   string    `json:"through"`
	// ListPollS is --list-poll: how often the nodes' member counts were
	// polled during the bulk add (0: once, at the end).
	ListPollS float64 `json:"list_poll_s"`
	// KeygenS is the client-side key generation, before the clock.
	KeygenS float64 `json:"keygen_s"`
	// AckedS: the first request to the last answer; LiveS: to the moment
	// the last node's device held every member (-1: not within the
	// timeout); ListedS: the last node's first poll listing them all.
	AckedS      float64             `json:"bulk_acked_s"`
	LiveS       float64             `json:"bulk_live_all_s"`
	ListedS     float64             `json:"bulk_listed_all_s"`
	BatchAcksS  []float64           `json:"batch_acks_s"`
	Nodes       []clusterNodeReport `json:"nodes"`
	EtcdMembers []clusterEtcdReport `json:"etcd"`
	Changes     []clusterChange     `json:"changes"`
	// Sync is every single change on every other node together, from A's
	// answer (the target's measure); SyncReq the same from the request
	// (A may answer after the others applied: a weight change's answer
	// waits for a dump of A's device). ByKind splits Sync by kind of
	// change, AckByKind A's answer times.
	Sync      syncStats            `json:"sync"`
	SyncReq   syncStats            `json:"sync_from_request"`
	ByKind    map[string]syncStats `json:"sync_by_kind"`
	AckByKind map[string]syncStats `json:"ack_by_kind"`
	Final     []int                `json:"final_members_listed"`
	FinalWG   []int                `json:"final_device_peers"`
	Verdict   clusterVerdict       `json:"verdict"`
	Profile   []string             `json:"profile_top,omitempty"`
	Notes     []string             `json:"notes,omitempty"`
}

// clusterNodeReport is one exitd.
type clusterNodeReport struct {
	Name string `json:"name"` // A, B, C
	PID  int    `json:"pid"`
	// ListedS is the first poll that listed every member; DeviceS the log
	// line after which the device held them (-1: never).
	ListedS     float64 `json:"listed_all_s"`
	DeviceS     float64 `json:"device_all_s"`
	DevicePeers int     `json:"device_peers_after_bulk"`
	LogLines    int     `json:"bulk_apply_log_lines"` // device transactions during the bulk add
	// Progress is the device's member count over the bulk add, from the
	// log: [seconds, members] at most every 250 ms.
	Progress    [][2]float64 `json:"device_progress"`
	RSSEmptyMiB float64      `json:"rss_empty_mib"`
	RSSBulkMiB  float64      `json:"rss_after_bulk_mib"`
	CPUBulkS    float64      `json:"cpu_bulk_s"`
	Sync        *syncStats   `json:"sync,omitempty"`              // nil for A
	SyncReq     *syncStats   `json:"sync_from_request,omitempty"` // nil for A
	ErrorLines  int          `json:"error_log_lines"`
	FirstError  string       `json:"first_error,omitempty"`
}

// clusterEtcdReport is one etcd member after the bulk add.
type clusterEtcdReport struct {
	Name      string  `json:"name"`
	PID       int     `json:"pid"`
	DBBytes   float64 `json:"db_total_size_bytes"`        // etcd_mvcc_db_total_size_in_bytes
	InUse     float64 `json:"db_total_size_in_use_bytes"` // etcd_mvcc_db_total_size_in_use_in_bytes
	FileBytes int64   `json:"db_file_bytes"`              // member/snap/db
	RSSMiB    float64 `json:"rss_mib"`
	CPUBulkS  float64 `json:"cpu_bulk_s"`
}

// clusterChange is one single change through A.
type clusterChange struct {
	Kind  string  `json:"kind"`
	Label string  `json:"label"`
	AckMs float64 `json:"ack_ms"` // A's answer after the request
	// SyncMs: per other node, its log line applying the change − A's
	// answer (negative when it came before the answer); a node missing
	// is a timeout.
	SyncMs map[string]float64 `json:"sync_ms"`
}

// syncStats summarises sync latencies. Percentiles are nearest-rank with
// a timeout counting as infinitely late: one that lands on a timeout is
// reported as the timeout with its flag set.
type syncStats struct {
	Samples    int     `json:"samples"`
	Timeouts   int     `json:"timeouts"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	P99Timeout bool    `json:"p99_is_timeout,omitempty"`
	MaxTimeout bool    `json:"max_is_timeout,omitempty"`
}

// clusterVerdict judges issue 15's targets.
type clusterVerdict struct {
	BulkOK bool `json:"bulk_ok"` // live on all three <= 10 s
	SyncOK bool `json:"sync_ok"` // p99 <= 500 ms, no timeout at p99
	Pass   bool `json:"pass"`
}

// summarizeSync reduces latencies in ms (+Inf: timeout).
func summarizeSync(ms []float64, timeout time.Duration) syncStats {
	s := syncStats{Samples: len(ms)}
	if len(ms) == 0 {
		return s
	}
	sorted := slices.Clone(ms)
	slices.Sort(sorted)
	for _, v := range sorted {
		if math.IsInf(v, 1) {
			s.Timeouts++
		}
	}
	to := ms2(timeout)
	pick := func(v float64) (float64, bool) {
		if math.IsInf(v, 1) {
			return to, true
		}
		return v, false
	}
	s.P50Ms, _ = pick(dnsbPercentile(sorted, 0.50))
	s.P99Ms, s.P99Timeout = pick(dnsbPercentile(sorted, 0.99))
	s.MaxMs, s.MaxTimeout = pick(sorted[len(sorted)-1])
	return s
}

// judge applies the targets.
func (r *clusterReport) judge() {
	v := clusterVerdict{}
	v.BulkOK = r.LiveS >= 0 && r.LiveS <= clusterBulkTarget.Seconds()
	v.SyncOK = r.Sync.Samples > 0 && !r.Sync.P99Timeout && r.Sync.P99Ms <= ms2(clusterP99Target)
	v.Pass = v.BulkOK && v.SyncOK
	r.Verdict = v
	if r.Members != 20000 {
		r.Notes = append(r.Notes, fmt.Sprintf("the bulk target is for 20,000 members; this run added %d", r.Members))
	}
}

// summariseChanges fills the per-node, overall and per-kind sync stats.
func (r *clusterReport) summariseChanges(timeout time.Duration) {
	var all, allReq []float64
	byKind, acks := map[string][]float64{}, map[string][]float64{}
	for _, c := range r.Changes {
		acks[c.Kind] = append(acks[c.Kind], c.AckMs)
	}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if i == 0 {
			continue // the changes go through A
		}
		var ms, req []float64
		for _, c := range r.Changes {
			v, ok := c.SyncMs[n.Name]
			if !ok {
				v = math.Inf(1)
			}
			ms = append(ms, v)
			req = append(req, v+c.AckMs)
			byKind[c.Kind] = append(byKind[c.Kind], v)
		}
		s, sr := summarizeSync(ms, timeout), summarizeSync(req, timeout)
		n.Sync, n.SyncReq = &s, &sr
		all, allReq = append(all, ms...), append(allReq, req...)
	}
	r.Sync, r.SyncReq = summarizeSync(all, timeout), summarizeSync(allReq, timeout)
	r.ByKind, r.AckByKind = map[string]syncStats{}, map[string]syncStats{}
	for k, ms := range byKind {
		r.ByKind[k] = summarizeSync(ms, timeout)
	}
	for k, ms := range acks {
		r.AckByKind[k] = summarizeSync(ms, timeout)
	}
}

// ---------------------------------------------------------------------------
// exitd's log.

// logLine is one line of exitd's slog text output.
type logLine struct {
	At    time.Time
	Level string
	Msg   string
	Attrs map[string]string
}

// parseLogLine reads `time=… level=… msg="…" k=v …`; ok is false for
// anything else.
func parseLogLine(s string) (logLine, bool) {
	kv := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \"") {
			return logLine{}, false
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return logLine{}, false
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
			rest = " " + rest
		}
		kv[k] = v
		s = rest
	}
	at, err := time.Parse(time.RFC3339Nano, kv["time"])
	if err != nil || kv["msg"] == "" {
		return logLine{}, false
	}
	l := logLine{At: at, Level: kv["level"], Msg: kv["msg"], Attrs: kv}
	delete(kv, "time")
	delete(kv, "level")
	delete(kv, "msg")
	return l, true
}

// attrInt is an integer attribute, 0 when absent or not a number.
func (l logLine) attrInt(k string) int {
	n, _ := strconv.Atoi(l.Attrs[k])
	return n
}

// deviceAdds is how many members a line says went into the device.
func (l logLine) deviceAdds() int {
	switch l.Msg {
	case logAddedBatch:
		return l.attrInt("count")
	case logAddedSingle:
		return 1
	case logApplied:
		return l.attrInt("added")
	}
	return 0
}

// applies reports whether l is another node applying one change of kind.
func (l logLine) applies(kind string) bool {
	if l.Msg != logApplied || l.attrInt("changes") != 1 {
		return false
	}
	added, removed := l.attrInt("added"), l.attrInt("removed")
	switch kind {
	case changeAdd:
		return added == 1 && removed == 0
	case changeRemove:
		return added == 0 && removed == 1
	case changeWeight:
		return added == 0 && removed == 0
	}
	return false
}

// deviceTimeline reads the lines of the bulk add: when the cumulative
// adds first reached want (ok false: never), the device's count at most
// every step since start, and how many lines added members.
func deviceTimeline(lines []logLine, start time.Time, want int, step time.Duration) (reached time.Time, ok bool, progress [][2]float64, n int) {
	sum := 0
	for _, l := range lines {
		a := l.deviceAdds()
		if a == 0 {
			continue
		}
		n++
		sum += a
		p := [2]float64{l.At.Sub(start).Seconds(), float64(sum)}
		bucket := math.Floor(p[0] / step.Seconds())
		if k := len(progress); k > 0 && math.Floor(progress[k-1][0]/step.Seconds()) == bucket {
			progress[k-1] = p // the same step: keep the latest
		} else {
			progress = append(progress, p)
		}
		if sum >= want && !ok {
			reached, ok = l.At, true
		}
	}
	return reached, ok, progress, n
}

// logTail reads a process's output past an offset, whole lines only,
// counting error-level lines on the way.
type logTail struct {
	proc     *netlab.Process
	off      int
	errors   int
	firstErr string
}

// next returns the complete lines written since the last call.
func (t *logTail) next() []logLine {
	out := t.proc.Output()
	if t.off > len(out) {
		t.off = len(out)
	}
	s := out[t.off:]
	end := strings.LastIndexByte(s, '\n')
	if end < 0 {
		return nil
	}
	t.off += end + 1
	var lines []logLine
	for _, raw := range strings.Split(s[:end], "\n") {
		l, ok := parseLogLine(raw)
		if !ok {
			continue
		}
		lines = append(lines, l)
		if l.Level == "ERROR" {
			t.errors++
			if t.firstErr == "" {
				t.firstErr = strings.TrimSpace(l.Msg + " " + l.Attrs["err"])
			}
		}
	}
	return lines
}

// ---------------------------------------------------------------------------
// The run.

// clusterLab is the running lab cluster.
type clusterLab struct {
	lab     *netlab.Lab
	etcd    *harness.EtcdCluster
	cl      *harness.Cluster
	clients []*control.Client
	tails   []*logTail
	o       clusterOpts
	log     func(string, ...any)
}

// clusterNodeNames are the nodes' names in the issue.
var clusterNodeNames = []string{"A", "B", "C"}

func clusterBench(ctx context.Context, bins harness.Binaries, o clusterOpts, w io.Writer) (*clusterReport, error) {
	r := &clusterReport{When: time.Now().UTC(), Machine: dnsbMachine(), LoadStart: dnsbLoadAvg(),
		Members: o.members, Batch: o.batch, Requests: (o.members + o.batch - 1) / o.batch, Through: "A", LiveS: -1, ListedS: -1,
		ListPollS: o.listPoll.Seconds()}
	log := func(format string, args ...any) { fmt.Fprintf(w, "cluster-bench: "+format+"\n", args...) }
	var cl *clusterLab
	finish := func(err error) (*clusterReport, error) {
		if cl != nil {
			for i, t := range cl.tails {
				t.next()
				r.Nodes[i].ErrorLines, r.Nodes[i].FirstError = t.errors, t.firstErr
			}
		}
		r.LoadEnd = dnsbLoadAvg()
		r.summariseChanges(o.changeTimeout)
		r.judge()
		return r, err
	}
	if bin, err := harness.EtcdBinary(""); err == nil {
		if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
			r.Etcd = strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "etcd Version: ")
		}
	}

	// Keys before the clock: generation is not part of the add.
	start := time.Now()
	nAdds := (o.changes + 2) / 3
	privs := genKeys(o.members + nAdds)
	pubs := make([]string, len(privs))
	for i, k := range privs {
		pubs[i] = k.Public().String()
	}
	r.KeygenS = time.Since(start).Seconds()
	log("%d key pairs generated in %.1f s", len(privs), r.KeygenS)

	cl, cleanup, err := clusterSetup(ctx, bins, o, log)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	for i, n := range cl.cl.Nodes {
		r.Nodes = append(r.Nodes, clusterNodeReport{Name: clusterNodeNames[i], PID: n.Proc.Pid(),
			RSSEmptyMiB: rssMiB(n.Proc.Pid()), ListedS: -1, DeviceS: -1})
	}
	for _, m := range cl.etcd.Members {
		r.EtcdMembers = append(r.EtcdMembers, clusterEtcdReport{Name: m.Name, PID: m.Proc.Pid()})
	}
	if err := cl.bulk(ctx, r, pubs[:o.members]); err != nil {
		return finish(fmt.Errorf("bulk add: %w", err))
	}
	cl.sizes(ctx, r)
	if err := cl.single(ctx, r, pubs[o.members:]); err != nil {
		return finish(fmt.Errorf("single changes: %w", err))
	}
	cl.final(ctx, r)
	return finish(nil)
}

// clusterSetup builds the lab, etcd and the three nodes. cleanup is always
// non-nil and undoes everything, also after an error.
func clusterSetup(ctx context.Context, bins harness.Binaries, o clusterOpts, log func(string, ...any)) (*clusterLab, func(), error) {
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	log("lab: 3 exits, etcd, 3 nodes")
	lab, err := netlab.New(ctx, netlab.Options{Exits: 3})
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { lab.Close() })
	dir, err := os.MkdirTemp("", "xcb") // short: control sockets live there
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	etcdDir := filepath.Join(dir, "etcd")
	nodeDir := filepath.Join(dir, "c")
	for _, d := range []string{etcdDir, nodeDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, cleanup, err
		}
	}
	e, err := harness.StartEtcd(ctx, lab, harness.EtcdOptions{Dir: etcdDir})
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { e.Close() })
	c, err := harness.StartCluster(ctx, lab, harness.ClusterOptions{Bin: bins, Dir: nodeDir, Etcd: e})
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { c.Close() })
	cl := &clusterLab{lab: lab, etcd: e, cl: c, o: o, log: log}
	for _, n := range c.Nodes {
		cl.clients = append(cl.clients, control.NewClient(n.Socket))
		cl.tails = append(cl.tails, &logTail{proc: n.Proc})
	}
	for _, t := range cl.tails {
		t.next() // start-up lines are not the bench's (the kernel
		// profile's complaints about the lab's namespaces among them)
		t.errors, t.firstErr = 0, ""
	}
	log("ready: nodes A, B, C (pids %d, %d, %d) on etcd %s", c.Nodes[0].Proc.Pid(), c.Nodes[1].Proc.Pid(), c.Nodes[2].Proc.Pid(),
		strings.Join(e.Endpoints(), ", "))
	return cl, cleanup, nil
}

// listed is the node's member count without live figures.
func (cl *clusterLab) listed(ctx context.Context, i int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, total, err := cl.clients[i].ListMembers(ctx, control.ListQuery{Limit: 1, NoStats: true})
	return total, err
}

// bulk adds the members through A and waits until every node lists them
// and its device holds them.
func (cl *clusterLab) bulk(ctx context.Context, r *clusterReport, pubs []string) error {
	o := cl.o
	want := len(pubs)
	cpu0 := cl.cpu()
	var stopPerf func() []string
	if o.profile != "" {
		var err error
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
		if stopPerf, err = startPerf(filepath.Join(o.profile, "cluster-bulk.perf.data"), cl.pids()); err != nil {
			return err
		}
		defer func() {
			if stopPerf != nil {
				stopPerf()
			}
		}()
	}
	cl.log("adding %d members through A, %d per request", want, o.batch)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	start := time.Now()
	ws := make([]*bulkWait, len(cl.clients))
	var wg sync.WaitGroup
	for i := range cl.clients {
		ws[i] = &bulkWait{want: want}
		wg.Go(func() { cl.routineBulkWait(ctx, i, ws[i]) })
	}
	var addErr error
	for lo := 0; lo < want; lo += o.batch {
		hi := min(lo+o.batch, want)
		reqs := make([]control.AddMemberRequest, 0, hi-lo)
		for i := lo; i < hi; i++ {
			reqs = append(reqs, control.AddMemberRequest{Label: fmt.Sprintf("bulk-%05d", i), PublicKey: pubs[i]})
		}
		if _, err := cl.clients[0].AddMembers(ctx, control.AddMembersRequest{Members: reqs}); err != nil {
			addErr = fmt.Errorf("add members %d-%d through A: %w", lo, hi, err)
			break
		}
		r.BatchAcksS = append(r.BatchAcksS, time.Since(start).Seconds())
		cl.log("  %d added, acknowledged at %.2f s", hi, time.Since(start).Seconds())
	}
	if addErr != nil {
		cancel()
	} else {
		r.AckedS = time.Since(start).Seconds()
	}
	progressDone := make(chan struct{})
	go func() { // a progress line every 2 s while waiting
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				var parts []string
				for i, w := range ws {
					l, d := w.counts()
					part := fmt.Sprintf("%s device %d", clusterNodeNames[i], d)
					if l > 0 {
						part += fmt.Sprintf(" (listed %d)", l)
					}
					parts = append(parts, part)
				}
				cl.log("  %.0f s: %s", time.Since(start).Seconds(), strings.Join(parts, ", "))
			}
		}
	}()
	wg.Wait()
	close(progressDone)
	if stopPerf != nil {
		r.Profile = stopPerf()
		stopPerf = nil
	}
	cpu1 := cl.cpu()
	for i := range r.Nodes {
		r.Nodes[i].CPUBulkS = cpu1[i] - cpu0[i]
	}
	for k := range r.EtcdMembers {
		r.EtcdMembers[k].CPUBulkS = cpu1[len(r.Nodes)+k] - cpu0[len(r.Nodes)+k]
	}
	var missing []string
	for i, w := range ws {
		n := &r.Nodes[i]
		at, ok, progress, k := deviceTimeline(w.lines, start, want, 250*time.Millisecond)
		n.Progress, n.LogLines = progress, k
		if ok {
			n.DeviceS = at.Sub(start).Seconds()
		}
		if !w.listedAt.IsZero() {
			n.ListedS = w.listedAt.Sub(start).Seconds()
		}
		if !ok || w.listedAt.IsZero() {
			l, d := w.counts()
			missing = append(missing, fmt.Sprintf("%s (listed %d, device %d)", n.Name, l, d))
		}
	}
	if addErr != nil {
		return addErr
	}
	if len(missing) > 0 {
		return fmt.Errorf("not every node had all %d members within --timeout %v: %s", want, o.timeout, strings.Join(missing, ", "))
	}
	for _, n := range r.Nodes {
		r.LiveS = max(r.LiveS, n.DeviceS)
		r.ListedS = max(r.ListedS, n.ListedS)
	}
	cl.log("live on all three after %.2f s (listed by all after %.2f s; last answer %.2f s)", r.LiveS, r.ListedS, r.AckedS)
	return nil
}

// bulkWait is what routineBulkWait saw of one node.
type bulkWait struct {
	want     int
	lines    []logLine // the node's log since the start
	listedAt time.Time // the first poll listing want; zero: none yet
	mu       sync.Mutex
	listed   int // the last poll's count
	device   int // the log's cumulative adds
}

func (w *bulkWait) counts() (listed, device int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.listed, w.device
}

// routineBulkWait reads node i's log every --poll until its device holds
// w.want members and the node lists them (asked then, or every
// --list-poll), or ctx ends.
func (cl *clusterLab) routineBulkWait(ctx context.Context, i int, w *bulkWait) {
	var asked time.Time
	for {
		lines := cl.tails[i].next()
		w.lines = append(w.lines, lines...)
		added := 0
		for _, l := range lines {
			added += l.deviceAdds()
		}
		w.mu.Lock()
		w.device += added
		done := w.device >= w.want
		w.mu.Unlock()
		if w.listedAt.IsZero() && (done || cl.o.listPoll > 0 && time.Since(asked) >= cl.o.listPoll) {
			n, err := cl.listed(ctx, i)
			asked = time.Now()
			if err == nil {
				w.mu.Lock()
				w.listed = n
				w.mu.Unlock()
				if n >= w.want {
					w.listedAt = asked
				}
			}
		}
		if done && !w.listedAt.IsZero() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(cl.o.poll):
		}
	}
}

// pids are the exitd processes, then the etcd members.
func (cl *clusterLab) pids() []int {
	var ps []int
	for _, n := range cl.cl.Nodes {
		ps = append(ps, n.Proc.Pid())
	}
	for _, m := range cl.etcd.Members {
		ps = append(ps, m.Proc.Pid())
	}
	return ps
}

// cpu is each process's CPU seconds (user + system), in pids order.
func (cl *clusterLab) cpu() []float64 {
	var out []float64
	for _, p := range cl.pids() {
		u, s, _ := cpuSplit(p)
		out = append(out, u+s)
	}
	return out
}

// sizes reads RSS, device peers and etcd's database size after the bulk.
func (cl *clusterLab) sizes(ctx context.Context, r *clusterReport) {
	for i, n := range cl.cl.Nodes {
		r.Nodes[i].RSSBulkMiB = rssMiB(n.Proc.Pid())
		r.Nodes[i].DevicePeers = devicePeers(ctx, n)
	}
	for k, m := range cl.etcd.Members {
		e := &r.EtcdMembers[k]
		e.RSSMiB = rssMiB(m.Proc.Pid())
		if st, err := os.Stat(filepath.Join(m.Dir, "member", "snap", "db")); err == nil {
			e.FileBytes = st.Size()
		}
		vals, err := etcdMetrics(ctx, cl.lab.Mgmt, m.ClientURL+"/metrics",
			"etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes")
		if err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("etcd %s metrics: %v", m.Name, err))
			continue
		}
		e.DBBytes, e.InUse = vals[0], vals[1]
	}
}

// devicePeers counts node n's device peers with `wg show` (-1: unknown).
func devicePeers(ctx context.Context, n *harness.Node) int {
	out, err := n.NS().Exec(ctx, "wg", "show", n.Opts.Tun, "peers")
	if err != nil {
		return -1
	}
	return len(strings.Fields(string(out)))
}

// etcdMetrics fetches url from ns and returns the named unlabelled
// metrics' values, in order.
func etcdMetrics(ctx context.Context, ns *netlab.NS, url string, names ...string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(b, names...)
}

// parseMetrics picks unlabelled samples from a Prometheus text page.
func parseMetrics(page []byte, names ...string) ([]float64, error) {
	vals := make([]float64, len(names))
	found := make([]bool, len(names))
	for _, l := range bytes.Split(page, []byte("\n")) {
		f := strings.Fields(string(l))
		if len(f) != 2 {
			continue
		}
		if i := slices.Index(names, f[0]); i >= 0 {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f[0], err)
			}
			vals[i], found[i] = v, true
		}
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("no %s in the metrics", names[i])
		}
	}
	return vals, nil
}

// single makes --changes single changes through A, one at a time, and
// times each on B and C from their logs.
func (cl *clusterLab) single(ctx context.Context, r *clusterReport, addKeys []string) error {
	o := cl.o
	if o.changes == 0 {
		return nil
	}
	cl.log("%d single changes through A (add, weight, remove in turn)", o.changes)
	for _, t := range cl.tails[1:] {
		t.next() // the bulk's lines are read
	}
	var timeouts int
	for i := range o.changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		kind, label := changeKinds[i%3], ""
		var call func(context.Context) error
		switch kind {
		case changeAdd:
			label = fmt.Sprintf("single-%04d", i/3)
			req := control.AddMemberRequest{Label: label, PublicKey: addKeys[i/3]}
			call = func(ctx context.Context) error { _, err := cl.clients[0].AddMember(ctx, req); return err }
		case changeWeight:
			label = fmt.Sprintf("bulk-%05d", i/3)
			w := 2 + (i/3)%60 // every bulk member starts at the default
			call = func(ctx context.Context) error {
				_, err := cl.clients[0].UpdateMember(ctx, label, control.UpdateMemberRequest{Weight: &w})
				return err
			}
		case changeRemove:
			label = fmt.Sprintf("bulk-%05d", o.members-1-i/3)
			call = func(ctx context.Context) error { _, err := cl.clients[0].RemoveMember(ctx, label); return err }
		}
		c, err := cl.change(ctx, kind, label, call)
		if err != nil {
			return fmt.Errorf("change %d (%s %s): %w", i, kind, label, err)
		}
		if len(c.SyncMs) < len(cl.tails)-1 {
			timeouts++
		}
		r.Changes = append(r.Changes, c)
		if (i+1)%50 == 0 {
			cl.log("  %d changes made (%d not seen everywhere within %v)", i+1, timeouts, o.changeTimeout)
		}
		sleepCtx(ctx, o.gap)
	}
	return nil
}

// change makes one change through A and waits for B's and C's log lines
// applying it.
func (cl *clusterLab) change(ctx context.Context, kind, label string, call func(context.Context) error) (clusterChange, error) {
	c := clusterChange{Kind: kind, Label: label, SyncMs: map[string]float64{}}
	others := cl.tails[1:]
	for _, t := range others {
		t.next() // anything before the request is not this change
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sent := time.Now()
	if err := call(rctx); err != nil {
		return c, err
	}
	acked := time.Now()
	c.AckMs = ms2(acked.Sub(sent))
	seen := make([]time.Time, len(others))
	deadline := acked.Add(cl.o.changeTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		done := true
		for k, t := range others {
			if !seen[k].IsZero() {
				continue
			}
			for _, l := range t.next() {
				if seen[k].IsZero() && l.applies(kind) {
					seen[k] = l.At
				}
			}
			done = done && !seen[k].IsZero()
		}
		if done {
			break
		}
		sleepCtx(ctx, 5*time.Millisecond)
	}
	for k := range others {
		if !seen[k].IsZero() {
			c.SyncMs[clusterNodeNames[k+1]] = ms2(seen[k].Sub(acked))
		}
	}
	return c, nil
}

// final reads every node's member count and device peers at the end.
func (cl *clusterLab) final(ctx context.Context, r *clusterReport) {
	for i, n := range cl.cl.Nodes {
		total, err := cl.listed(ctx, i)
		if err != nil {
			total = -1
		}
		r.Final = append(r.Final, total)
		r.FinalWG = append(r.FinalWG, devicePeers(ctx, n))
	}
	want := r.Members
	for _, c := range r.Changes {
		switch c.Kind {
		case changeAdd:
			want++
		case changeRemove:
			want--
		}
	}
	for i := range r.Final {
		if r.Final[i] != want || r.FinalWG[i] != want {
			r.Notes = append(r.Notes, fmt.Sprintf("node %s ends with %d listed and %d device peers, want %d",
				clusterNodeNames[i], r.Final[i], r.FinalWG[i], want))
		}
	}
}

// ---------------------------------------------------------------------------
// Output.

func printClusterReport(w io.Writer, r *clusterReport) {
	fmt.Fprintf(w, "\nCluster (issue 15): 3 exitd nodes on 3 etcd members (etcd %s); %d members through %s, %d per request (%d requests)\n",
		r.Etcd, r.Members, r.Through, r.Batch, r.Requests)
	fmt.Fprintf(w, "%s; load %s → %s; keys generated before the clock (%.1f s)\n", r.Machine, r.LoadStart, r.LoadEnd, r.KeygenS)
	if r.ListPollS > 0 {
		fmt.Fprintf(w, "member counts polled every %.2f s on every node during the bulk add (it costs the nodes CPU)\n", r.ListPollS)
	}
	fmt.Fprintln(w)
	secs := func(v float64) string {
		if v < 0 {
			return "never"
		}
		return fmt.Sprintf("%.2f s", v)
	}
	fmt.Fprintf(w, "bulk: first request → live on all three %s (all answered %s, listed by all %s); target ≤ %v: %s\n\n",
		secs(r.LiveS), secs(r.AckedS), secs(r.ListedS), clusterBulkTarget, okWord(r.Verdict.BulkOK))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tdevice has all\tlists all\tdevice peers\tapply txns\tRSS empty\tRSS after bulk\tCPU during bulk\tsync p50\tsync p99\tsync max\ttimeouts\t")
	for _, n := range r.Nodes {
		p50, p99, mx, to := "-", "-", "-", "-"
		if s := n.Sync; s != nil {
			p50, p99, mx, to = fmtMs(s.P50Ms, false), fmtMs(s.P99Ms, s.P99Timeout), fmtMs(s.MaxMs, s.MaxTimeout), fmt.Sprintf("%d/%d", s.Timeouts, s.Samples)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.0f MiB\t%.0f MiB\t%.1f s\t%s\t%s\t%s\t%s\t\n", n.Name, secs(n.DeviceS), secs(n.ListedS),
			n.DevicePeers, n.LogLines, n.RSSEmptyMiB, n.RSSBulkMiB, n.CPUBulkS, p50, p99, mx, to)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "etcd\tDB size\tin use\tdb file\tRSS\tCPU during bulk\t")
	for _, e := range r.EtcdMembers {
		fmt.Fprintf(tw, "%s\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%.0f MiB\t%.1f s\t\n", e.Name, e.DBBytes/(1<<20), e.InUse/(1<<20),
			float64(e.FileBytes)/(1<<20), e.RSSMiB, e.CPUBulkS)
	}
	tw.Flush()
	if r.Sync.Samples > 0 {
		fmt.Fprintf(w, "\nsingle changes through A: %d (on B and C: %d samples), from A's answer to the other node's device: p50 %s, p99 %s, max %s; target p99 ≤ %v: %s\n",
			len(r.Changes), r.Sync.Samples, fmtMs(r.Sync.P50Ms, false), fmtMs(r.Sync.P99Ms, r.Sync.P99Timeout),
			fmtMs(r.Sync.MaxMs, r.Sync.MaxTimeout), clusterP99Target, okWord(r.Verdict.SyncOK))
		var parts []string
		for _, k := range changeKinds {
			if s, ok := r.ByKind[k]; ok {
				parts = append(parts, fmt.Sprintf("%s p50 %s p99 %s", k, fmtMs(s.P50Ms, false), fmtMs(s.P99Ms, s.P99Timeout)))
			}
		}
		fmt.Fprintf(w, "  by kind: %s\n", strings.Join(parts, " | "))
		fmt.Fprintf(w, "  from the request instead: p50 %s, p99 %s, max %s; A's answer by kind:",
			fmtMs(r.SyncReq.P50Ms, false), fmtMs(r.SyncReq.P99Ms, r.SyncReq.P99Timeout), fmtMs(r.SyncReq.MaxMs, r.SyncReq.MaxTimeout))
		for _, k := range changeKinds {
			if s, ok := r.AckByKind[k]; ok {
				fmt.Fprintf(w, " %s p50 %s p99 %s", k, fmtMs(s.P50Ms, false), fmtMs(s.P99Ms, false))
			}
		}
		fmt.Fprintln(w)
	}
	if len(r.Final) > 0 {
		fmt.Fprintf(w, "end: members listed %v, device peers %v\n", r.Final, r.FinalWG)
	}
	verdict := "FAIL"
	if r.Verdict.Pass {
		verdict = "PASS"
	}
	fmt.Fprintf(w, "targets: bulk ≤ %v %s, sync p99 ≤ %v %s: %s\n", clusterBulkTarget, okWord(r.Verdict.BulkOK), clusterP99Target, okWord(r.Verdict.SyncOK), verdict)
	for _, n := range r.Nodes {
		if n.ErrorLines > 0 {
			fmt.Fprintf(w, "  note: node %s logged %d errors, the first: %s\n", n.Name, n.ErrorLines, n.FirstError)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if len(r.Profile) > 0 {
		fmt.Fprintf(w, "\nprofile of the bulk phase (perf, exitd + etcd):\n  %s\n", strings.Join(r.Profile, "\n  "))
	}
}

// fmtMs formats a latency; a timeout reads "timeout".
func fmtMs(v float64, timeout bool) string {
	if timeout {
		return "timeout"
	}
	return fmt.Sprintf("%.0f ms", v)
}
