package report

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestBytesStr: the report prints bytes with the one formatter (IEC).
func TestBytesStr(t *testing.T) {
	for in, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 2 << 30: "2.0 GiB"} {
		if got := bytesStr(in); got != want {
			t.Errorf("bytesStr(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestSummaryRows(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	tests := []struct {
		name  string
		s     Summary
		check map[string][2]string // row name → value, note
	}{
		{"empty summary", Summary{MinConntrackFree: -1}, map[string][2]string{
			"Peak rate to members":           {"0.0 Mbit/s", ""},
			"Conntrack entries free: lowest": {"unknown (nf_conntrack not loaded)", ""},
			"Transferred to / from members":  {"0 B / 0 B", ""},
			"Peak p99 queueing delay":        {"0s", ""},
		}},
		{"values", Summary{PeakOut: 85.26, PeakOutAt: t0, AvgOut: 1, AvgIn: 0.25, TotalOut: 2e9, TotalIn: 5e8, Ratio: 4,
			PeakSessions: 7, PeakSessionsAt: t0.Add(time.Minute), MinConntrackFree: 0, SchedDrops: 3, CEMarks: 4,
			NATDrops: 10, LeakDrops: 2, PeakQueueDelay: 1500 * time.Microsecond, PeakCPU: 50, AvgCPU: 12.34}, map[string][2]string{
			"Peak rate to members":           {"85.3 Mbit/s", "at Mar 1 09:00:00"},
			"Average rate to / from members": {"1.0 Mbit/s / 0.2 Mbit/s", ""},
			"Transferred to / from members":  {"1.9 GiB / 476.8 MiB", ""},
			"Members receive per byte sent":  {"4.00", "the Dante analysis saw 4–5"},
			"Peak members with a session":    {"7", "at Mar 1 09:01:00"},
			"Conntrack entries free: lowest": {"0", ""},
			"Scheduler drops / CE marks":     {"3 / 4", ""},
			"nftables drops (leak)":          {"10 (2)", ""},
			"Peak p99 queueing delay":        {"1.5ms", ""},
			"CPU, all CPUs: peak / average":  {"50.0 % / 12.3 %", ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows := summaryRows(tc.s, loc)
			if len(rows) != 15 {
				t.Fatalf("%d rows", len(rows))
			}
			byName := map[string]row{}
			for _, r := range rows {
				byName[r.Name] = r
			}
			for name, want := range tc.check {
				r, ok := byName[name]
				if !ok {
					t.Errorf("no row %q", name)
					continue
				}
				if r.Value != want[0] || r.Note != want[1] {
					t.Errorf("%s: %q / %q, want %q / %q", name, r.Value, r.Note, want[0], want[1])
				}
			}
		})
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestWriteCSVValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.csv")
	big := maxSample()
	big.TimeMs = t0.UnixMilli()
	ss := []Sample{{TimeMs: t0.UnixMilli(), IntervalMs: 15000, BytesIn: 1, BytesOut: 2, NCPU: 4, CPUTotalPm: 1000}, big}
	if err := writeCSV(path, ss); err != nil {
		t.Fatal(err)
	}
	recs := readCSV(t, path)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	head := recs[0]
	// The header names are the JSON names, in the order of Sample.
	want := []string{"time"}
	st := reflect.TypeFor[Sample]()
	for i := 1; i < st.NumField(); i++ {
		if tag := st.Field(i).Tag.Get("json"); tag != "" {
			want = append(want, tag)
		}
	}
	if !reflect.DeepEqual(head, want) {
		t.Fatalf("header\n got %v\nwant %v", head, want)
	}
	col := func(rec []string, name string) string {
		for i, h := range head {
			if h == name {
				return rec[i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	checks := []struct {
		rec       int
		col, want string
	}{
		{1, "time", "2026-03-01T08:00:00Z"},
		{1, "interval_ms", "15000"},
		{1, "bytes_in", "1"},
		{1, "bytes_out", "2"},
		{1, "ncpu", "4"},
		{1, "cpu_total_pm", "1000"},
		{1, "wan_rx", "0"},
		{2, "bytes_in", "18446744073709551615"},
		{2, "interval_ms", "4294967295"},
		{2, "cpu_exitd_pm", "65535"},
		{2, "exitd_rss", "18446744073709551615"},
	}
	for _, c := range checks {
		if got := col(recs[c.rec], c.col); got != c.want {
			t.Errorf("row %d %s = %q, want %q", c.rec, c.col, got, c.want)
		}
	}
}

func TestWriteCSVEmptyAndError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.csv")
	if err := writeCSV(path, nil); err != nil {
		t.Fatal(err)
	}
	if recs := readCSV(t, path); len(recs) != 1 {
		t.Fatalf("%d records for no samples, want the header only", len(recs))
	}
	if err := writeCSV(filepath.Join(dir, "missing", "s.csv"), nil); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestWriteEmptyReport(t *testing.T) {
	dir := t.TempDir()
	w, err := Write(dir, nil, Meta{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Figures) != 11 {
		t.Fatalf("%d figures", len(w.Figures))
	}
	page, _ := os.ReadFile(filepath.Join(dir, w.Index))
	s := string(page)
	for _, want := range []string{"No samples in this period.", "— to —", "unknown (nf_conntrack not loaded)"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(s, "no data in this period"); n != 11 {
		t.Errorf("%d empty-figure notes, want 11", n)
	}
	if strings.Contains(s, "exitd load report —") {
		t.Error("title names a node although Meta.Node is empty")
	}
}

func TestWriteFilesAndOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	for _, n := range []int{50, 3} { // the second write replaces the first
		w, err := Write(dir, synthetic(n, 15*time.Second), Meta{Node: "n", Location: time.UTC, Generated: t0})
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range w.Figures {
			if !strings.HasPrefix(f, "fig"+twoDigits(i+1)+"-") || !strings.HasSuffix(f, ".svg") {
				t.Errorf("figure file %q", f)
			}
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Error(err)
			}
		}
		if recs := readCSV(t, filepath.Join(dir, w.CSV)); len(recs) != n+1 {
			t.Fatalf("csv %d records after writing %d samples", len(recs), n)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 13 {
		t.Fatalf("%d files, want 11 SVGs + csv + index", len(entries))
	}
}

func TestWritePageMeta(t *testing.T) {
	dir := t.TempDir()
	loc := time.FixedZone("EET", 2*3600)
	_, err := Write(dir, synthetic(10, 15*time.Second), Meta{Node: "exit-7", Version: "v9.9", Generated: t0.Add(time.Hour), Location: loc})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	s := string(page)
	for _, want := range []string{
		"<title>exitd load report — exit-7</title>",
		"exitd v9.9",
		"2026-03-01 10:00:00 EET to 2026-03-01 10:02:15 EET",
		"10 samples every 15s",
		"generated 2026-03-01 11:00:00 EET",
		`<figure id="fig01-transfer-rates" data-points="`,
		"(fig11-other-drops.svg)",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(s, "No samples in this period") {
		t.Error("non-empty report says it has no samples")
	}
}
