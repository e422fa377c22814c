package report

import (
	"context"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// synthetic returns n samples every interval with a daily-ish load curve,
// like the Dante machines: members receive ~4.5x what they send.
func synthetic(n int, interval time.Duration) []Sample {
	out := make([]Sample, n)
	for i := range out {
		phase := float64(i) / float64(n) * 4 * math.Pi
		load := 0.55 + 0.4*math.Sin(phase)
		sec := interval.Seconds()
		out[i] = Sample{
			TimeMs: t0.Add(time.Duration(i) * interval).UnixMilli(), IntervalMs: uint32(interval.Milliseconds()),
			BytesOut: uint64(load * 85e6 / 8 * sec), BytesIn: uint64(load * 85e6 / 8 * sec / (4 + load)),
			Configured: 8000, Active: uint32(6000 * load), Idle: uint32(500 + 300*load), Handshaking: uint32(20 * load),
			CoDelDrops: uint64(40 * load * load * sec), OverflowDrops: uint64(2 * load * sec), CEMarks: uint64(100 * load * sec),
			SojournP99Us: uint32(2000 + 8000*load), QueueBytes: uint64(load * 1e6),
			Conntrack: uint32(50000 * load), ConntrackMax: 262144, MemberSlots: 65533,
			MemTotal: 3 << 30, MemAvailable: uint64((1.2 - 0.5*load) * (1 << 30)), ExitdRSS: uint64((0.4 + 0.1*load) * (1 << 30)),
			CPUTotalPm: uint16(200 + 500*load), CPUExitdPm: uint16(150 + 300*load), NCPU: 2,
			WANRx: uint64(load * 90e6 / 8 * sec), WANTx: uint64(load * 22e6 / 8 * sec),
		}
	}
	out[0].IntervalMs = 0
	return out
}

func TestRecordRoundTrip(t *testing.T) {
	if 8+sampleSize+4 > RecordSize {
		t.Fatalf("sample (%d bytes) does not fit a %d-byte record", sampleSize, RecordSize)
	}
	s := synthetic(3, 15*time.Second)[2]
	buf := make([]byte, RecordSize)
	encodeRecord(buf, 42, &s)
	seq, got, err := decodeRecord(buf)
	if err != nil || seq != 42 || got != s {
		t.Fatalf("round trip: seq %d err %v\n got %+v\nwant %+v", seq, err, got, s)
	}
	for _, tc := range []struct {
		name string
		mod  func([]byte)
	}{
		{"flipped bit", func(b []byte) { b[20] ^= 1 }},
		{"zero seq", func(b []byte) { clear(b) }},
		{"torn tail", func(b []byte) { clear(b[128:]) }},
	} {
		b := append([]byte(nil), buf...)
		tc.mod(b)
		if _, _, err := decodeRecord(b); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, _, err := decodeRecord(buf[:10]); err == nil {
		t.Error("short record accepted")
	}
}

func TestRingWrapsAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.ring")
	r, err := OpenRing(path, 5)
	if err != nil {
		t.Fatal(err)
	}
	ss := synthetic(8, time.Second)
	for _, s := range ss {
		if err := r.Append(s); err != nil {
			t.Fatal(err)
		}
	}
	if r.Len() != 5 {
		t.Fatalf("len %d, want 5", r.Len())
	}
	got := r.Since(time.Time{})
	if got[0] != ss[3] || got[4] != ss[7] {
		t.Fatalf("ring holds %d..%d", got[0].TimeMs, got[4].TimeMs)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	st, _ := os.Stat(path)
	if st.Size() != RecordSize*6 || st.Mode().Perm() != 0o600 {
		t.Fatalf("file size %d mode %v, want %d 0600", st.Size(), st.Mode().Perm(), RecordSize*6)
	}
	// Reopen: same samples, appends continue after the newest.
	r, err = OpenRing(path, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Since(time.Time{}); len(got) != 5 || got[0] != ss[3] {
		t.Fatalf("after reopen: %d samples", len(got))
	}
	extra := ss[7]
	extra.TimeMs += 1000
	r.Append(extra)
	r.Close()
	fromFile, err := ReadRingFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromFile) != 5 || fromFile[0] != ss[4] || fromFile[4] != extra {
		t.Fatalf("ReadRingFile: %d samples, first %d", len(fromFile), fromFile[0].TimeMs)
	}
}

func TestRingSkipsTornRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.ring")
	r, _ := OpenRing(path, 4)
	for _, s := range synthetic(3, time.Second) {
		r.Append(s)
	}
	r.Close()
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff, 0xff}, RecordSize*2+40) // slot 1 (seq 2) torn
	f.Close()
	got, err := ReadRingFile(path)
	if err != nil || len(got) != 2 {
		t.Fatalf("got %d samples, %v; want 2 (the torn one skipped)", len(got), err)
	}
}

func TestRingRecreatesForeignFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"garbage", []byte(strings.Repeat("x", 3000))},
		{"other capacity", nil}, // filled below
	}
	other := filepath.Join(dir, "other")
	r, _ := OpenRing(other, 3)
	r.Append(synthetic(1, time.Second)[0])
	r.Close()
	tests[2].content, _ = os.ReadFile(other)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			os.WriteFile(path, tc.content, 0o600)
			r, err := OpenRing(path, 10)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Len() != 0 {
				t.Fatalf("%d samples from a foreign file", r.Len())
			}
			if err := r.Append(synthetic(1, time.Second)[0]); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := ReadRingFile(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("missing file read")
	}
	os.WriteFile(filepath.Join(dir, "junk"), []byte("junk"), 0o600)
	if _, err := ReadRingFile(filepath.Join(dir, "junk")); err == nil || !strings.Contains(err.Error(), "not a load ring") {
		t.Fatalf("junk: %v", err)
	}
}

func TestRingSince(t *testing.T) {
	r := NewMemoryRing(100)
	ss := synthetic(10, 15*time.Second)
	for _, s := range ss {
		r.Append(s)
	}
	got := r.Since(t0.Add(60 * time.Second))
	if len(got) != 6 || got[0] != ss[4] {
		t.Fatalf("since +60s: %d samples", len(got))
	}
	if got := r.Since(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("since the future: %d", len(got))
	}
}

