package report

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seqSamples returns n samples 1 s apart with BytesOut = index, so order
// is easy to check.
func seqSamples(n int) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{TimeMs: t0.Add(time.Duration(i) * time.Second).UnixMilli(), IntervalMs: 1000, BytesOut: uint64(i)}
	}
	return out
}

func bytesOut(ss []Sample) []uint64 {
	out := make([]uint64, len(ss))
	for i, s := range ss {
		out[i] = s.BytesOut
	}
	return out
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for v := lo; v < hi; v++ {
		out = append(out, v)
	}
	return out
}

func TestMemoryRingCapacity(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		appends  int
		want     []uint64
	}{
		{"zero capacity holds one", 0, 3, []uint64{2}},
		{"negative capacity holds one", -5, 2, []uint64{1}},
		{"empty", 4, 0, nil},
		{"below capacity", 4, 3, seqRange(0, 3)},
		{"exactly full", 4, 4, seqRange(0, 4)},
		{"wrapped once", 4, 5, seqRange(1, 5)},
		{"wrapped many times", 3, 100, seqRange(97, 100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewMemoryRing(tc.capacity)
			for _, s := range seqSamples(tc.appends) {
				if err := r.Append(s); err != nil {
					t.Fatal(err)
				}
			}
			got := bytesOut(r.Since(time.Time{}))
			if !equalU64(got, tc.want) {
				t.Fatalf("ring holds %v, want %v", got, tc.want)
			}
			if r.Len() != len(tc.want) {
				t.Fatalf("Len %d, want %d", r.Len(), len(tc.want))
			}
			if err := r.Close(); err != nil {
				t.Fatalf("Close of a memory ring: %v", err)
			}
		})
	}
}

func TestRingSinceReturnsCopy(t *testing.T) {
	r := NewMemoryRing(4)
	for _, s := range seqSamples(3) {
		r.Append(s)
	}
	got := r.Since(time.Time{})
	got[0].BytesOut = 999
	if again := r.Since(time.Time{}); again[0].BytesOut != 0 {
		t.Fatal("Since exposes the ring's storage")
	}
}

