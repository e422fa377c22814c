package report

import (
	"math"
	"strings"
	"testing"
	"time"
)

// figByTitle returns the figure titled title.
func figByTitle(t *testing.T, figs []Figure, title string) *Figure {
	t.Helper()
	for i := range figs {
		if figs[i].Title == title {
			return &figs[i]
		}
	}
	t.Fatalf("no figure %q", title)
	return nil
}

func seriesByName(t *testing.T, f *Figure, name string) Series {
	t.Helper()
	for _, s := range f.Series {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("%s: no series %q", f.ID, name)
	return Series{}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestFiguresEmpty(t *testing.T) {
	for name, ss := range map[string][]Sample{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			figs := Figures(ss)
			if len(figs) != 11 {
				t.Fatalf("%d figures", len(figs))
			}
			for i, f := range figs {
				if f.Points() != 0 {
					t.Errorf("%s: %d points from no samples", f.ID, f.Points())
				}
				if want := "fig" + twoDigits(i+1) + "-"; !strings.HasPrefix(f.ID, want) {
					t.Errorf("figure %d id %q, want prefix %q", i+1, f.ID, want)
				}
				if len(f.Series) == 0 {
					t.Errorf("%s: no series", f.ID)
				}
			}
		})
	}
}

func twoDigits(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }

func TestFiguresOnlyBaseline(t *testing.T) {
	// One sample that closes no interval: gauges are drawn, rates are not.
	figs := Figures([]Sample{{TimeMs: t0.UnixMilli(), Active: 3, Configured: 5, MemTotal: 1 << 30, MemberSlots: 10}})
	tests := []struct {
		title string
		want  int
	}{
		{"Transfer rates", 0}, {"Traffic ratio, in to out", 0}, {"Members by session state", 4},
		{"Members and bandwidth", 0}, {"Aggregated data transfers", 0}, {"Memory", 4}, {"CPU", 0},
		{"Free capacity", 2}, {"Scheduler drops and ECN marks", 0}, {"Queueing delay", 0}, {"Drops outside the scheduler", 0},
	}
	for _, tc := range tests {
		t.Run(tc.title, func(t *testing.T) {
			if got := figByTitle(t, figs, tc.title).Points(); got != tc.want {
				t.Fatalf("%d points, want %d", got, tc.want)
			}
		})
	}
}