func TestSamplerDeltas(t *testing.T) {
	bounds := make([]time.Duration, 16)
	for i := range bounds {
		bounds[i] = time.Duration(int64(1) << (15 + i))
	}
	readings := []Reading{
		{At: t0, BytesIn: 1000, BytesOut: 5000, CPUBusy: 100, CPUTotal: 1000, ExitdCPU: 10, Configured: 3,
			Sojourn: make([]uint64, 16), SojournBounds: bounds, Conntrack: -1, ConntrackMax: -1},
		{At: t0.Add(15 * time.Second), BytesIn: 2500, BytesOut: 20000, CPUBusy: 400, CPUTotal: 4000, ExitdCPU: 160,
			Active: 2, Idle: 1, Configured: 3, OverflowDrops: 4, NATDrops: 9, LeakDrops: 2,
			Sojourn: []uint64{90, 0, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, SojournBounds: bounds, Conntrack: 10, ConntrackMax: 100},
		// Counters reset (a restart would not do this, a removed member might).
		{At: t0.Add(30 * time.Second), BytesIn: 100, BytesOut: 200, CPUBusy: 500, CPUTotal: 5000, ExitdCPU: 170,
			Sojourn: make([]uint64, 16), SojournBounds: bounds},
	}
	i := 0
	r := NewMemoryRing(10)
	s := NewSampler(r, func(time.Time) Reading { i++; return readings[i-1] }, nil)
	first := s.Sample(t0)
	if first.IntervalMs != 0 || first.BytesIn != 0 || first.Configured != 3 {
		t.Fatalf("first sample is a baseline: %+v", first)
	}
	second := s.Sample(t0)
	want := Sample{TimeMs: readings[1].At.UnixMilli(), IntervalMs: 15000, BytesIn: 1500, BytesOut: 15000,
		Active: 2, Idle: 1, Configured: 3, OverflowDrops: 4, NATDrops: 9, LeakDrops: 2,
		CPUTotalPm: 100, CPUExitdPm: 50, Conntrack: 10, ConntrackMax: 100,
		SojournP99Us: uint32(bounds[5].Microseconds())}
	if second != want {
		t.Fatalf("second:\n got %+v\nwant %+v", second, want)
	}
	third := s.Sample(t0)
	if third.BytesIn != 100 || third.BytesOut != 200 {
		t.Fatalf("reset counters: %+v", third)
	}
	if r.Len() != 3 {
		t.Fatalf("ring has %d", r.Len())
	}
}

func TestQuantile(t *testing.T) {
	bounds := []time.Duration{1, 2, 4, 8}
	tests := []struct {
		name      string
		prev, cur []uint64
		q         float64
		want      time.Duration
	}{
		{"empty", nil, []uint64{0, 0, 0, 0}, 0.99, 0},
		{"all in first", nil, []uint64{10, 0, 0, 0}, 0.99, 1},
		{"p50 middle", nil, []uint64{1, 5, 1, 0}, 0.5, 2},
		{"delta only", []uint64{100, 0, 0, 0}, []uint64{100, 0, 3, 0}, 0.99, 4},
		{"open last bucket reports its lower bound", nil, []uint64{0, 0, 0, 5}, 0.99, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.prev, tc.cur, bounds, tc.q); got != tc.want {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
}

func TestSamplerRun(t *testing.T) {
	r := NewMemoryRing(10)
	n := 0
	s := NewSampler(r, func(now time.Time) Reading { n++; return Reading{At: now, BytesOut: uint64(n) * 100} }, nil)
	ticks := make(chan time.Time)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { s.Run(ctx, func() time.Time { return t0 }, ticks); close(done) }()
	ticks <- t0.Add(time.Second)
	ticks <- t0.Add(2 * time.Second)
	cancel()
	<-done
	ss := r.Since(time.Time{})
	if len(ss) != 3 || ss[2].BytesOut != 100 || ss[2].IntervalMs != 1000 {
		t.Fatalf("samples %+v", ss)
	}
}

func TestFiguresComplete(t *testing.T) {
	figs := Figures(synthetic(200, 15*time.Second))
	wantTitles := []string{"Transfer rates", "Traffic ratio, in to out", "Members by session state", "Members and bandwidth",
		"Aggregated data transfers", "Memory", "CPU", "Free capacity", "Scheduler drops and ECN marks", "Queueing delay",
		"Drops outside the scheduler"}
	if len(figs) != len(wantTitles) {
		t.Fatalf("%d figures, want %d", len(figs), len(wantTitles))
	}
	for i, f := range figs {
		if f.Title != wantTitles[i] {
			t.Errorf("figure %d: %q, want %q", i+1, f.Title, wantTitles[i])
		}
		if f.Points() == 0 {
			t.Errorf("%s: no data", f.ID)
		}
		if !strings.HasPrefix(f.ID, "fig") || f.Caption == "" || f.YLabel == "" {
			t.Errorf("%s: id/caption/label missing", f.Title)
		}
	}
	// The ratio of the synthetic data is 4-5, like the Dante machines.
	for _, p := range figs[1].Series[0].Points {
		if p.Y < 3.9 || p.Y > 5.1 {
			t.Fatalf("ratio %v outside 4..5", p.Y)
		}
	}
	// Cumulative bytes never decrease.
	pts := figs[4].Series[0].Points
	for i := 1; i < len(pts); i++ {
		if pts[i].Y < pts[i-1].Y {
			t.Fatal("cumulative bytes went down")
		}
	}
}

func TestSummarize(t *testing.T) {
	ss := synthetic(100, 15*time.Second)
	s := Summarize(ss)
	if s.Samples != 100 || s.Interval != 15*time.Second || !s.From.Equal(t0) {
		t.Fatalf("summary header %+v", s)
	}
	if s.PeakOut < 80 || s.PeakOut > 85 || s.Ratio < 4 || s.Ratio > 5 || s.PeakSessions == 0 || s.MinConntrackFree <= 0 {
		t.Fatalf("summary %+v", s)
	}
	if z := Summarize(nil); z.Samples != 0 || z.MinConntrackFree != -1 {
		t.Fatalf("empty summary %+v", z)
	}
}

// wellFormed parses an SVG or XHTML fragment as XML.
func wellFormed(t *testing.T, name, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", name, err)
		}
	}
}

func TestSVGWellFormed(t *testing.T) {
	cases := map[string][]Sample{
		"50h":    synthetic(12000, 15*time.Second),
		"minute": synthetic(60, time.Second),
		"one":    synthetic(1, time.Second),
		"none":   nil,
	}
	// A gap (the node was down) splits lines.
	gapped := synthetic(50, 15*time.Second)
	for i := 25; i < 50; i++ {
		gapped[i].TimeMs += int64(time.Hour / time.Millisecond)
	}
	cases["gap"] = gapped
	for name, ss := range cases {
		t.Run(name, func(t *testing.T) {
			for _, f := range Figures(ss) {
				svg := SVG(&f, time.UTC)
				wellFormed(t, f.ID, svg)
				if f.Points() == 0 && !strings.Contains(svg, "no data") {
					t.Errorf("%s: empty figure without a note", f.ID)
				}
				if name == "gap" && f.Kind == Lines && f.Points() > 0 && strings.Count(svg, "<polyline") < 2*len(f.Series) {
					t.Errorf("%s: gap not shown as a break", f.ID)
				}
			}
		})
	}
}

func TestWriteReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	ss := synthetic(400, 15*time.Second)
	w, err := Write(dir, ss, Meta{Node: "exit-1 <test>", Version: "v0.1", Generated: t0.Add(2 * time.Hour), Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Figures) != 11 || w.Index != "index.html" || w.CSV != "samples.csv" {
		t.Fatalf("written %+v", w)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{"<!DOCTYPE html>", "exit-1 &lt;test&gt;", "Key figures", "Figure 11: Drops outside the scheduler.", "Peak rate to members"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(s, "<svg "); n != 11 {
		t.Fatalf("page inlines %d SVGs, want 11", n)
	}
	if strings.Contains(s, "http://") && strings.Count(s, "http://") != strings.Count(s, "http://www.w3.org/2000/svg") {
		t.Fatal("page refers to something online")
	}
	for _, f := range w.Figures {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, f, string(b))
	}
	csv, _ := os.ReadFile(filepath.Join(dir, "samples.csv"))
	if lines := strings.Count(string(csv), "\n"); lines != 401 || !strings.HasPrefix(string(csv), "time,interval_ms,bytes_in") {
		t.Fatalf("csv: %d lines\n%.200s", lines, csv)
	}
	if _, err := Write(filepath.Join(dir, "index.html", "x"), ss, Meta{}); err == nil {
		t.Fatal("write under a file succeeded")
	}
	if _, err := Write(filepath.Join(t.TempDir(), "empty"), nil, Meta{}); err != nil {
		t.Fatal("empty report:", err)
	}
}

func TestNiceTicksAndFormat(t *testing.T) {
	got := niceTicks(0, 86, 5)
	if got[0] != 0 || got[len(got)-1] < 86 || len(got) > 8 {
		t.Fatalf("ticks %v", got)
	}
	for v, want := range map[float64]string{0: "0", 0.25: "0.25", 12: "12", 12500: "12.5k", 2.5e6: "2.5M", 3e9: "3G"} {
		if fmtNum(v) != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, fmtNum(v), want)
		}
	}
	if step, layout := timeStep(float64(50 * time.Hour / time.Millisecond)); step < float64(6*time.Hour/time.Millisecond) || layout != "Jan 2 15:04" {
		t.Fatalf("50h: step %v %s", step, layout)
	}
	if _, layout := timeStep(60_000); layout != "15:04:05" {
		t.Fatalf("1 min layout %s", layout)
	}
}

