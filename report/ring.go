package report

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

/* Ring file layout (little-endian), fixed size: RecordSize × (1 + capacity):

     header   magic "exitd-load-ring\n" (16) | version u32 | record size u32 |
              capacity u32 | zero padding | CRC32-C u32   (one record long)
     slot i   record of the sample with sequence number seq, i = (seq-1) mod capacity

   Appending writes one record in place (one pwrite, no rename): a torn
   write fails its CRC and that slot is skipped on load. On open, the valid
   records are ordered by seq and the next seq follows the largest. A file
   whose header does not match (other capacity, other version, garbage) is
   recreated empty.
*/

const (
	ringMagic   = "exitd-load-ring\n"
	ringVersion = 1
)

// DefaultCapacity holds 50 hours of samples at the default 15 s interval
// (≈ 3 MiB on disk).
const DefaultCapacity = 12000

// Ring is the bounded series: the newest capacity samples, in memory and,
// when opened on a file, on disk. It is safe for concurrent use.
type Ring struct {
	mu      sync.Mutex // guards all below
	f       *os.File   // nil: memory only
	cap     int
	samples []Sample // oldest first, at most cap
	next    uint64   // seq of the next append (≥ 1)
	rec     []byte   // record buffer
}

// NewMemoryRing returns a ring that keeps capacity samples in memory only.
func NewMemoryRing(capacity int) *Ring {
	return &Ring{cap: max(capacity, 1), next: 1, rec: make([]byte, RecordSize)}
}

// OpenRing opens or creates the ring file at path (mode 0600) and loads
// its samples.
func OpenRing(path string, capacity int) (*Ring, error) {
	r := NewMemoryRing(capacity)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("report: open ring: %w", err)
	}
	samples, next, err := load(f, r.cap)
	if err != nil { // not ours or another shape: start over
		if err := initFile(f, r.cap); err != nil {
			f.Close()
			return nil, err
		}
		samples, next = nil, 1
	}
	r.f, r.samples, r.next = f, samples, next
	return r, nil
}

// ReadRingFile returns the samples of a ring file without modifying it
// (exitctl report --from).
func ReadRingFile(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	cap, err := readHeader(f)
	if err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	s, _, err := load(f, cap)
	if err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return s, nil
}

func header(capacity int) []byte {
	h := make([]byte, RecordSize)
	copy(h, ringMagic)
	binary.LittleEndian.PutUint32(h[16:], ringVersion)
	binary.LittleEndian.PutUint32(h[20:], RecordSize)
	binary.LittleEndian.PutUint32(h[24:], uint32(capacity))
	binary.LittleEndian.PutUint32(h[RecordSize-4:], crc32.Checksum(h[:RecordSize-4], castagnoli))
	return h
}

func readHeader(f io.ReaderAt) (int, error) {
	h := make([]byte, RecordSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		return 0, fmt.Errorf("not a load ring: %w", err)
	}
	cap := int(binary.LittleEndian.Uint32(h[24:]))
	if cap <= 0 || !bytes.Equal(h, header(cap)) {
		return 0, errors.New("not a load ring of this version")
	}
	return cap, nil
}

func initFile(f *os.File, capacity int) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("report: init ring: %w", err)
	}
	if _, err := f.WriteAt(header(capacity), 0); err != nil {
		return fmt.Errorf("report: init ring: %w", err)
	}
	if err := f.Truncate(int64(RecordSize) * int64(1+capacity)); err != nil {
		return fmt.Errorf("report: init ring: %w", err)
	}
	return nil
}

// load reads every valid record of a file of capacity slots.
func load(f io.ReaderAt, capacity int) ([]Sample, uint64, error) {
	cap, err := readHeader(f)
	if err != nil {
		return nil, 0, err
	}
	if cap != capacity {
		return nil, 0, fmt.Errorf("capacity %d, want %d", cap, capacity)
	}
	data := make([]byte, RecordSize*capacity)
	n, err := f.ReadAt(data, RecordSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	type rec struct {
		seq uint64
		s   Sample
	}
	var recs []rec
	for off := 0; off+RecordSize <= n; off += RecordSize {
		seq, s, err := decodeRecord(data[off : off+RecordSize])
		if err != nil {
			continue
		}
		if int((seq-1)%uint64(capacity)) != off/RecordSize {
			continue // in the wrong slot: not a record we wrote
		}
		recs = append(recs, rec{seq, s})
	}
	slices.SortFunc(recs, func(a, b rec) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	out := make([]Sample, len(recs))
	next := uint64(1)
	for i, r := range recs {
		out[i] = r.s
		next = r.seq + 1
	}
	return out, next, nil
}

// Append adds s as the newest sample, dropping the oldest when full, and
// writes it to the file. The in-memory ring is updated even when the write
// fails.
func (r *Ring) Append(s Sample) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == r.cap {
		copy(r.samples, r.samples[1:])
		r.samples = r.samples[:r.cap-1]
	}
	r.samples = append(r.samples, s)
	seq := r.next
	r.next++
	if r.f == nil {
		return nil
	}
	encodeRecord(r.rec, seq, &s)
	off := int64(RecordSize) * int64(1+(seq-1)%uint64(r.cap))
	if _, err := r.f.WriteAt(r.rec, off); err != nil {
		return fmt.Errorf("report: append sample: %w", err)
	}
	return nil
}

// Since returns the samples at or after t, oldest first (a copy).
func (r *Ring) Since(t time.Time) []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := t.UnixMilli()
	var out []Sample
	for _, s := range r.samples { // a linear scan stays right if the clock stepped back
		if s.TimeMs >= ms {
			out = append(out, s)
		}
	}
	return out
}

// Len is the number of samples held.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}

// Close syncs and closes the file; it is idempotent.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := errors.Join(r.f.Sync(), r.f.Close())
	r.f = nil
	if err != nil {
		return fmt.Errorf("report: close ring: %w", err)
	}
	return nil
}
