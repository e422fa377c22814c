package report

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"
)

// Plot geometry, in SVG user units.
const (
	plotW, plotH         = 880, 330
	marginL, marginR     = 70, 20
	marginT, marginB     = 44, 48
	innerW               = plotW - marginL - marginR
	innerH               = plotH - marginT - marginB
	maxPointsPerPolyline = 4000 // longer series are thinned (min/max kept)
	maxScatterPoints     = 3000 // more dots only darken the cloud
)

// palette is colour-blind-safe (Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

// SVG renders f as a standalone SVG document. loc is the time zone of the
// time axis.
func SVG(f *Figure, loc *time.Location) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" data-figure="%s" data-points="%d" font-family="sans-serif" font-size="12">`+"\n",
		plotW, plotH, plotW, plotH, esc(f.Title), esc(f.ID), f.Points())
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", esc(f.Title))
	b.WriteString(`<rect x="0" y="0" width="100%" height="100%" fill="#ffffff"/>` + "\n")
	xmin, xmax, ymax, ok := bounds(f)
	if !ok {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#666">no data in this period</text>`+"\n", plotW/2, plotH/2)
		b.WriteString("</svg>\n")
		return b.String()
	}
	yTicks := niceTicks(0, ymax*1.04, 5) // headroom: a line at the maximum stays visible
	ytop := yTicks[len(yTicks)-1]
	if ytop <= 0 {
		ytop = 1
	}
	px := func(x float64) float64 { return marginL + (x-xmin)/(xmax-xmin)*innerW }
	py := func(y float64) float64 { return marginT + innerH - y/ytop*innerH }

	// Grid and y axis.
	for _, t := range yTicks {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>`+"\n", marginL, y, plotW-marginR, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle" fill="#333">%s</text>`+"\n", marginL-6, y, fmtNum(t))
	}
	fmt.Fprintf(&b, `<text transform="translate(14 %d) rotate(-90)" text-anchor="middle" fill="#333">%s</text>`+"\n", marginT+innerH/2, esc(f.YLabel))
	// X axis.
	if f.Kind == Scatter {
		for _, t := range niceTicks(xmin, xmax, 6) {
			if t < xmin || t > xmax {
				continue
			}
			x := px(t)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e5e5e5"/>`+"\n", x, marginT, x, marginT+innerH)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", x, marginT+innerH+16, fmtNum(t))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", marginL+innerW/2, plotH-8, esc(f.XLabel))
	} else {
		step, layout := timeStep(xmax - xmin)
		first := math.Ceil(xmin/step) * step
		for t := first; t <= xmax; t += step {
			x := px(t)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#f0f0f0"/>`+"\n", x, marginT, x, marginT+innerH)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", x, marginT+innerH+16,
				esc(time.UnixMilli(int64(t)).In(loc).Format(layout)))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#333">time (%s)</text>`+"\n", marginL+innerW/2, plotH-8, esc(loc.String()))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", marginL, marginT, innerW, innerH)

	switch f.Kind {
	case Stacked:
		drawStacked(&b, f, px, py)
	case Scatter:
		for _, s := range f.Series {
			for _, p := range stride(s.Points, maxScatterPoints) {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s" fill-opacity="0.55"/>`+"\n", px(p.X), py(p.Y), palette[0])
			}
		}
	default:
		for i, s := range f.Series {
			drawLine(&b, s, palette[i%len(palette)], px, py)
		}
	}
	drawLegend(&b, f)
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }

// bounds returns the data ranges; ok is false when there is no point.
func bounds(f *Figure) (xmin, xmax, ymax float64, ok bool) {
	xmin, xmax = math.Inf(1), math.Inf(-1)
	for _, s := range f.Series {
		for _, p := range s.Points {
			xmin, xmax, ymax = min(xmin, p.X), max(xmax, p.X), max(ymax, p.Y)
			ok = true
		}
	}
	if f.Kind == Stacked { // the top of the stack, dashed series drawn on top
		n := 0
		for _, s := range f.Series {
			n = max(n, len(s.Points))
		}
		for i := range n {
			var sum float64
			for _, s := range f.Series {
				if !s.Dashed && i < len(s.Points) {
					sum += s.Points[i].Y
				}
			}
			ymax = max(ymax, sum)
		}
	}
	if !ok {
		return 0, 0, 0, false
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
		if f.Kind != Scatter {
			xmin, xmax = xmin-29_999, xmax+29_999 // one point: a minute around it
		}
	}
	if f.Kind == Scatter && xmin > 0 {
		xmin = 0
	}
	return xmin, xmax, ymax, true
}

// gap is how far apart two points may be before the line breaks (a node
// that was down).
func gap(pts []Point) float64 {
	if len(pts) < 3 {
		return math.Inf(1)
	}
	ds := make([]float64, 0, len(pts)-1)
	for i := 1; i < len(pts); i++ {
		ds = append(ds, pts[i].X-pts[i-1].X)
	}
	slices.Sort(ds)
	return 3 * ds[len(ds)/2] // three median intervals
}