func TestRingSinceClockSteppedBack(t *testing.T) {
	r := NewMemoryRing(10)
	times := []time.Duration{0, 10 * time.Second, 20 * time.Second, 5 * time.Second, 30 * time.Second}
	for i, d := range times {
		r.Append(Sample{TimeMs: t0.Add(d).UnixMilli(), BytesOut: uint64(i)})
	}
	tests := []struct {
		name  string
		since time.Time
		want  []uint64
	}{
		{"zero time: all", time.Time{}, []uint64{0, 1, 2, 3, 4}},
		{"exact boundary included", t0.Add(10 * time.Second), []uint64{1, 2, 4}},
		{"after a step back, later samples kept", t0.Add(25 * time.Second), []uint64{4}},
		{"one ms after the newest", t0.Add(30*time.Second + time.Millisecond), []uint64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bytesOut(r.Since(tc.since)); !equalU64(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRingFileWrapsManyTimesAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.ring")
	const capacity = 7
	r, err := OpenRing(path, capacity)
	if err != nil {
		t.Fatal(err)
	}
	ss := seqSamples(53)
	for _, s := range ss {
		if err := r.Append(s); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	want := seqRange(46, 53)
	got, err := ReadRingFile(path)
	if err != nil || !equalU64(bytesOut(got), want) {
		t.Fatalf("file holds %v (%v), want %v", bytesOut(got), err, want)
	}
	// Reopened, the next seq follows the largest: the new sample replaces
	// the oldest (46), not any other slot.
	r, err = OpenRing(path, capacity)
	if err != nil {
		t.Fatal(err)
	}
	if r.next != 54 {
		t.Fatalf("next seq %d, want 54", r.next)
	}
	r.Append(Sample{TimeMs: ss[52].TimeMs + 1000, BytesOut: 53})
	r.Close()
	got, _ = ReadRingFile(path)
	if want := seqRange(47, 54); !equalU64(bytesOut(got), want) {
		t.Fatalf("after reopen and append: %v, want %v", bytesOut(got), want)
	}
}

func TestRingReopenWithOtherCapacityStartsOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.ring")
	r, _ := OpenRing(path, 4)
	for _, s := range seqSamples(4) {
		r.Append(s)
	}
	r.Close()
	r, err := OpenRing(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Len() != 0 || r.next != 1 {
		t.Fatalf("other capacity: %d samples, next %d", r.Len(), r.next)
	}
	st, _ := os.Stat(path)
	if st.Size() != RecordSize*9 {
		t.Fatalf("file size %d, want %d", st.Size(), RecordSize*9)
	}
}

func TestReadRingFileUsesHeaderCapacity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.ring")
	r, _ := OpenRing(path, 3)
	for _, s := range seqSamples(5) {
		r.Append(s)
	}
	r.Close()
	before, _ := os.ReadFile(path)
	got, err := ReadRingFile(path)
	if err != nil || !equalU64(bytesOut(got), []uint64{2, 3, 4}) {
		t.Fatalf("got %v, %v", bytesOut(got), err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("ReadRingFile modified the file")
	}
}

// writeRaw writes b at off in the file at path.
func writeRaw(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestRingLoadCorruptRecords(t *testing.T) {
	const capacity = 5
	tests := []struct {
		name string
		// mod damages a file that holds seqs 1..5 (BytesOut 0..4).
		mod  func(t *testing.T, path string)
		want []uint64
		next uint64
	}{
		{"intact", func(*testing.T, string) {}, []uint64{0, 1, 2, 3, 4}, 6},
		{"newest torn: next seq goes back", func(t *testing.T, path string) {
			writeRaw(t, path, RecordSize*5+30, []byte{1, 2, 3})
		}, []uint64{0, 1, 2, 3}, 5},
		{"oldest zeroed", func(t *testing.T, path string) {
			writeRaw(t, path, RecordSize, make([]byte, RecordSize))
		}, []uint64{1, 2, 3, 4}, 6},
		{"record copied into the wrong slot", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			writeRaw(t, path, RecordSize*2, b[RecordSize*4:RecordSize*5]) // seq 4 into slot 1
		}, []uint64{0, 2, 3, 4}, 6},
		{"file truncated mid-record", func(t *testing.T, path string) {
			if err := os.Truncate(path, RecordSize*4+100); err != nil {
				t.Fatal(err)
			}
		}, []uint64{0, 1, 2}, 4},
		{"file truncated to the header", func(t *testing.T, path string) {
			os.Truncate(path, RecordSize)
		}, []uint64{}, 1},
		{"every record corrupt", func(t *testing.T, path string) {
			for i := int64(1); i <= capacity; i++ {
				writeRaw(t, path, RecordSize*i+8, []byte{0xde, 0xad})
			}
		}, []uint64{}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "load.ring")
			r, err := OpenRing(path, capacity)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range seqSamples(capacity) {
				r.Append(s)
			}
			r.Close()
			tc.mod(t, path)
			got, err := ReadRingFile(path)
			if err != nil || !equalU64(bytesOut(got), tc.want) {
				t.Fatalf("ReadRingFile: %v (%v), want %v", bytesOut(got), err, tc.want)
			}
			r, err = OpenRing(path, capacity)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if !equalU64(bytesOut(r.Since(time.Time{})), tc.want) || r.next != tc.next {
				t.Fatalf("OpenRing: %v next %d, want %v next %d", bytesOut(r.Since(time.Time{})), r.next, tc.want, tc.next)
			}
		})
	}
}

func TestReadHeaderRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(h []byte)
	}{
		{"other magic", func(h []byte) { copy(h, "exitd-load-rinG\n") }},
		{"other version", func(h []byte) { binary.LittleEndian.PutUint32(h[16:], ringVersion+1) }},
		{"other record size", func(h []byte) { binary.LittleEndian.PutUint32(h[20:], RecordSize*2) }},
		{"zero capacity", func(h []byte) { binary.LittleEndian.PutUint32(h[24:], 0) }},
		{"capacity changed, CRC kept", func(h []byte) { binary.LittleEndian.PutUint32(h[24:], 11) }},
		{"padding not zero", func(h []byte) { h[100] = 1 }},
		{"bad CRC", func(h []byte) { h[RecordSize-1] ^= 0xff }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := header(10)
			tc.mod(h)
			if _, err := readHeader(bytes.NewReader(h)); err == nil {
				t.Fatal("header accepted")
			}
			path := filepath.Join(t.TempDir(), "load.ring")
			os.WriteFile(path, h, 0o600)
			if _, err := ReadRingFile(path); err == nil || !strings.Contains(err.Error(), "not a load ring") {
				t.Fatalf("ReadRingFile: %v", err)
			}
		})
	}
	if c, err := readHeader(bytes.NewReader(header(12000))); err != nil || c != 12000 {
		t.Fatalf("valid header: %d, %v", c, err)
	}
	if _, err := readHeader(bytes.NewReader(header(10)[:RecordSize-1])); err == nil {
		t.Fatal("short header accepted")
	}
}

func TestOpenRingErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenRing(filepath.Join(dir, "missing", "load.ring"), 4); err == nil {
		t.Fatal("ring opened in a missing directory")
	}
	if _, err := OpenRing(dir, 4); err == nil {
		t.Fatal("ring opened on a directory")
	}
	if _, err := ReadRingFile(dir); err == nil {
		t.Fatal("directory read as a ring")
	}
}

func TestRingAppendWriteFailureKeepsMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.ring")
	r, err := OpenRing(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	r.f.Close() // the next write fails; Close below reports it
	err = r.Append(Sample{TimeMs: 1, BytesOut: 42})
	if err == nil || !strings.Contains(err.Error(), "append sample") {
		t.Fatalf("append to a closed file: %v", err)
	}
	if got := r.Since(time.Time{}); len(got) != 1 || got[0].BytesOut != 42 {
		t.Fatalf("memory ring not updated: %+v", got)
	}
	if err := r.Close(); err == nil {
		t.Fatal("Close of an already closed file reported no error")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRingAppendAfterCloseIsMemoryOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.ring")
	r, _ := OpenRing(path, 4)
	r.Append(seqSamples(1)[0])
	r.Close()
	if err := r.Append(seqSamples(2)[1]); err != nil {
		t.Fatalf("append after Close: %v", err)
	}
	if r.Len() != 2 {
		t.Fatalf("Len %d", r.Len())
	}
	got, _ := ReadRingFile(path)
	if len(got) != 1 {
		t.Fatalf("file has %d samples, want 1", len(got))
	}
}
