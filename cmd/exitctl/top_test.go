package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/control"
	"exitd/report"
)

// obsBackend serves status and the observability endpoints; the member
// methods of the embedded nil Backend are not used by these commands.
type obsBackend struct {
	control.Backend
	samples []report.Sample
	noLoad  bool
}

var obsStarted = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func (b *obsBackend) Status(context.Context) (control.Status, error) {
	return control.Status{Version: "v9", Started: obsStarted, PublicKey: "PUBKEY", Endpoint: "198.18.0.1:443",
		ListenPort: 443, Tunnel: "exit0", MembersTotal: 3, MembersConnected: 2, RxBytes: 2048, TxBytes: 1 << 20,
		NATPresent: true, Drops: map[string]uint64{"leak_drop": 4}, Warnings: []string{"public_endpoint is fine"},
		DNS: &control.ServiceStatus{Listen: []string{"10.99.0.1:53"}, Summary: "12 queries, 50% cache hits"}}, nil
}

func (b *obsBackend) Load(context.Context) (control.Load, error) {
	if b.noLoad {
		return control.Load{}, &control.APIError{Code: control.CodeNotFound, Message: "no"}
	}
	return control.Load{WindowMs: 2000, RateOut: 10e6, RateIn: 1e6, Configured: 3, Active: 1, Idle: 1, Handshaking: 1,
		Scheduler: &control.SchedulerLoad{Discipline: "srr", EgressRate: 50e6, QueueBytesDown: 3000, OverflowDrops: 2, CoDelDrops: 5, CEMarks: 7, SojournP99Ms: 4.1},
		Conntrack: 50, ConntrackMax: 1000, KernelKeys: map[string]int{"ok": 30, "drift": 1},
		KernelDrift: []string{"net.core.rmem_max=212992 (want 33554432, drift)"}, MetricsURL: "http://127.0.0.1:9586/metrics",
		Warnings: []string{"conntrack table 95% full"}}, nil
}

func (b *obsBackend) Top(ctx context.Context, n int, sort string) (control.Top, error) {
	l, _ := b.Load(ctx)
	ms := []control.TopMember{
		{Label: "alice", State: "active", RateOut: 9.6e6, RateIn: 8e5, QueueBytes: 3000, QueueDelayMs: 2.4, Drops: 7, DropRate: 0.5, LastHandshake: obsStarted},
		{Label: "bob", State: "idle"},
	}
	return control.Top{Load: l, Sort: sort, Members: ms[:min(n, len(ms))]}, nil
}

func (b *obsBackend) Samples(_ context.Context, since time.Time) ([]report.Sample, error) {
	var out []report.Sample
	for _, s := range b.samples {
		if s.TimeMs >= since.UnixMilli() {
			out = append(out, s)
		}
	}
	return out, nil
}

func serveObs(t *testing.T, b *obsBackend) func(args ...string) (string, string, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "xc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	s, err := control.Listen(control.ServerOptions{Path: sock, Backend: b, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		cmd := newRootCmd(&out, &errOut, func(string) string { return "" })
		cmd.SetArgs(append([]string{"--socket", sock}, args...))
		err := cmd.ExecuteContext(context.Background())
		return out.String(), errOut.String(), err
	}
}