func TestFiguresValues(t *testing.T) {
	ss := []Sample{
		{TimeMs: t0.UnixMilli(), Active: 1, Configured: 9},
		{TimeMs: t0.Add(10 * time.Second).UnixMilli(), IntervalMs: 10000, BytesOut: 12_500_000, BytesIn: 2_500_000,
			WANRx: 25_000_000, WANTx: 1_250_000, Active: 4, Idle: 2, Handshaking: 1, Configured: 9,
			OverflowDrops: 30, CoDelDrops: 20, CEMarks: 10, NATDrops: 100, LeakDrops: 50, LinkDrops: 5, UDPRcvErrors: 1,
			SojournP99Us: 2500, CPUTotalPm: 625, CPUExitdPm: 125,
			MemTotal: 4 << 30, MemAvailable: 1 << 30, SwapTotal: 2 << 30, SwapFree: 1 << 30, ExitdRSS: 1 << 29,
			Conntrack: 100, ConntrackMax: 1000, MemberSlots: 20},
		// Members sent nothing: left out of the ratio.
		{TimeMs: t0.Add(20 * time.Second).UnixMilli(), IntervalMs: 5000, BytesOut: 1000, Configured: 9},
	}
	figs := Figures(ss)
	x1 := float64(ss[1].TimeMs)
	tests := []struct {
		fig, series string
		idx         int
		wantX       float64
		wantY       float64
	}{
		{"Transfer rates", "to members", 0, x1, 10},
		{"Transfer rates", "from members", 0, x1, 2},
		{"Transfer rates", "WAN rx", 0, x1, 20},
		{"Transfer rates", "WAN tx", 0, x1, 1},
		{"Transfer rates", "to members", 1, float64(ss[2].TimeMs), 1000 / 5.0 / mbit},
		{"Traffic ratio, in to out", "ratio", 0, x1, 5},
		{"Members by session state", "active", 0, float64(ss[0].TimeMs), 1},
		{"Members by session state", "idle", 1, x1, 2},
		{"Members by session state", "handshaking", 1, x1, 1},
		{"Members by session state", "configured", 2, float64(ss[2].TimeMs), 9},
		{"Members and bandwidth", "interval", 0, 6, 12},
		{"Aggregated data transfers", "total", 0, x1, 0.015},
		{"Aggregated data transfers", "to members", 1, float64(ss[2].TimeMs), 0.012501},
		{"Aggregated data transfers", "from members", 1, float64(ss[2].TimeMs), 0.0025},
		{"Memory", "host used", 1, x1, 3},
		{"Memory", "swap used", 1, x1, 1},
		{"Memory", "exitd RSS", 1, x1, 0.5},
		{"Memory", "host total", 1, x1, 4},
		{"CPU", "total", 0, x1, 62.5},
		{"CPU", "exitd", 0, x1, 12.5},
		{"Free capacity", "member addresses", 1, x1, 11},
		{"Free capacity", "conntrack entries", 1, x1, 900},
		{"Scheduler drops and ECN marks", "overflow drops", 0, x1, 3},
		{"Scheduler drops and ECN marks", "CoDel drops", 0, x1, 2},
		{"Scheduler drops and ECN marks", "CE marks", 0, x1, 1},
		{"Queueing delay", "p99 queue delay", 0, x1, 2.5},
		{"Drops outside the scheduler", "nftables, all", 0, x1, 10},
		{"Drops outside the scheduler", "nftables, leak", 0, x1, 5},
		{"Drops outside the scheduler", "interfaces", 0, x1, 0.5},
		{"Drops outside the scheduler", "UDP buffer", 0, x1, 0.1},
	}
	for _, tc := range tests {
		t.Run(tc.fig+"/"+tc.series, func(t *testing.T) {
			s := seriesByName(t, figByTitle(t, figs, tc.fig), tc.series)
			if tc.idx >= len(s.Points) {
				t.Fatalf("%d points, want index %d", len(s.Points), tc.idx)
			}
			p := s.Points[tc.idx]
			if !near(p.X, tc.wantX) || !near(p.Y, tc.wantY) {
				t.Fatalf("point %d = (%v, %v), want (%v, %v)", tc.idx, p.X, p.Y, tc.wantX, tc.wantY)
			}
		})
	}
	if n := len(seriesByName(t, figByTitle(t, figs, "Traffic ratio, in to out"), "ratio").Points); n != 1 {
		t.Errorf("ratio has %d points; intervals without upload must be left out", n)
	}
}

func TestFiguresClampNegativeHeadroom(t *testing.T) {
	// More configured than slots, conntrack over its max, available above
	// total: free capacity and memory in use are never negative.
	ss := []Sample{{TimeMs: 1, Configured: 50, MemberSlots: 10, Conntrack: 2000, ConntrackMax: 1000,
		MemTotal: 1 << 30, MemAvailable: 2 << 30, SwapTotal: 0, SwapFree: 1 << 20}}
	figs := Figures(ss)
	for _, name := range []string{"member addresses", "conntrack entries"} {
		if y := seriesByName(t, figByTitle(t, figs, "Free capacity"), name).Points[0].Y; y != 0 {
			t.Errorf("%s free %v, want 0", name, y)
		}
	}
	for _, name := range []string{"host used", "swap used"} {
		if y := seriesByName(t, figByTitle(t, figs, "Memory"), name).Points[0].Y; y != 0 {
			t.Errorf("%s %v, want 0", name, y)
		}
	}
}

func TestFiguresDashedSeries(t *testing.T) {
	figs := Figures(synthetic(5, 15*time.Second))
	want := map[string]bool{"WAN rx": true, "WAN tx": true, "configured": true, "host total": true}
	for _, f := range figs {
		for _, s := range f.Series {
			if s.Dashed != want[s.Name] {
				t.Errorf("%s/%s: dashed %v", f.Title, s.Name, s.Dashed)
			}
		}
	}
}

