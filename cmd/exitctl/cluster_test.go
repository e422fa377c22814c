package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"exitd/control"
)

func TestWriteCluster(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	writeCluster(&b, control.Cluster{Self: "exit-a", Prefix: "/exitd/eu", StoreUp: true, Nodes: []control.ClusterNode{
		{Name: "exit-a", Endpoint: "vpn.example.net:443", Version: "v1", MembersConnected: 3, MembersTotal: 10,
			RateOut: 50e6, RateIn: 5e6, FreeRate: 40e6, KernelOK: true, TableOK: true, Updated: now.Add(-3 * time.Second)},
		{Name: "exit-b", MembersTotal: 10, KernelOK: false, TableOK: false, Updated: now.Add(-4 * time.Second)},
	}}, now)
	out := b.String()
	for _, want := range []string{"cluster /exitd/eu · 2 nodes · this node: exit-a", "exit-a *", "3/10", "50.0 Mbit/s", "40.0 Mbit/s", "DRIFT", "MISSING"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	b.Reset()
	writeCluster(&b, control.Cluster{Self: "exit-a", Prefix: "/exitd/eu", Error: "etcd at 10.0.0.5:2379 unreachable"}, now)
	if !strings.Contains(b.String(), "etcd unreachable (etcd at 10.0.0.5:2379 unreachable)") || !strings.Contains(b.String(), "changes are refused") {
		t.Errorf("store down:\n%s", b.String())
	}
}
