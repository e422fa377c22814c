package sched

import (
	"strings"
	"testing"
	"time"
)

func TestConfigNormalize(t *testing.T) {
	p, err := Config{}.normalize(1420)
	if err != nil {
		t.Fatal(err)
	}
	if p.fifo || p.quantum != 1420+TunnelOverhead || p.target != int64(5*time.Millisecond) ||
		p.interval != int64(100*time.Millisecond) || !p.ecn || p.downLimit != (limits{4_000_000, 10240}) ||
		p.inflightLimit != 1<<20 || p.burst != int64(time.Millisecond) || p.egressRate != 0 {
		t.Fatalf("defaults: %+v", p)
	}
	// 4 × rate × 100 ms beats 4 MB at 10 Gbit/s.
	p, _ = Config{EgressRate: 10_000_000_000}.normalize(1420)
	if p.downLimit.bytes != 500_000_000 || p.upLimit.bytes != 4_000_000 {
		t.Fatalf("rate-derived limits down %d up %d", p.downLimit.bytes, p.upLimit.bytes)
	}
	// Everything is clamped, nothing rejected.
	p, err = Config{
		Discipline: " FIFO ", EgressRate: 1, IngressRate: 1 << 62, LimitBytes: 1 << 40,
		LimitPackets: 3, Quantum: 1 << 30, CoDelTarget: time.Hour, CoDelInterval: time.Nanosecond,
		InflightBytes: 1, InflightExpire: time.Hour, Burst: time.Hour,
	}.normalize(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if !p.fifo || p.egressRate != minRate || p.ingressRate != maxRate || p.downLimit.bytes != maxLimitBytes ||
		p.downLimit.packets != minLimitPackets || p.quantum != maxQuantum || p.interval != int64(minInterval) ||
		p.target > p.interval || p.inflightLimit != minInflight || p.expire != int64(maxExpire) ||
		p.burst != int64(maxBurst) || p.mtu != 65535 {
		t.Fatalf("clamped: %+v", p)
	}
	if _, err := (Config{Discipline: "wfq"}).normalize(1420); err == nil || !strings.Contains(err.Error(), `unknown discipline "wfq"`) {
		t.Fatalf("bad discipline: %v", err)
	}
	for _, w := range []struct{ in, want int }{{-3, 1}, {0, 1}, {5, 5}, {1000, 64}} {
		if got := clampWeight(w.in); int(got) != w.want {
			t.Fatalf("clampWeight(%d) = %d, want %d", w.in, got, w.want)
		}
	}
}