func TestThinKeepsPeaks(t *testing.T) {
	pts := make([]Point, 20000)
	for i := range pts {
		pts[i] = Point{float64(i), 1}
	}
	pts[12345].Y = 99
	out := thin(pts)
	if len(out) > maxPointsPerPolyline+2 {
		t.Fatalf("%d points after thinning", len(out))
	}
	peak := false
	for _, p := range out {
		peak = peak || p.Y == 99
	}
	if !peak {
		t.Fatal("peak lost")
	}
}

func BenchmarkWrite50h(b *testing.B) {
	ss := synthetic(DefaultCapacity, 15*time.Second)
	dir := b.TempDir()
	for b.Loop() {
		if _, err := Write(dir, ss, Meta{Location: time.UTC}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteExample writes a 50-hour synthetic report to
// $EXITD_REPORT_EXAMPLE (for looking at it) when set.
func TestWriteExample(t *testing.T) {
	dir := os.Getenv("EXITD_REPORT_EXAMPLE")
	if dir == "" {
		t.Skip("set EXITD_REPORT_EXAMPLE=DIR to write an example report")
	}
	if _, err := Write(dir, synthetic(DefaultCapacity, 15*time.Second), Meta{Node: "example (synthetic data)", Version: "dev", Generated: t0.Add(50 * time.Hour), Location: time.UTC}); err != nil {
		t.Fatal(err)
	}
}
