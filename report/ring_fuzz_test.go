package report

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// FuzzDecodeRecord: a ring file is read back after crashes and from
// operators' copies; no bytes may panic the decoder, and what decodes must
// re-encode to the same record.
func FuzzDecodeRecord(f *testing.F) {
	buf := make([]byte, RecordSize)
	s := synthetic(2, time.Second)[1]
	encodeRecord(buf, 7, &s)
	f.Add(append([]byte(nil), buf...))
	f.Add(make([]byte, RecordSize))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, s, err := decodeRecord(b)
		if err != nil {
			return
		}
		again := make([]byte, RecordSize)
		encodeRecord(again, seq, &s)
		if _, s2, err := decodeRecord(again); err != nil || s2 != s {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again[:8], b[:8]) {
			t.Fatal("seq changed")
		}
	})
}

// TestRingConcurrent appends while readers read (run with -race).
func TestRingConcurrent(t *testing.T) {
	r := NewMemoryRing(50)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if g == 0 {
					r.Append(Sample{TimeMs: int64(i)})
				} else {
					for _, s := range r.Since(time.UnixMilli(int64(i / 2))) {
						if s.TimeMs < int64(i/2) {
							t.Errorf("Since returned %d < %d", s.TimeMs, i/2)
						}
					}
					r.Len()
				}
			}
		}()
	}
	wg.Wait()
	if r.Len() != 50 {
		t.Fatalf("len %d", r.Len())
	}
}
