package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"exitd/control"
)

// TestClusterStatusCommand: `cluster status` against a node serving
// GET /v1/cluster: the table with this node marked, the JSON object, and
// the store-down line.
func TestClusterStatusCommand(t *testing.T) {
	n, fb := newFullNode(t)
	now := time.Now()
	fb.set(func(b *fullBackend) {
		b.cluster = control.Cluster{Self: "exit-b", Prefix: "/exitd/eu", StoreUp: true, Nodes: []control.ClusterNode{
			{Name: "exit-a", Endpoint: "a.example.net:443", Version: "v1.4", MembersConnected: 2, MembersTotal: 7,
				RateIn: 3e6, RateOut: 40e6, FreeRate: 900e6, KernelOK: true, TableOK: true, Updated: now.Add(-4 * time.Second)},
			{Name: "exit-b", MembersTotal: 7, KernelOK: true, TableOK: false},
		}}
	})
	out := n.mustRun("cluster", "status")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 || lines[0] != "cluster /exitd/eu · 2 nodes · this node: exit-b" || lines[1] != "" {
		t.Fatalf("header:\n%s", out)
	}
	if got := strings.Fields(lines[2]); strings.Join(got, " ") != "NODE ENDPOINT VERSION MEMBERS DOWN UP FREE KERNEL TABLE REPORTED" {
		t.Fatalf("columns %q", got)
	}
	a := strings.Join(strings.Fields(lines[3]), " ")
	if !strings.HasPrefix(a, "exit-a a.example.net:443 v1.4 2/7 40.0 Mbit/s 3.0 Mbit/s 900.0 Mbit/s ok ok ") ||
		!strings.HasSuffix(a, " ago") || strings.Contains(a, "*") {
		t.Fatalf("exit-a row %q", a)
	}
	if b := strings.Join(strings.Fields(lines[4]), " "); b != "exit-b * - - 0/7 0 bit/s 0 bit/s 0 bit/s ok MISSING never" {
		t.Fatalf("exit-b row %q", b)
	}
	// Columns line up: each row's endpoint starts under ENDPOINT.
	col := strings.Index(lines[2], "ENDPOINT")
	if strings.Index(lines[3], "a.example.net") != col || lines[4][col] != '-' {
		t.Fatalf("columns do not line up:\n%s", out)
	}

	js := n.mustRun("--json", "cluster", "status")
	var cl control.Cluster
	if err := json.Unmarshal([]byte(js), &cl); err != nil || cl.Self != "exit-b" || len(cl.Nodes) != 2 || cl.Nodes[0].FreeRate != 900e6 || !cl.StoreUp {
		t.Fatalf("%v\n%s", err, js)
	}
	for _, k := range []string{`"self"`, `"prefix"`, `"store_up"`, `"free_rate"`, `"kernel_ok"`, `"table_ok"`, `"members_connected"`} {
		if !strings.Contains(js, k) {
			t.Errorf("JSON lacks %s:\n%s", k, js)
		}
	}

	fb.set(func(b *fullBackend) {
		b.cluster = control.Cluster{Self: "exit-b", Prefix: "/exitd/eu", Error: "context deadline exceeded", Nodes: []control.ClusterNode{}}
	})
	out = n.mustRun("cluster", "status")
	if out != "cluster /exitd/eu: etcd unreachable (context deadline exceeded); this node (exit-b) serves its cached members, changes are refused\n" {
		t.Fatalf("store down:\n%q", out)
	}
	js = n.mustRun("--json", "cluster", "status")
	if !strings.Contains(js, `"store_up": false`) || !strings.Contains(js, `"error": "context deadline exceeded"`) {
		t.Fatalf("store down, json:\n%s", js)
	}
}

// TestClusterStatusErrors: a single node answers conflict, a node built
// without clusters not found; both reach the operator with their reason.
func TestClusterStatusErrors(t *testing.T) {
	n, fb := newFullNode(t)
	fb.set(func(b *fullBackend) {
		b.clusterErr = fmt.Errorf("%w: this node is not in a cluster (no [cluster] endpoints)", control.ErrConflict)
	})
	if _, _, err := n.run("cluster", "status"); err == nil || !strings.Contains(err.Error(), "not in a cluster") || !strings.Contains(err.Error(), "(conflict)") {
		t.Fatalf("single node: %v", err)
	}
	plain := newTestNode(t, "10.99.0.0/16", "fd00:99::/64") // regBackend: no Cluster method
	if _, _, err := plain.run("cluster", "status"); err == nil || !strings.Contains(err.Error(), "not built with clusters") {
		t.Fatalf("no cluster API: %v", err)
	}
	if _, _, err := n.run("cluster", "status", "extra"); err == nil {
		t.Fatal("an argument was accepted")
	}
}