func TestFiguresHugeValuesStayFinite(t *testing.T) {
	big := maxSample()
	big.TimeMs = t0.UnixMilli()
	ss := []Sample{big, big}
	ss[1].TimeMs += 1000
	for _, f := range Figures(ss) {
		for _, s := range f.Series {
			for _, p := range s.Points {
				if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
					t.Errorf("%s/%s: %v", f.Title, s.Name, p.Y)
				}
			}
		}
	}
}

func TestPointsCount(t *testing.T) {
	tests := []struct {
		name string
		f    Figure
		want int
	}{
		{"no series", Figure{}, 0},
		{"empty series", Figure{Series: []Series{{}, {}}}, 0},
		{"mixed", Figure{Series: []Series{{Points: make([]Point, 3)}, {}, {Points: make([]Point, 4)}}}, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Points(); got != tc.want {
				t.Fatalf("%d, want %d", got, tc.want)
			}
		})
	}
}

func TestSummarizeValues(t *testing.T) {
	ss := []Sample{
		{TimeMs: t0.UnixMilli(), Active: 2, Idle: 1, Configured: 4, MemTotal: 1000, MemAvailable: 900, ExitdRSS: 10},
		{TimeMs: t0.Add(10 * time.Second).UnixMilli(), IntervalMs: 10000, BytesOut: 25_000_000, BytesIn: 5_000_000,
			Active: 5, Idle: 5, Configured: 4, CPUTotalPm: 800, CPUExitdPm: 300, MemTotal: 1000, MemAvailable: 100,
			OverflowDrops: 1, CoDelDrops: 2, CEMarks: 3, NATDrops: 4, LeakDrops: 5, SojournP99Us: 700,
			Conntrack: 10, ConntrackMax: 100, ExitdRSS: 50},
		{TimeMs: t0.Add(40 * time.Second).UnixMilli(), IntervalMs: 30000, BytesOut: 0, BytesIn: 5_000_000,
			Active: 7, Idle: 0, Configured: 6, CPUTotalPm: 200, MemTotal: 2000, MemAvailable: 1900,
			OverflowDrops: 10, CoDelDrops: 20, CEMarks: 30, NATDrops: 40, LeakDrops: 50, SojournP99Us: 300,
			Conntrack: 95, ConntrackMax: 100, ExitdRSS: 20},
	}
	s := Summarize(ss)
	checks := []struct {
		name      string
		got, want any
	}{
		{"From", s.From, t0},
		{"To", s.To, t0.Add(40 * time.Second)},
		{"Samples", s.Samples, 3},
		{"Interval (median of 10s, 30s)", s.Interval, 30 * time.Second},
		{"PeakSessions", s.PeakSessions, 10},
		{"PeakSessionsAt", s.PeakSessionsAt, t0.Add(10 * time.Second)},
		{"PeakActive", s.PeakActive, 7},
		{"Configured at the end", s.Configured, 6},
		{"TotalOut", s.TotalOut, uint64(25_000_000)},
		{"TotalIn", s.TotalIn, uint64(10_000_000)},
		{"PeakOutAt", s.PeakOutAt, t0.Add(10 * time.Second)},
		{"PeakMemUsed", s.PeakMemUsed, uint64(900)},
		{"MemTotal", s.MemTotal, uint64(2000)},
		{"PeakRSS", s.PeakRSS, uint64(50)},
		{"MinConntrackFree", s.MinConntrackFree, int64(5)},
		{"SchedDrops", s.SchedDrops, uint64(33)},
		{"CEMarks", s.CEMarks, uint64(33)},
		{"NATDrops", s.NATDrops, uint64(44)},
		{"LeakDrops", s.LeakDrops, uint64(55)},
		{"PeakQueueDelay", s.PeakQueueDelay, 700 * time.Microsecond},
	}
	for _, c := range checks {
		if tg, ok := c.got.(time.Time); ok {
			if !tg.Equal(c.want.(time.Time)) {
				t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
			}
			continue
		}
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	floats := []struct {
		name      string
		got, want float64
	}{
		{"PeakOut", s.PeakOut, 20},
		{"PeakIn", s.PeakIn, 4},
		{"AvgOut", s.AvgOut, 25e6 / 40 / mbit},
		{"AvgIn", s.AvgIn, 10e6 / 40 / mbit},
		{"Ratio", s.Ratio, 2.5},
		{"PeakCPU", s.PeakCPU, 80},
		{"AvgCPU (time-weighted)", s.AvgCPU, (80*10 + 20*30) / 40.0},
		{"PeakExitdCPU", s.PeakExitdCPU, 30},
	}
	for _, c := range floats {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSummarizeEdges(t *testing.T) {
	tests := []struct {
		name  string
		ss    []Sample
		check func(t *testing.T, s Summary)
	}{
		{"baseline only: no rates", []Sample{{TimeMs: 5, Active: 1}},
			func(t *testing.T, s Summary) {
				if s.Samples != 1 || s.Interval != 0 || s.AvgOut != 0 || s.AvgCPU != 0 || s.Ratio != 0 || s.PeakActive != 1 {
					t.Fatalf("%+v", s)
				}
				if !s.PeakOutAt.IsZero() {
					t.Fatalf("PeakOutAt %v without intervals", s.PeakOutAt)
				}
			}},
		{"conntrack unknown throughout", []Sample{{TimeMs: 1, Conntrack: 50}, {TimeMs: 2, IntervalMs: 1}},
			func(t *testing.T, s Summary) {
				if s.MinConntrackFree != -1 {
					t.Fatalf("MinConntrackFree %d, want -1", s.MinConntrackFree)
				}
			}},
		{"conntrack full", []Sample{{TimeMs: 1, Conntrack: 100, ConntrackMax: 100}},
			func(t *testing.T, s Summary) {
				if s.MinConntrackFree != 0 {
					t.Fatalf("MinConntrackFree %d, want 0", s.MinConntrackFree)
				}
			}},
		{"nothing received: ratio 0", []Sample{{TimeMs: 1}, {TimeMs: 2, IntervalMs: 1000, BytesOut: 99}},
			func(t *testing.T, s Summary) {
				if s.Ratio != 0 || s.TotalOut != 99 {
					t.Fatalf("%+v", s)
				}
			}},
		{"idle period: zero rates, peak time unset", []Sample{{TimeMs: 1}, {TimeMs: 2, IntervalMs: 1000}},
			func(t *testing.T, s Summary) {
				if s.PeakOut != 0 || !s.PeakOutAt.IsZero() || s.PeakSessions != 0 || !s.PeakSessionsAt.IsZero() {
					t.Fatalf("%+v", s)
				}
			}},
		{"available above total", []Sample{{TimeMs: 1, MemTotal: 10, MemAvailable: 20}},
			func(t *testing.T, s Summary) {
				if s.PeakMemUsed != 0 || s.MemTotal != 10 {
					t.Fatalf("%+v", s)
				}
			}},
		{"max queue delay", []Sample{{TimeMs: 1}, {TimeMs: 2, IntervalMs: 1, SojournP99Us: math.MaxUint32}},
			func(t *testing.T, s Summary) {
				if s.PeakQueueDelay != time.Duration(math.MaxUint32)*time.Microsecond {
					t.Fatalf("PeakQueueDelay %v", s.PeakQueueDelay)
				}
			}},
		{"even number of intervals: upper median", []Sample{{TimeMs: 1}, {TimeMs: 2, IntervalMs: 1000}, {TimeMs: 3, IntervalMs: 3000},
			{TimeMs: 4, IntervalMs: 2000}, {TimeMs: 5, IntervalMs: 4000}},
			func(t *testing.T, s Summary) {
				if s.Interval != 3*time.Second {
					t.Fatalf("Interval %v", s.Interval)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, Summarize(tc.ss)) })
	}
}

// An overfull conntrack table counts as no headroom (as the figure shows
// it), and later samples cannot hide it; member counts do not wrap.
func TestSummarizeOverfullAndHugeCounts(t *testing.T) {
	ss := []Sample{
		{TimeMs: 1000, Conntrack: 110, ConntrackMax: 100, Active: 1 << 31, Idle: 1 << 31},
		{TimeMs: 2000, Conntrack: 50, ConntrackMax: 100},
	}
	sum := Summarize(ss)
	if sum.MinConntrackFree != 0 {
		t.Fatalf("MinConntrackFree = %d, want 0", sum.MinConntrackFree)
	}
	if sum.PeakSessions != 1<<32 {
		t.Fatalf("PeakSessions = %d, want %d", sum.PeakSessions, 1<<32)
	}
}
