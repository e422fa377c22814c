package report

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestNiceTicksTable(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float64
		n      int
		want   []float64
	}{
		{"0..86 in 5", 0, 86, 5, []float64{0, 20, 40, 60, 80, 100}},
		{"0..1", 0, 1, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{"empty range widens to 1", 0, 0, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{"inverted range widens", 5, 3, 5, []float64{5, 5.2, 5.4, 5.6, 5.8, 6}},
		{"step 2.5", 0, 12, 5, []float64{0, 2.5, 5, 7.5, 10, 12.5}},
		{"offset start", 3, 17, 6, []float64{2.5, 5, 7.5, 10, 12.5, 15, 17.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := niceTicks(tc.lo, tc.hi, tc.n)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if !near(got[i], tc.want[i]) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestNiceTicksCoverRange(t *testing.T) {
	for _, hi := range []float64{1e-6, 0.003, 0.99, 1, 7, 86, 99.9, 1000, 1234567, 1.8e19} {
		got := niceTicks(0, hi, 5)
		if got[0] > 0 || got[len(got)-1] < hi {
			t.Errorf("hi %v: ticks %v do not cover [0, hi]", hi, got)
		}
		if len(got) < 3 || len(got) > 12 {
			t.Errorf("hi %v: %d ticks", hi, len(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Errorf("hi %v: ticks not increasing: %v", hi, got)
			}
		}
	}
}

func TestFmtNumTable(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {1, "1"}, {1.5, "1.5"}, {9999, "9999"}, {10000, "10k"}, {999999, "1000k"},
		{1e6, "1M"}, {1.234e6, "1.23M"}, {1e9, "1G"}, {1.5e12, "1500G"}, {0.5, "0.5"}, {0.00012, "0.0001"},
		{-3, "-3"}, {-25000, "-25k"}, {-0.25, "-0.25"}, {100, "100"}, {2.50, "2.5"},
	}
	for _, tc := range tests {
		if got := fmtNum(tc.in); got != tc.want {
			t.Errorf("fmtNum(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTrim(t *testing.T) {
	for in, want := range map[string]string{"1.500": "1.5", "2.00": "2", "100": "100", "0.0": "0", "10": "10", "1.05": "1.05"} {
		if got := trim(in); got != want {
			t.Errorf("trim(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTimeStepTable(t *testing.T) {
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) }
	tests := []struct {
		name     string
		span     time.Duration
		wantStep time.Duration
		layout   string
	}{
		{"zero span", 0, 5 * time.Second, "15:04:05"},
		{"40 s", 40 * time.Second, 5 * time.Second, "15:04:05"},
		{"41 s", 41 * time.Second, 10 * time.Second, "15:04:05"},
		{"1 min", time.Minute, 10 * time.Second, "15:04:05"},
		{"8 min", 8 * time.Minute, time.Minute, "15:04"},
		{"1 h", time.Hour, 10 * time.Minute, "15:04"},
		{"8 h", 8 * time.Hour, time.Hour, "15:04"},
		{"9 h", 9 * time.Hour, 2 * time.Hour, "Jan 2 15:04"},
		{"50 h", 50 * time.Hour, 12 * time.Hour, "Jan 2 15:04"},
		{"7 days", 7 * 24 * time.Hour, 24 * time.Hour, "Jan 2"},
		{"8 weeks", 8 * 7 * 24 * time.Hour, 7 * 24 * time.Hour, "Jan 2"},
		{"1 year: multiples of a week", 365 * 24 * time.Hour, 7 * 7 * 24 * time.Hour, "Jan 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			step, layout := timeStep(ms(tc.span))
			if step != ms(tc.wantStep) || layout != tc.layout {
				t.Fatalf("step %v %q, want %v %q", time.Duration(step)*time.Millisecond, layout, tc.wantStep, tc.layout)
			}
			if tc.span > 0 && ms(tc.span)/step > 8 {
				t.Fatalf("%v ticks", ms(tc.span)/step)
			}
		})
	}
}

func TestGap(t *testing.T) {
	pts := func(xs ...float64) []Point {
		out := make([]Point, len(xs))
		for i, x := range xs {
			out[i].X = x
		}
		return out
	}
	tests := []struct {
		name string
		pts  []Point
		want float64
	}{
		{"empty", nil, math.Inf(1)},
		{"one", pts(5), math.Inf(1)},
		{"two", pts(0, 1000), math.Inf(1)},
		{"regular", pts(0, 10, 20, 30), 30},
		{"median ignores one outage", pts(0, 10, 20, 30, 1000), 30},
		{"irregular: median of sorted intervals", pts(0, 1, 3, 6, 10), 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := gap(tc.pts); got != tc.want {
				t.Fatalf("gap %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStride(t *testing.T) {
	mk := func(n int) []Point {
		out := make([]Point, n)
		for i := range out {
			out[i] = Point{float64(i), float64(i)}
		}
		return out
	}
	tests := []struct {
		name      string
		n, max    int
		wantLen   int
		wantFirst float64
	}{
		{"short kept", 5, 10, 5, 0},
		{"exact kept", 10, 10, 10, 0},
		{"halved", 20, 10, 10, 0},
		{"uneven", 25, 10, 9, 0},
		{"empty", 0, 10, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := stride(mk(tc.n), tc.max)
			if len(got) != tc.wantLen || len(got) > tc.max {
				t.Fatalf("%d points, want %d", len(got), tc.wantLen)
			}
			if len(got) > 0 && got[0].X != tc.wantFirst {
				t.Fatalf("first %v", got[0].X)
			}
		})
	}
}

func TestThinShortSeriesUnchanged(t *testing.T) {
	pts := make([]Point, maxPointsPerPolyline)
	for i := range pts {
		pts[i] = Point{float64(i), float64(i % 7)}
	}
	if got := thin(pts); len(got) != len(pts) || &got[0] != &pts[0] {
		t.Fatal("a series at the limit was thinned")
	}
}

func TestThinKeepsTroughsAndOrder(t *testing.T) {
	pts := make([]Point, 3*maxPointsPerPolyline+17)
	for i := range pts {
		pts[i] = Point{float64(i), 50}
	}
	pts[777].Y = -3
	pts[9001].Y = 1e12
	out := thin(pts)
	if len(out) > maxPointsPerPolyline {
		t.Fatalf("%d points", len(out))
	}
	var lo, hi bool
	for i, p := range out {
		lo = lo || p.Y == -3
		hi = hi || p.Y == 1e12
		if i > 0 && p.X < out[i-1].X {
			t.Fatalf("x goes back at %d: %v after %v", i, p.X, out[i-1].X)
		}
	}
	if !lo || !hi {
		t.Fatalf("trough kept %v, peak kept %v", lo, hi)
	}
	if out[0].X != 0 {
		t.Fatalf("first point %v", out[0])
	}
}

func TestBounds(t *testing.T) {
	tests := []struct {
		name             string
		f                Figure
		xmin, xmax, ymax float64
		ok               bool
	}{
		{"no points", Figure{Series: []Series{{}}}, 0, 0, 0, false},
		{"lines", Figure{Kind: Lines, Series: []Series{{Points: []Point{{1000, 2}, {3000, 5}}}, {Points: []Point{{2000, 9}}}}}, 1000, 3000, 9, true},
		{"one point on a time axis: a minute around it", Figure{Kind: Lines, Series: []Series{{Points: []Point{{100000, 1}}}}}, 70000, 130000, 1, true},
		{"one point scatter starts at 0", Figure{Kind: Scatter, Series: []Series{{Points: []Point{{5, 1}}}}}, 0, 6, 1, true},
		{"scatter with negative x keeps it", Figure{Kind: Scatter, Series: []Series{{Points: []Point{{-5, 1}, {5, 2}}}}}, -5, 5, 2, true},
		{"stacked: top of the stack, dashed not stacked", Figure{Kind: Stacked, Series: []Series{
			{Points: []Point{{0, 3}, {1, 4}}}, {Points: []Point{{0, 2}, {1, 5}}}, {Dashed: true, Points: []Point{{0, 6}, {1, 6}}}}}, 0, 1, 9, true},
		{"stacked series of unequal length", Figure{Kind: Stacked, Series: []Series{
			{Points: []Point{{0, 1}}}, {Points: []Point{{0, 1}, {1, 10}}}}}, 0, 1, 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			xmin, xmax, ymax, ok := bounds(&tc.f)
			if ok != tc.ok || xmin != tc.xmin || xmax != tc.xmax || ymax != tc.ymax {
				t.Fatalf("bounds %v %v %v %v, want %v %v %v %v", xmin, xmax, ymax, ok, tc.xmin, tc.xmax, tc.ymax, tc.ok)
			}
		})
	}
}

func lineFigure(kind Kind, series ...Series) *Figure {
	return &Figure{ID: "fig99-test", Title: "Test", YLabel: "y", XLabel: "x", Kind: kind, Series: series}
}

func regular(n int, step time.Duration, y float64) []Point {
	out := make([]Point, n)
	for i := range out {
		out[i] = Point{float64(t0.Add(time.Duration(i) * step).UnixMilli()), y}
	}
	return out
}

func TestSVGShapes(t *testing.T) {
	gapped := regular(10, 15*time.Second, 1)
	for i := 5; i < 10; i++ {
		gapped[i].X += float64(time.Hour.Milliseconds())
	}
	lonely := regular(10, 15*time.Second, 1)
	lonely = append(lonely, Point{lonely[9].X + float64(time.Hour.Milliseconds()), 1})
	tests := []struct {
		name  string
		f     *Figure
		count map[string]int
	}{
		{"one continuous line", lineFigure(Lines, Series{Name: "a", Points: regular(10, 15*time.Second, 1)}),
			map[string]int{"<polyline": 1, "<circle": 0}},
		{"gap splits the line", lineFigure(Lines, Series{Name: "a", Points: gapped}),
			map[string]int{"<polyline": 2, "<circle": 0}},
		{"a lone point after a gap is a dot", lineFigure(Lines, Series{Name: "a", Points: lonely}),
			map[string]int{"<polyline": 1, "<circle": 1}},
		{"single point is a dot", lineFigure(Lines, Series{Name: "a", Points: regular(1, time.Second, 3)}),
			map[string]int{"<polyline": 0, "<circle": 1}},
		{"dashed line", lineFigure(Lines, Series{Name: "a", Dashed: true, Points: regular(5, time.Second, 1)}),
			map[string]int{`stroke-dasharray="6 4" points=`: 1}},
		{"stacked: one band per solid series, dashed as a line", lineFigure(Stacked,
			Series{Name: "a", Points: regular(5, time.Second, 1)}, Series{Name: "b", Points: regular(5, time.Second, 2)},
			Series{Name: "c", Dashed: true, Points: regular(5, time.Second, 4)}),
			map[string]int{"<polygon": 2, "<polyline": 1}},
		{"scatter: dots, no legend", lineFigure(Scatter, Series{Name: "dots", Points: []Point{{1, 1}, {2, 2}, {3, 3}}}),
			map[string]int{`r="3"`: 3, "<polyline": 0, ">dots<": 0}},
		{"scatter capped", lineFigure(Scatter, Series{Name: "dots", Points: regular(2*maxScatterPoints, time.Second, 1)}),
			map[string]int{`r="3"`: maxScatterPoints}},
		{"legend per series", lineFigure(Lines, Series{Name: "first", Points: regular(3, time.Second, 1)},
			Series{Name: "second", Points: regular(3, time.Second, 1)}),
			map[string]int{">first<": 1, ">second<": 1, `stroke-width="3"`: 2}},
		{"no data", lineFigure(Lines, Series{Name: "a"}),
			map[string]int{"no data in this period": 1, "<polyline": 0, "<line": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svg := SVG(tc.f, time.UTC)
			wellFormed(t, tc.name, svg)
			for sub, want := range tc.count {
				if got := strings.Count(svg, sub); got != want {
					t.Errorf("%q occurs %d times, want %d", sub, got, want)
				}
			}
		})
	}
}

func TestSVGEscapesText(t *testing.T) {
	f := &Figure{ID: `id"<x>`, Title: `<script>alert("t")</script>`, YLabel: "a & b", Kind: Lines,
		Series: []Series{{Name: `<b>"n"</b>`, Points: regular(3, time.Second, 1)}}}
	svg := SVG(f, time.UTC)
	wellFormed(t, "escaped", svg)
	for _, bad := range []string{"<script>", "<b>", `id"<x>`} {
		if strings.Contains(svg, bad) {
			t.Errorf("unescaped %q in\n%s", bad, svg)
		}
	}
	for _, good := range []string{"&lt;script&gt;", "a &amp; b", "&lt;b&gt;"} {
		if !strings.Contains(svg, good) {
			t.Errorf("missing %q", good)
		}
	}
}

func TestSVGAttributesAndLocation(t *testing.T) {
	loc := time.FixedZone("UTC+3", 3*3600)
	f := lineFigure(Lines, Series{Name: "a", Points: regular(5, time.Minute, 2)})
	svg := SVG(f, loc)
	for _, want := range []string{`data-figure="fig99-test"`, `data-points="5"`, "time (UTC+3)", "<title>Test</title>", ">11:00:00<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(svg, ">08:00:00<") {
		t.Error("time axis labels not in the given location")
	}
}

func TestSVGZeroAndHugeValues(t *testing.T) {
	tests := []struct {
		name string
		y    float64
	}{
		{"all zero", 0},
		{"huge", 1.8e19},
		{"tiny", 1e-9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svg := SVG(lineFigure(Lines, Series{Name: "a", Points: regular(4, time.Second, tc.y)}), time.UTC)
			wellFormed(t, tc.name, svg)
			if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
				t.Fatalf("non-finite coordinate in\n%s", svg)
			}
		})
	}
}