func TestWriteClusterEmpty(t *testing.T) {
	var b bytes.Buffer
	writeCluster(&b, control.Cluster{Self: "x", Prefix: "/p", StoreUp: true}, time.Now())
	if !strings.HasPrefix(b.String(), "cluster /p · 0 nodes · this node: x\n\nNODE") || strings.Count(b.String(), "\n") != 3 {
		t.Fatalf("%q", b.String())
	}
}

// topFixture is a top with a busy member, an idle one and connection
// figures.
func topFixture(now time.Time) control.Top {
	return control.Top{Sort: "rate", Load: control.Load{Configured: 3, Active: 1, Idle: 2, RateOut: 9.6e6, RateIn: 8e5,
		Scheduler: &control.SchedulerLoad{QueueBytesDown: 2048, QueueBytesUp: 1024, OverflowDrops: 2, CoDelDrops: 3}},
		Members: []control.TopMember{
			{Label: "alice", State: "active", RateOut: 9.6e6, RateIn: 8e5, QueueBytes: 3000, QueueDelayMs: 2.4, Drops: 7, DropRate: 0.5,
				Conns: 4321, ConnDrops: 12, LastHandshake: now.Add(-5 * time.Second)},
			{Label: "bob", State: "idle", QueueBytes: -1},
		}}
}

// TestWriteTopConnColumns: CONNS and CONN DROPS are right-aligned under
// their headings, after DROPS and before HANDSHAKE.
func TestWriteTopConnColumns(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	writeTop(&b, topFixture(now), now)
	lines := strings.Split(b.String(), "\n")
	if !strings.HasPrefix(lines[0], "exitd top · 12:00:00 · 1 active, 2 idle, 0 handshaking of 3 members · to members 9.6 Mbit/s, from members 800.0 kbit/s · queued 3.0 KiB · drops 5 · by rate") {
		t.Fatalf("head %q", lines[0])
	}
	head, alice, bob := lines[2], lines[3], lines[4]
	if !strings.Contains(head, "DROPS  CONNS  CONN DROPS  HANDSHAKE") {
		t.Fatalf("heading %q", head)
	}
	endOf := func(line, s string) int {
		i := strings.Index(line, s)
		if i < 0 {
			t.Fatalf("%q not in %q", s, line)
		}
		return i + len(s)
	}
	if endOf(alice, " 4321") != endOf(head, " CONNS") || endOf(alice, " 12 ") != endOf(head, " CONN DROPS")+1 {
		t.Fatalf("columns not aligned:\n%s\n%s", head, alice)
	}
	if f := strings.Fields(alice); strings.Join(f[len(f)-5:], " ") != "7 4321 12 5s ago" {
		t.Fatalf("alice %q", f)
	}
	if f := strings.Fields(bob); strings.Join(f, " ") != "bob idle 0 bit/s 0 bit/s 0 B 0.0 ms 0.0 0 0 0 never" {
		t.Fatalf("bob %q (negative queue must print 0 B)", f)
	}
	b.Reset()
	writeTop(&b, control.Top{Sort: "drops", Load: control.Load{Warnings: []string{"egress unpaced"}}}, now)
	if out := b.String(); strings.Contains(out, "queued") || !strings.Contains(out, "(no members)\nWARNING: egress unpaced\n") || !strings.Contains(out, "by drops") {
		t.Fatalf("empty top:\n%s", out)
	}
}

// TestTopCommandConns: the connection figures over the socket, as table
// and JSON (conn_drops left out when 0).
func TestTopCommandConns(t *testing.T) {
	n, fb := newFullNode(t)
	fb.set(func(b *fullBackend) { b.top = topFixture(time.Now()) })
	out := n.mustRun("top", "--once", "--sort", "queue")
	if !strings.Contains(out, "CONN DROPS") || !strings.Contains(out, "by queue") {
		t.Fatalf("top:\n%s", out)
	}
	var alice []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "alice") {
			alice = strings.Fields(l)
		}
	}
	if len(alice) < 5 || alice[len(alice)-4] != "4321" || alice[len(alice)-3] != "12" {
		t.Fatalf("alice row %q", alice)
	}
	js := n.mustRun("--json", "top", "--once", "-n", "2")
	var top control.Top
	if err := json.Unmarshal([]byte(js), &top); err != nil || len(top.Members) != 2 || top.Members[0].Conns != 4321 || top.Members[0].ConnDrops != 12 {
		t.Fatalf("%v\n%s", err, js)
	}
	if strings.Count(js, `"conn_drops"`) != 1 || strings.Count(js, `"conns"`) != 2 {
		t.Fatalf("conns for both, conn_drops only where non-zero:\n%s", js)
	}
	if _, _, err := n.run("top", "--once", "-n", "1001"); err == nil {
		t.Fatal("-n 1001 accepted")
	}
}
