package report

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	base := Reading{At: t0, BytesIn: 1000, BytesOut: 2000, WANRx: 10, WANTx: 20, OverflowDrops: 5, CoDelDrops: 6,
		CEMarks: 7, NATDrops: 8, LeakDrops: 1, LinkDrops: 2, UDPRcvErrors: 3, CPUBusy: 100, CPUTotal: 1000, ExitdCPU: 50}
	tests := []struct {
		name  string
		prev  *Reading
		cur   Reading
		check func(t *testing.T, s Sample)
	}{
		{"no previous reading: gauges only", nil, Reading{At: t0, BytesIn: 99, Active: 4, MemTotal: 8},
			func(t *testing.T, s Sample) {
				if s.IntervalMs != 0 || s.BytesIn != 0 || s.Active != 4 || s.MemTotal != 8 || s.TimeMs != t0.UnixMilli() {
					t.Fatalf("%+v", s)
				}
			}},
		{"zero duration: no interval", &base, Reading{At: t0, BytesIn: 5000, Idle: 2},
			func(t *testing.T, s Sample) {
				if s.IntervalMs != 0 || s.BytesIn != 0 || s.Idle != 2 {
					t.Fatalf("%+v", s)
				}
			}},
		{"clock stepped back: no interval", &base, Reading{At: t0.Add(-time.Minute), BytesIn: 5000},
			func(t *testing.T, s Sample) {
				if s.IntervalMs != 0 || s.BytesIn != 0 || s.TimeMs != t0.Add(-time.Minute).UnixMilli() {
					t.Fatalf("%+v", s)
				}
			}},
		{"plain deltas", &base, Reading{At: t0.Add(15 * time.Second), BytesIn: 1500, BytesOut: 2600, WANRx: 11, WANTx: 22,
			OverflowDrops: 6, CoDelDrops: 8, CEMarks: 10, NATDrops: 12, LeakDrops: 6, LinkDrops: 8, UDPRcvErrors: 10,
			CPUBusy: 600, CPUTotal: 2000, ExitdCPU: 150},
			func(t *testing.T, s Sample) {
				want := Sample{TimeMs: t0.Add(15 * time.Second).UnixMilli(), IntervalMs: 15000, BytesIn: 500, BytesOut: 600,
					WANRx: 1, WANTx: 2, OverflowDrops: 1, CoDelDrops: 2, CEMarks: 3, NATDrops: 4, LeakDrops: 5, LinkDrops: 6,
					UDPRcvErrors: 7, CPUTotalPm: 500, CPUExitdPm: 100}
				if s != want {
					t.Fatalf("\n got %+v\nwant %+v", s, want)
				}
			}},
		{"sub-millisecond interval", &base, Reading{At: t0.Add(500 * time.Microsecond), BytesIn: 1001},
			func(t *testing.T, s Sample) {
				if s.IntervalMs != 0 || s.BytesIn != 1 {
					t.Fatalf("%+v", s)
				}
			}},
		{"uint64 counter wraparound reads as a reset", &Reading{At: t0, BytesIn: math.MaxUint64 - 5}, Reading{At: t0.Add(time.Second), BytesIn: 10},
			func(t *testing.T, s Sample) {
				if s.BytesIn != 10 {
					t.Fatalf("BytesIn %d, want 10", s.BytesIn)
				}
			}},
		{"counter at max, unchanged", &Reading{At: t0, BytesOut: math.MaxUint64}, Reading{At: t0.Add(time.Second), BytesOut: math.MaxUint64},
			func(t *testing.T, s Sample) {
				if s.BytesOut != 0 {
					t.Fatalf("BytesOut %d", s.BytesOut)
				}
			}},
		{"interval longer than uint32 ms is clamped", &Reading{At: t0}, Reading{At: t0.Add(60 * 24 * time.Hour)},
			func(t *testing.T, s Sample) {
				if s.IntervalMs != math.MaxUint32 {
					t.Fatalf("IntervalMs %d", s.IntervalMs)
				}
			}},
		{"no CPU ticks: CPU zero", &Reading{At: t0, CPUBusy: 10, CPUTotal: 100}, Reading{At: t0.Add(time.Second), CPUBusy: 10, CPUTotal: 100, ExitdCPU: 5},
			func(t *testing.T, s Sample) {
				if s.CPUTotalPm != 0 || s.CPUExitdPm != 0 {
					t.Fatalf("%+v", s)
				}
			}},
		{"CPU above 100% is clamped", &Reading{At: t0, CPUBusy: 0, CPUTotal: 0}, Reading{At: t0.Add(time.Second), CPUBusy: 500, CPUTotal: 100, ExitdCPU: 900},
			func(t *testing.T, s Sample) {
				if s.CPUTotalPm != 1000 || s.CPUExitdPm != 1000 {
					t.Fatalf("%+v", s)
				}
			}},
		{"negative and huge gauges are clamped", nil, Reading{At: t0, Configured: -1, Active: 1 << 40, Idle: -7, Handshaking: 3,
			QueueBytes: -100, Conntrack: -1, ConntrackMax: 1 << 35, MemberSlots: -2, NCPU: 1 << 20},
			func(t *testing.T, s Sample) {
				if s.Configured != 0 || s.Active != math.MaxUint32 || s.Idle != 0 || s.Handshaking != 3 || s.QueueBytes != 0 ||
					s.Conntrack != 0 || s.ConntrackMax != math.MaxUint32 || s.MemberSlots != 0 || s.NCPU != math.MaxUint16 {
					t.Fatalf("%+v", s)
				}
			}},
		{"negative NCPU", nil, Reading{At: t0, NCPU: -3},
			func(t *testing.T, s Sample) {
				if s.NCPU != 0 {
					t.Fatalf("NCPU %d", s.NCPU)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := tc.cur
			tc.check(t, diff(tc.prev, &cur))
		})
	}
}

