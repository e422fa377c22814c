package observability

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/control"
	"exitd/metrics"
	"exitd/report"
)

func TestMemberSlots(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name   string
		p4, p6 netip.Prefix
		want   int
	}{
		{"/16 and /64", p("10.99.0.0/16"), p("fd00:99::/64"), 65533},
		{"/24 only", p("10.0.0.0/24"), netip.Prefix{}, 253},
		{"/112 v6 only", netip.Prefix{}, p("fd00::/112"), 65534},
		{"/30", p("10.0.0.0/30"), netip.Prefix{}, 1},
		{"none", netip.Prefix{}, netip.Prefix{}, 0},
	}
	for _, tc := range tests {
		if got := MemberSlots(tc.p4, tc.p6); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestLoadWarnings(t *testing.T) {
	tests := []struct {
		name   string
		l      control.Load
		last   report.Sample
		srvErr error
		want   []string
	}{
		{"quiet", control.Load{Conntrack: 10, ConntrackMax: 100}, report.Sample{}, nil, nil},
		{"conntrack 95%", control.Load{Conntrack: 95, ConntrackMax: 100}, report.Sample{}, nil, []string{"conntrack table 95% full", "nf_conntrack_max"}},
		{"udp overruns", control.Load{}, report.Sample{IntervalMs: 15000, UDPRcvErrors: 7}, nil, []string{"UDP receive buffer overruns: 7 packets lost in the last 15s", "rmem_max"}},
		{"link drops", control.Load{}, report.Sample{IntervalMs: 15000, LinkDrops: 3}, nil, []string{"dropped 3 packets", "ethtool"}},
		{"queue full", control.Load{Scheduler: &control.SchedulerLoad{LimitBytes: 100, QueueBytesDown: 95}}, report.Sample{}, nil, []string{"near its limit"}},
		{"metrics not served", control.Load{}, report.Sample{}, fmt.Errorf("address in use"), []string{"not served (address in use)", "[metrics] listen"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(loadWarnings(&tc.l, &tc.last, tc.srvErr), "\n")
			if len(tc.want) == 0 && got != "" {
				t.Fatalf("unexpected warnings: %s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("warnings %q lack %q", got, w)
				}
			}
		})
	}
}

// fakes: one member with fixed counters, a scheduler, a table with one
// leak drop, a kernel with drift; no DNS, no SOCKS.
type fakeMembers struct{ tx uint64 }

func (f *fakeMembers) ForEachMember(fn func(*metrics.MemberCounters)) error {
	fn(&metrics.MemberCounters{ID: 2, Label: "alice", PublicKey: "K", TxBytes: f.tx, LastHandshake: time.Unix(1000, 0)})
	return nil
}

type fakeSched struct{}

func (fakeSched) SchedStats() (metrics.SchedStats, bool) {
	return metrics.SchedStats{Discipline: "srr", EgressRate: 95e6}, true
}

type fakeNAT struct{}

func (fakeNAT) NATDrops() (map[string]metrics.NATCounter, error) {
	return map[string]metrics.NATCounter{"leak": {Packets: 4}}, nil
}
func (fakeNAT) NATPresent() (bool, error) { return true, nil }
func (fakeNAT) NATRestorations() uint64   { return 0 }

type fakeKernel struct{}

func (fakeKernel) KernelProfile() (metrics.KernelProfile, bool) {
	return metrics.KernelProfile{Keys: map[string]int{"ok": 3, "drift": 1}, CriticalFailures: 1, Drift: []string{"a=0 (want 1, drift)"}}, true
}

type off struct{}

func (off) DNSStats() (metrics.DNSStats, bool)     { return metrics.DNSStats{}, false }
func (off) SOCKSStats() (metrics.SOCKSStats, bool) { return metrics.SOCKSStats{}, false }

func testObs(t *testing.T, listen string) (*Observability, *fakeMembers, *time.Time) {
	t.Helper()
	m := &fakeMembers{}
	now := time.Unix(1000, 0)
	ob, err := Open(Sources{Members: m, Sched: fakeSched{}, NAT: fakeNAT{}, Kernel: fakeKernel{}, DNS: off{}, SOCKS: off{}},
		Options{Now: func() time.Time { return now }, StateDir: t.TempDir(), Listen: listen, Every: time.Second, MemberSlots: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ob.Close)
	return ob, m, &now
}

func TestLoadTopSamples(t *testing.T) {
	ob, m, now := testObs(t, "off")
	ob.Sample(*now)
	*now = now.Add(2 * time.Second)
	m.tx = 2_000_000
	s := ob.Sample(*now)
	if s.BytesOut != 2_000_000 || s.MemberSlots != 10 || s.Configured != 1 {
		t.Fatalf("sample %+v", s)
	}
	l, err := ob.Load()
	if err != nil {
		t.Fatal(err)
	}
	if l.RateOut != 8e6 || l.Scheduler == nil || l.Scheduler.EgressRate != 95e6 || l.NATDrops["leak"] != 4 ||
		l.KernelCritical != 1 || len(l.KernelDrift) != 1 || l.MetricsURL != "" {
		t.Fatalf("load %+v", l)
	}
	top, err := ob.Top(5, control.SortRate)
	if err != nil || len(top.Members) != 1 || top.Members[0].RateOut != 8e6 {
		t.Fatalf("top %+v %v", top, err)
	}
	var apiErr *control.APIError
	if _, err := ob.Top(5, "label"); !errors.As(err, &apiErr) {
		t.Fatalf("unknown sort: %v", err)
	}
	if ss := ob.Samples(time.Time{}); len(ss) != 2 {
		t.Fatalf("%d samples", len(ss))
	}
}

func TestOpenServesAndCloses(t *testing.T) {
	ob, _, now := testObs(t, "127.0.0.1:0")
	if !strings.HasPrefix(ob.URL(), "http://127.0.0.1:") {
		t.Fatalf("url %q", ob.URL())
	}
	ob.Sample(*now)
	dir := ob.opts.StateDir
	ob.Close()
	ob.Close() // idempotent enough for deferred use
	if got, err := report.ReadRingFile(filepath.Join(dir, RingFile)); err != nil || len(got) != 1 {
		t.Fatalf("ring after close: %v %v", got, err)
	}
	if _, err := Open(Sources{Members: &fakeMembers{}, Sched: fakeSched{}, NAT: fakeNAT{}, Kernel: fakeKernel{}, DNS: off{}, SOCKS: off{}},
		Options{StateDir: t.TempDir(), Listen: "256.0.0.1:1"}); err == nil {
		t.Fatal("an explicit address that cannot be bound was accepted")
	}
}
