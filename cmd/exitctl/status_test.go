package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/control"
	"exitd/report"
)

// fullBackend is regBackend (the member API over a real registry) with a
// status, load, top and cluster the test sets: a node with every part of
// the API, as exitd's backend is.
type fullBackend struct {
	*regBackend

	mu         sync.Mutex
	status     control.Status
	load       control.Load
	top        control.Top
	cluster    control.Cluster
	clusterErr error
}

var (
	_ control.ClusterBackend = (*fullBackend)(nil)
	_ control.MetricsBackend = (*fullBackend)(nil)
)

func (b *fullBackend) Status(context.Context) (control.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.status
	s.MembersTotal = b.reg.Len()
	return s, nil
}

func (b *fullBackend) Load(context.Context) (control.Load, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.load, nil
}

func (b *fullBackend) Top(_ context.Context, n int, sort string) (control.Top, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.top
	t.Sort = sort
	t.Members = t.Members[:min(n, len(t.Members))]
	return t, nil
}

func (b *fullBackend) Samples(context.Context, time.Time) ([]report.Sample, error) { return nil, nil }

func (b *fullBackend) Cluster(context.Context) (control.Cluster, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cluster, b.clusterErr
}

func (b *fullBackend) set(fn func(b *fullBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(b)
}

// newFullNode serves a fullBackend over a fresh registry on a control
// socket; exitctl runs against it in-process.
func newFullNode(t *testing.T) (*testNode, *fullBackend) {
	t.Helper()
	base := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	fb := &fullBackend{regBackend: base.b}
	dir, err := os.MkdirTemp("", "xf") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	s, err := control.Listen(control.ServerOptions{Path: sock, Backend: fb, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return &testNode{t: t, b: base.b, socket: sock}, fb
}

var statusNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// baseStatus is a status with nothing optional in it.
func baseStatus() control.Status {
	return control.Status{Version: "v2", Started: statusNow.Add(-90*time.Minute - 1500*time.Millisecond), PublicKey: "PUB",
		ListenPort: 443, Tunnel: "exit0", NATPresent: true, NATMode: "inet"}
}

func statusText(s control.Status, l *control.Load) string {
	var b bytes.Buffer
	writeStatus(&b, s, l, statusNow)
	return b.String()
}

// lines returns the output's lines that start with prefix.
func linesWith(out, prefix string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			ls = append(ls, l)
		}
	}
	return ls
}

func TestWriteStatusConnectionQuota(t *testing.T) {
	s := baseStatus()
	if out := statusText(s, nil); strings.Contains(out, "connection quota") {
		t.Fatalf("a node without conntrack figures shows a quota line:\n%s", out)
	}
	s.Conntrack = &control.ConntrackStatus{Members: 1234, Quota: 20000}
	out := statusText(s, nil)
	if !strings.Contains(out, "connection quota  20000 per member and family; 1234 tracked from members; 0 members dropped at quota or rate\n") {
		t.Fatalf("quota line:\n%s", out)
	}
	s.Conntrack.Quota = 0
	for i := range 7 {
		s.Conntrack.AtLimit = append(s.Conntrack.AtLimit, control.MemberConns{Label: fmt.Sprintf("m%d", i), Conns: 100 - i, QuotaDrops: uint64(10 * i), RateDrops: uint64(i)})
	}
	out = statusText(s, nil)
	if !strings.Contains(out, "connection quota  off; 1234 tracked from members; 7 members dropped at quota or rate\n") {
		t.Fatalf("quota off:\n%s", out)
	}
	detail := linesWith(out, "                  ")
	want := []string{
		"                  m0: 100 tracked, 0 dropped at quota, 0 at rate",
		"                  m1: 99 tracked, 10 dropped at quota, 1 at rate",
		"                  m2: 98 tracked, 20 dropped at quota, 2 at rate",
		"                  m3: 97 tracked, 30 dropped at quota, 3 at rate",
		"                  m4: 96 tracked, 40 dropped at quota, 4 at rate",
		"                  ... 2 more (exitctl status --json)",
	}
	if strings.Join(detail, "\n") != strings.Join(want, "\n") {
		t.Fatalf("members at their limit:\n%s\nwant:\n%s", strings.Join(detail, "\n"), strings.Join(want, "\n"))
	}
	s.Conntrack.AtLimit = s.Conntrack.AtLimit[:5]
	if out := statusText(s, nil); strings.Contains(out, "more (exitctl status --json)") || !strings.Contains(out, "m4: 96 tracked") {
		t.Fatalf("five members are shown whole:\n%s", out)
	}
}

func TestWriteStatusServicesAndTable(t *testing.T) {
	s := baseStatus()
	out := statusText(s, nil)
	for _, want := range []string{"dns          off", "socks        off", "portforward  off", "nftables     installed, mode inet; drops: none",
		"endpoint     - (UDP 443, tunnel exit0)", "version      v2, up 1h30m1s"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	s.PortForward = &control.ServiceStatus{Listen: []string{"10.99.0.1:5351"}, Summary: "2 mappings; requests: 3 map, 1 address, 4 answered (1 refused), 0 from outside dropped"}
	s.SOCKS = &control.ServiceStatus{Listen: []string{"10.99.0.1:1080", "[fd00:99::1]:1080"}, Summary: "1 sessions now"}
	s.NATPresent, s.NATMode = false, "split (ip + ip6 nat tables)"
	s.Drops = map[string]uint64{"spoof_drop": 2, "leak_drop": 1}
	out = statusText(s, nil)
	for _, want := range []string{
		"portforward  on 10.99.0.1:5351; 2 mappings; requests: 3 map, 1 address, 4 answered (1 refused), 0 from outside dropped",
		"socks        on 10.99.0.1:1080, [fd00:99::1]:1080; 1 sessions now",
		"nftables     MISSING, mode split (ip + ip6 nat tables); drops: leak_drop 1, spoof_drop 2",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	s.NATMode = ""
	if out := statusText(s, nil); !strings.Contains(out, "nftables     MISSING; drops:") {
		t.Errorf("older node without a mode:\n%s", out)
	}
}

func TestWriteStatusLoadDetails(t *testing.T) {
	s := baseStatus()
	s.Warnings = []string{"cluster: etcd (10.0.0.5:2379) is unreachable: members keep working"}
	l := &control.Load{WindowMs: 1500, Configured: 2,
		Scheduler:   &control.SchedulerLoad{Discipline: "fifo", IngressRate: 20e6, QueueBytesDown: -5, QueueBytesUp: 2048},
		UDPRcvbuf:   5,
		LinkDrops:   map[string]uint64{"wan tx": 3, "tun rx": 0},
		KernelDrift: []string{"a=1 (want 2, drift)", "b=1 (want 2, drift)", "c=1 (want 2, drift)", "d=1 (want 2, drift)", "e=1 (want 2, drift)"},
		KernelKeys:  map[string]int{"ok": 20, "drift": 5}, KernelCritical: 2,
		Warnings: []string{"conntrack table 95% full"},
	}
	out := statusText(s, l)
	for _, want := range []string{
		"scheduler    fifo, unpaced, ingress 20.0 Mbit/s; queued 0 B down / 2.0 KiB up; p99 delay 0.0 ms",
		"host drops   UDP receive buffer 5; tun rx 0, wan tx 3",
		"kernel profile  drift 5, ok 20; 2 SAFETY-CRITICAL",
		"drift: c=1 (want 2, drift)",
		"... 2 more (exitd tune check)",
		"throughput   to members 0 bit/s, from members 0 bit/s (last 1.5s)",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "d=1") || len(linesWith(out, "conntrack ")) > 0 || len(linesWith(out, "metrics ")) > 0 {
		t.Errorf("shows more drift than three, or conntrack/metrics lines without figures:\n%s", out)
	}
	// Status warnings first, then the load's.
	ws := linesWith(out, "WARNING: ")
	if len(ws) != 2 || !strings.HasPrefix(ws[0], "WARNING: cluster: etcd") || ws[1] != "WARNING: conntrack table 95% full" {
		t.Fatalf("warnings %q", ws)
	}
	l.KernelKeys, l.KernelDrift, l.KernelCritical, l.UDPRcvbuf, l.LinkDrops = nil, nil, 0, 0, map[string]uint64{"wan tx": 0}
	out = statusText(s, l)
	if !strings.Contains(out, "kernel profile  not checked yet") || strings.Contains(out, "host drops") {
		t.Fatalf("no kernel check yet, no host drops:\n%s", out)
	}
}

// TestStatusCommandNewLines: against a node with every part of the API:
// the connection quota, port forwarding and the cluster warning, as text
// and as JSON.
func TestStatusCommandNewLines(t *testing.T) {
	n, fb := newFullNode(t)
	n.mustRun("member", "add", "--label", "alice")
	fb.set(func(b *fullBackend) {
		b.status = baseStatus()
		b.status.Started = time.Now().Add(-time.Hour)
		b.status.Conntrack = &control.ConntrackStatus{Members: 42, Quota: 65536, AtLimit: []control.MemberConns{{Label: "alice", Conns: 40, QuotaDrops: 3}}}
		b.status.PortForward = &control.ServiceStatus{Listen: []string{"10.99.0.1:5351"}, Summary: "0 mappings"}
		b.status.Warnings = []string{"cluster: etcd (10.0.0.5:2379) is unreachable"}
		b.load = control.Load{Configured: 1, Conntrack: 100, ConntrackMax: 1000}
	})
	out := n.mustRun("status")
	for _, want := range []string{
		"connection quota  65536 per member and family; 42 tracked from members; 1 members dropped at quota or rate",
		"alice: 40 tracked, 3 dropped at quota, 0 at rate",
		"on 10.99.0.1:5351; 0 mappings",
		"members           0 connected / 1 configured (active 0, idle 0, handshaking 0)",
		"conntrack         100 / 1000 (10.0%)",
		"WARNING: cluster: etcd (10.0.0.5:2379) is unreachable",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	js := n.mustRun("--json", "status")
	var v struct {
		MembersTotal int                      `json:"members_total"`
		Conntrack    *control.ConntrackStatus `json:"conntrack"`
		PortForward  *control.ServiceStatus   `json:"portforward"`
		Warnings     []string                 `json:"warnings"`
		Load         *control.Load            `json:"load"`
	}
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatal(err)
	}
	if v.MembersTotal != 1 || v.Conntrack == nil || v.Conntrack.Quota != 65536 || len(v.Conntrack.AtLimit) != 1 ||
		v.Conntrack.AtLimit[0].QuotaDrops != 3 || v.PortForward == nil || v.PortForward.Listen[0] != "10.99.0.1:5351" ||
		len(v.Warnings) != 1 || v.Load == nil || v.Load.ConntrackMax != 1000 {
		t.Fatalf("json:\n%s", js)
	}
	if !strings.HasSuffix(js, "}\n") || !strings.Contains(js, "\n  \"") {
		t.Fatalf("json not indented for reading:\n%s", js)
	}
}

func TestWriteStatusJSONWithoutLoad(t *testing.T) {
	var b bytes.Buffer
	s := baseStatus()
	s.Conntrack = &control.ConntrackStatus{Quota: 7}
	if err := writeStatusJSON(&b, s, nil); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["load"]; ok {
		t.Fatal("load without load figures")
	}
	if ct, ok := m["conntrack"].(map[string]any); !ok || ct["quota"] != 7.0 {
		t.Fatalf("conntrack %v", m["conntrack"])
	}
	if m["version"] != "v2" || m["nat_mode"] != "inet" {
		t.Fatalf("status fields lost: %v", m)
	}
}

func TestCountHelpers(t *testing.T) {
	if got := joinCounts(nil); got != "none" {
		t.Errorf("joinCounts(nil) = %q", got)
	}
	if got := joinCounts(map[string]uint64{"b": 2, "a": 1, "c": 0}); got != "a 1, b 2, c 0" {
		t.Errorf("joinCounts = %q", got)
	}
	if got := intCounts(map[string]int{"ok": 3, "bad": -4}); got["ok"] != 3 || got["bad"] != 0 || len(got) != 2 {
		t.Errorf("intCounts = %v", got)
	}
	if sum(nil) != 0 || sum(map[string]uint64{"a": 3, "b": 4}) != 7 {
		t.Error("sum")
	}
	if rateHuman(950) != "950 bit/s" || rateHuman(12.5e6) != "12.5 Mbit/s" {
		t.Errorf("rateHuman %q %q", rateHuman(950), rateHuman(12.5e6))
	}
}

// TestSocketFlagAndEnv: --socket wins over EXITCTL_SOCKET, which wins
// over the default; a missing socket says what to do.
func TestSocketFlagAndEnv(t *testing.T) {
	var out, errOut bytes.Buffer
	root := newRootCmd(&out, &errOut, func(string) string { return "" })
	if f := root.PersistentFlags().Lookup("socket"); f == nil || f.DefValue != defaultSocket || defaultSocket != "/run/exitd/control.sock" {
		t.Fatalf("default socket %v", f)
	}
	n, fb := newFullNode(t)
	fb.set(func(b *fullBackend) { b.status = baseStatus() })
	root = newRootCmd(&out, &errOut, func(k string) string {
		if k == "EXITCTL_SOCKET" {
			return n.socket
		}
		return ""
	})
	root.SetArgs([]string{"--json", "status"})
	if err := root.ExecuteContext(context.Background()); err != nil || !strings.Contains(out.String(), `"version": "v2"`) {
		t.Fatalf("EXITCTL_SOCKET: %v\n%s", err, out.String())
	}
	missing := filepath.Join(t.TempDir(), "none.sock")
	root.SetArgs([]string{"--socket", missing, "status"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no control socket at "+missing) || !strings.Contains(err.Error(), "EXITCTL_SOCKET") {
		t.Fatalf("missing socket: %v", err)
	}
}