func TestClampU32(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want uint32
	}{{-1 << 63, 0}, {-1, 0}, {0, 0}, {1, 1}, {1<<32 - 1, 1<<32 - 1}, {1 << 32, 1<<32 - 1}, {1<<63 - 1, 1<<32 - 1}} {
		if got := clampU32(tc.in); got != tc.want {
			t.Errorf("clampU32(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestQuantileEdges(t *testing.T) {
	bounds := []time.Duration{1, 2, 4, 8}
	tests := []struct {
		name      string
		prev, cur []uint64
		bounds    []time.Duration
		q         float64
		want      time.Duration
	}{
		{"no bounds", nil, []uint64{5}, nil, 0.99, 0},
		{"no buckets", nil, nil, bounds, 0.99, 0},
		{"single open bucket reports its bound", nil, []uint64{3}, []time.Duration{7}, 0.99, 7},
		{"p0 is the first non-empty bucket", nil, []uint64{0, 4, 4, 0}, bounds, 0, 2},
		{"p100 is the last non-empty bucket", nil, []uint64{1, 0, 1, 0}, bounds, 1, 4},
		{"one packet", nil, []uint64{0, 0, 1, 0}, bounds, 0.99, 4},
		{"more buckets than bounds: extra ignored", nil, []uint64{0, 1, 0, 0, 100}, bounds, 0.99, 2},
		{"prev longer than cur", []uint64{1, 1, 1, 1, 1, 1}, []uint64{1, 3, 1, 1}, bounds, 0.99, 2},
		{"reset bucket counts its new value", []uint64{50, 0, 0, 0}, []uint64{2, 0, 0, 0}, bounds, 0.99, 1},
		{"unchanged histogram: none", []uint64{5, 5, 5, 5}, []uint64{5, 5, 5, 5}, bounds, 0.99, 0},
		{"p99 of 100 with one slow", nil, []uint64{99, 0, 1, 0}, bounds, 0.99, 1},
		{"p99 of 100 with two slow", nil, []uint64{98, 0, 2, 0}, bounds, 0.99, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.prev, tc.cur, tc.bounds, tc.q); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSamplerZeroAtUsesNow(t *testing.T) {
	r := NewMemoryRing(4)
	s := NewSampler(r, func(time.Time) Reading { return Reading{} }, nil)
	got := s.Sample(t0.Add(time.Minute))
	if got.TimeMs != t0.Add(time.Minute).UnixMilli() {
		t.Fatalf("TimeMs %d, want the sampling time", got.TimeMs)
	}
	got = s.Sample(t0.Add(2 * time.Minute))
	if got.IntervalMs != 60000 {
		t.Fatalf("IntervalMs %d, want 60000", got.IntervalMs)
	}
}

func TestSamplerSojournP99(t *testing.T) {
	bounds := []time.Duration{time.Millisecond, 10 * time.Millisecond, time.Hour}
	readings := []Reading{
		{At: t0, Sojourn: []uint64{1000, 0, 0}, SojournBounds: bounds},
		{At: t0.Add(time.Second), Sojourn: []uint64{1000, 10, 0}, SojournBounds: bounds},
		{At: t0.Add(2 * time.Second), Sojourn: []uint64{1000, 10, 0}, SojournBounds: bounds},
	}
	i := 0
	s := NewSampler(NewMemoryRing(4), func(time.Time) Reading { i++; return readings[i-1] }, nil)
	s.Sample(t0)
	if got := s.Sample(t0).SojournP99Us; got != 10000 {
		t.Fatalf("p99 %d µs, want 10000 (the baseline's packets not counted)", got)
	}
	if got := s.Sample(t0).SojournP99Us; got != 0 {
		t.Fatalf("p99 of an interval without packets: %d", got)
	}
}

func TestSamplerLogsAppendFailure(t *testing.T) {
	r, err := OpenRing(filepath.Join(t.TempDir(), "load.ring"), 4)
	if err != nil {
		t.Fatal(err)
	}
	r.f.Close()
	defer r.Close()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	s := NewSampler(r, func(now time.Time) Reading { return Reading{At: now, Active: 3} }, log)
	got := s.Sample(t0)
	if got.Active != 3 {
		t.Fatalf("sample %+v", got)
	}
	if !strings.Contains(logBuf.String(), "cannot store sample") {
		t.Fatalf("no warning logged: %q", logBuf.String())
	}
	if r.Len() != 1 {
		t.Fatalf("ring len %d", r.Len())
	}
}

func TestSamplerRunStopsWhenTicksClose(t *testing.T) {
	r := NewMemoryRing(10)
	s := NewSampler(r, func(now time.Time) Reading { return Reading{At: now} }, nil)
	ticks := make(chan time.Time, 3)
	ticks <- t0.Add(15 * time.Second)
	ticks <- t0.Add(30 * time.Second)
	close(ticks)
	s.Run(context.Background(), func() time.Time { return t0 }, ticks) // returns: ticks closed
	ss := r.Since(time.Time{})
	if len(ss) != 3 || ss[0].IntervalMs != 0 || ss[1].IntervalMs != 15000 || ss[2].IntervalMs != 15000 {
		t.Fatalf("samples %+v", ss)
	}
}

func TestSamplerRunCancelledTakesBaselineOnly(t *testing.T) {
	r := NewMemoryRing(10)
	calls := 0
	s := NewSampler(r, func(now time.Time) Reading { calls++; return Reading{At: now} }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx, func() time.Time { return t0 }, make(chan time.Time))
	if calls != 1 || r.Len() != 1 {
		t.Fatalf("calls %d, samples %d; want the baseline only", calls, r.Len())
	}
}

// TestSamplerRunBudget: a reading that costs 300 ms (20,000 members)
// serves for 30 s: of 15 s ticks every other one samples, and that
// sample spans 30 s; cheap readings sample every tick.
func TestSamplerRunBudget(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cost  time.Duration
		want  []uint32 // IntervalMs of the samples after the baseline
		reads int
	}{
		{"cheap", time.Millisecond, []uint32{15000, 15000, 15000, 15000}, 5},
		{"300 ms", 300 * time.Millisecond, []uint32{30000, 30000}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := t0
			r := NewMemoryRing(10)
			reads := 0
			s := NewSampler(r, func(now time.Time) Reading {
				reads++
				clock = clock.Add(tc.cost)
				return Reading{At: now}
			}, nil)
			ticks := make(chan time.Time, 4)
			for i := 1; i <= 4; i++ {
				ticks <- t0.Add(time.Duration(i) * 15 * time.Second)
			}
			close(ticks)
			s.Run(context.Background(), func() time.Time { return clock }, ticks)
			ss := r.Since(time.Time{})
			var got []uint32
			for _, x := range ss[1:] {
				got = append(got, x.IntervalMs)
			}
			if reads != tc.reads || !slices.Equal(got, tc.want) {
				t.Fatalf("%d reads, intervals %v; want %d, %v", reads, got, tc.reads, tc.want)
			}
		})
	}
}