func TestStatusOneScreen(t *testing.T) {
	run := serveObs(t, &obsBackend{})
	out, _, err := run("status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"v9, up ", "2 connected / 3 configured (active 1, idle 1, handshaking 1)",
		"throughput      to members 10.0 Mbit/s, from members 1.0 Mbit/s (last 2s)",
		"srr, egress 50.0 Mbit/s", "p99 delay 4.1 ms", "drops 7 (overflow 2, codel 5), CE marks 7",
		"nftables        installed; drops: leak_drop 4", "conntrack       50 / 1000 (5.0%)",
		"kernel profile  drift 1, ok 30", "drift: net.core.rmem_max=212992", "metrics         http://127.0.0.1:9586/metrics",
		"WARNING: public_endpoint is fine", "WARNING: conntrack table 95% full",
		"dns             on 10.99.0.1:53; 12 queries, 50% cache hits", "socks           off",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines > 24 {
		t.Errorf("status is %d lines; it must fit one screen", lines)
	}
}

func TestStatusJSONKeepsFieldsAndAddsLoad(t *testing.T) {
	run := serveObs(t, &obsBackend{})
	out, _, err := run("--json", "status")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Drops map[string]uint64 `json:"drops"`
		Load  *control.Load     `json:"load"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Drops["leak_drop"] != 4 || v.Load == nil || v.Load.RateOut != 10e6 {
		t.Fatalf("%v\n%s", err, out)
	}
	// A node without the load endpoint: status still works, without load.
	run = serveObs(t, &obsBackend{noLoad: true})
	out, _, err = run("--json", "status")
	if err != nil || strings.Contains(out, `"load"`) {
		t.Fatalf("%v\n%s", err, out)
	}
	out, _, err = run("status")
	if err != nil || strings.Contains(out, "throughput") || !strings.Contains(out, "2 connected / 3 configured\n") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestTopOnce(t *testing.T) {
	run := serveObs(t, &obsBackend{})
	out, _, err := run("top", "--once")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, clearScreen) {
		t.Fatal("--once must not clear the screen")
	}
	for _, want := range []string{"1 active, 1 idle, 1 handshaking of 3 members", "to members 10.0 Mbit/s", "by rate",
		"MEMBER", "DELAY", "alice", "9.6 Mbit/s", "2.4 ms", "bob", "never", "WARNING: conntrack"} {
		if !strings.Contains(out, want) {
			t.Errorf("top lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run("top", "--once", "--json", "-n", "1", "--sort", "drops")
	if err != nil {
		t.Fatal(err)
	}
	var top control.Top
	if err := json.Unmarshal([]byte(out), &top); err != nil || len(top.Members) != 1 || top.Sort != "drops" || top.Members[0].Drops != 7 {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestTopFlagErrors(t *testing.T) {
	run := serveObs(t, &obsBackend{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"top", "--once", "-n", "0"}, "n must be"},
		{[]string{"top", "--once", "--sort", "name"}, "sort must be"},
		{[]string{"top", "--interval", "10ms"}, "at least 200ms"},
	} {
		if _, _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestTopRefreshesInPlace(t *testing.T) {
	b := &obsBackend{}
	dir, _ := os.MkdirTemp("", "xc")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "c.sock")
	s, err := control.Listen(control.ServerOptions{Path: sock, Backend: b, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ticks := make(chan time.Time, 2)
	ticks <- time.Now()
	ticks <- time.Now()
	close(ticks)
	var out bytes.Buffer
	err = runTop(context.Background(), &flags{socket: sock}, &topFlags{n: 5, sort: "rate"}, &out, ticks, func() time.Time { return obsStarted })
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), clearScreen); n != 3 {
		t.Fatalf("%d frames, want 3 (start + 2 ticks)", n)
	}
}

func TestReportCommand(t *testing.T) {
	now := time.Now()
	var ss []report.Sample
	for i := range 40 {
		ss = append(ss, report.Sample{TimeMs: now.Add(time.Duration(i-40) * time.Second).UnixMilli(), IntervalMs: 1000,
			BytesOut: 1e6, BytesIn: 2e5, Active: 2, Configured: 3, CPUTotalPm: 100, MemTotal: 1 << 30, MemAvailable: 1 << 29, ConntrackMax: 100, MemberSlots: 10})
	}
	ss[0].IntervalMs = 0
	run := serveObs(t, &obsBackend{samples: ss})
	dir := filepath.Join(t.TempDir(), "r")
	out, _, err := run("report", "--since", "20s", "--out", dir, "--tz", "UTC")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "11 figures") || !strings.Contains(out, "index.html") {
		t.Fatalf("%s", out)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil || !strings.Contains(string(page), "exit node 198.18.0.1:443") || !strings.Contains(string(page), "exitd v9") {
		t.Fatalf("%v\n%.300s", err, page)
	}
	csv, _ := os.ReadFile(filepath.Join(dir, "samples.csv"))
	if n := strings.Count(string(csv), "\n"); n < 19 || n > 22 {
		t.Fatalf("--since 20s kept %d rows", n-1)
	}
	// --from reads a ring file without the node.
	ringPath := filepath.Join(t.TempDir(), "load.ring")
	r, err := report.OpenRing(ringPath, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		r.Append(s)
	}
	r.Close()
	dir2 := filepath.Join(t.TempDir(), "r2")
	out, _, err = run("--json", "report", "--since", "0", "--from", ringPath, "--out", dir2)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Samples int      `json:"samples"`
		Figures []string `json:"figures"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Samples != 40 || len(res.Figures) != 11 {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"report"}, "--out DIR is required"},
		{[]string{"report", "--out", dir, "--tz", "Mars/Olympus"}, "--tz"},
		{[]string{"report", "--out", dir, "--from", "/nonexistent"}, "no such file"},
	} {
		if _, _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestNodeName(t *testing.T) {
	if got := nodeName("", "ABCDEFGHIJKL"); got != "exit node ABCDEFGH…" {
		t.Fatal(got)
	}
	if got := nodeName("1.2.3.4:443", "K"); got != "exit node 1.2.3.4:443" {
		t.Fatal(got)
	}
}