func drawLine(b *strings.Builder, s Series, color string, px, py func(float64) float64) {
	pts := thin(s.Points)
	dash := ""
	if s.Dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	g := gap(pts)
	start := 0
	for i := 1; i <= len(pts); i++ {
		if i < len(pts) && pts[i].X-pts[i-1].X <= g {
			continue
		}
		seg := pts[start:i]
		start = i
		if len(seg) == 1 {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"/>`+"\n", px(seg[0].X), py(seg[0].Y), color)
			continue
		}
		coords := make([]string, len(seg))
		for j, p := range seg {
			coords[j] = fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>`+"\n", color, dash, strings.Join(coords, " "))
	}
}

// drawStacked draws the non-dashed series as stacked bands and the dashed
// ones as lines over them.
func drawStacked(b *strings.Builder, f *Figure, px, py func(float64) float64) {
	var base []float64
	for i, s := range f.Series {
		if s.Dashed {
			continue
		}
		if base == nil {
			base = make([]float64, len(s.Points))
		}
		var top, bottom []string
		every := max(1, len(s.Points)/(maxPointsPerPolyline/2))
		for j, p := range s.Points {
			if j >= len(base) {
				break
			}
			if j%every != 0 && j != len(s.Points)-1 {
				continue
			}
			top = append(top, fmt.Sprintf("%.1f,%.1f", px(p.X), py(base[j]+p.Y)))
			bottom = append(bottom, fmt.Sprintf("%.1f,%.1f", px(p.X), py(base[j])))
		}
		for l, r := 0, len(bottom)-1; l < r; l, r = l+1, r-1 {
			bottom[l], bottom[r] = bottom[r], bottom[l]
		}
		color := palette[i%len(palette)]
		fmt.Fprintf(b, `<polygon fill="%s" fill-opacity="0.6" stroke="%s" stroke-width="1" points="%s"/>`+"\n",
			color, color, strings.Join(append(top, bottom...), " "))
		for j, p := range s.Points {
			if j < len(base) {
				base[j] += p.Y
			}
		}
	}
	for i, s := range f.Series {
		if s.Dashed {
			drawLine(b, s, palette[i%len(palette)], px, py)
		}
	}
}

func drawLegend(b *strings.Builder, f *Figure) {
	if f.Kind == Scatter {
		return
	}
	x := marginL
	for i, s := range f.Series {
		color := palette[i%len(palette)]
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<line x1="%d" y1="20" x2="%d" y2="20" stroke="%s" stroke-width="3"%s/>`, x, x+22, color, dash)
		fmt.Fprintf(b, `<text x="%d" y="24" fill="#222">%s</text>`+"\n", x+28, esc(s.Name))
		x += 40 + 7*len(s.Name)
	}
}

// thin keeps long series drawable: it splits them into buckets and keeps
// each bucket's minimum and maximum, so peaks survive.
func thin(pts []Point) []Point {
	if len(pts) <= maxPointsPerPolyline {
		return pts
	}
	per := (len(pts) + maxPointsPerPolyline/2 - 1) / (maxPointsPerPolyline / 2)
	out := make([]Point, 0, maxPointsPerPolyline+2)
	for i := 0; i < len(pts); i += per {
		chunk := pts[i:min(i+per, len(pts))]
		lo, hi := chunk[0], chunk[0]
		for _, p := range chunk {
			if p.Y < lo.Y {
				lo = p
			}
			if p.Y > hi.Y {
				hi = p
			}
		}
		if lo.X <= hi.X {
			out = append(out, lo, hi)
		} else {
			out = append(out, hi, lo)
		}
	}
	return out
}

// stride keeps at most n evenly spaced points.
func stride(pts []Point, n int) []Point {
	if len(pts) <= n {
		return pts
	}
	every := (len(pts) + n - 1) / n
	out := make([]Point, 0, n)
	for i := 0; i < len(pts); i += every {
		out = append(out, pts[i])
	}
	return out
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for t := math.Floor(lo/step) * step; t < hi+step*0.999; t += step {
		out = append(out, math.Round(t/step)*step)
	}
	return out
}

// timeStep picks a tick step (ms) and label layout for a span (ms).
func timeStep(span float64) (float64, string) {
	steps := []struct {
		d      time.Duration
		layout string
	}{
		{5 * time.Second, "15:04:05"}, {10 * time.Second, "15:04:05"}, {30 * time.Second, "15:04:05"},
		{time.Minute, "15:04"}, {2 * time.Minute, "15:04"}, {5 * time.Minute, "15:04"}, {10 * time.Minute, "15:04"},
		{30 * time.Minute, "15:04"}, {time.Hour, "15:04"}, {2 * time.Hour, "Jan 2 15:04"}, {4 * time.Hour, "Jan 2 15:04"},
		{6 * time.Hour, "Jan 2 15:04"}, {12 * time.Hour, "Jan 2 15:04"}, {24 * time.Hour, "Jan 2"}, {7 * 24 * time.Hour, "Jan 2"},
	}
	for _, s := range steps {
		if span/float64(s.d.Milliseconds()) <= 8 {
			return float64(s.d.Milliseconds()), s.layout
		}
	}
	last := steps[len(steps)-1]
	return float64(last.d.Milliseconds()) * math.Ceil(span/float64(last.d.Milliseconds())/8), last.layout
}

// fmtNum formats an axis value compactly.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e9:
		return trim(fmt.Sprintf("%.2f", v/1e9)) + "G"
	case a >= 1e6:
		return trim(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e4:
		return trim(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 1:
		return trim(fmt.Sprintf("%.2f", v))
	}
	return trim(fmt.Sprintf("%.4f", v))
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
