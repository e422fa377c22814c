package report

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"
	"time"
)

// maxSample has every field at its largest value.
func maxSample() Sample {
	return Sample{
		TimeMs: math.MaxInt64, IntervalMs: math.MaxUint32,
		BytesIn: math.MaxUint64, BytesOut: math.MaxUint64, WANRx: math.MaxUint64, WANTx: math.MaxUint64,
		Configured: math.MaxUint32, Active: math.MaxUint32, Idle: math.MaxUint32, Handshaking: math.MaxUint32,
		OverflowDrops: math.MaxUint64, CoDelDrops: math.MaxUint64, CEMarks: math.MaxUint64, QueueBytes: math.MaxUint64,
		SojournP99Us: math.MaxUint32, NATDrops: math.MaxUint64, LeakDrops: math.MaxUint64, LinkDrops: math.MaxUint64,
		UDPRcvErrors: math.MaxUint64, Conntrack: math.MaxUint32, ConntrackMax: math.MaxUint32, MemberSlots: math.MaxUint32,
		MemTotal: math.MaxUint64, MemAvailable: math.MaxUint64, SwapTotal: math.MaxUint64, SwapFree: math.MaxUint64,
		ExitdRSS: math.MaxUint64, CPUTotalPm: math.MaxUint16, CPUExitdPm: math.MaxUint16, NCPU: math.MaxUint16,
	}
}

func TestRecordRoundTripTable(t *testing.T) {
	tests := []struct {
		name string
		seq  uint64
		s    Sample
	}{
		{"zero sample, seq 1", 1, Sample{}},
		{"max values", math.MaxUint64, maxSample()},
		{"negative time", 7, Sample{TimeMs: -1, IntervalMs: 15000}},
		{"min time", 3, Sample{TimeMs: math.MinInt64}},
		{"synthetic", 12001, synthetic(2, 15*time.Second)[1]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, RecordSize)
			encodeRecord(buf, tc.seq, &tc.s)
			seq, got, err := decodeRecord(buf)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if seq != tc.seq || got != tc.s {
				t.Fatalf("seq %d (want %d)\n got %+v\nwant %+v", seq, tc.seq, got, tc.s)
			}
		})
	}
}

func TestEncodeRecordClearsStaleBytes(t *testing.T) {
	buf := make([]byte, RecordSize)
	for i := range buf {
		buf[i] = 0xAA
	}
	s := Sample{TimeMs: 5}
	encodeRecord(buf, 9, &s)
	for i := 8 + sampleSize; i < RecordSize-4; i++ {
		if buf[i] != 0 {
			t.Fatalf("padding byte %d = %#x, want 0", i, buf[i])
		}
	}
	if got := binary.LittleEndian.Uint64(buf); got != 9 {
		t.Fatalf("seq in header %d", got)
	}
}

func TestDecodeRecordRejectsCorruption(t *testing.T) {
	good := make([]byte, RecordSize)
	s := synthetic(2, 15*time.Second)[1]
	encodeRecord(good, 5, &s)
	// Every single-bit flip anywhere in the record must be detected.
	for i := 0; i < RecordSize; i++ {
		for bit := 0; bit < 8; bit++ {
			b := append([]byte(nil), good...)
			b[i] ^= 1 << bit
			if _, _, err := decodeRecord(b); !errors.Is(err, errBadRecord) {
				t.Fatalf("flip byte %d bit %d: err %v, want errBadRecord", i, bit, err)
			}
		}
	}
	tests := []struct {
		name string
		buf  func() []byte
	}{
		{"nil", func() []byte { return nil }},
		{"one short", func() []byte { return good[:RecordSize-1] }},
		{"all zero", func() []byte { return make([]byte, RecordSize) }},
		{"all 0xff", func() []byte {
			b := make([]byte, RecordSize)
			for i := range b {
				b[i] = 0xff
			}
			return b
		}},
		{"zero seq with a valid CRC", func() []byte {
			b := make([]byte, RecordSize)
			encodeRecord(b, 0, &s)
			return b
		}},
		{"CRC of another table", func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(b[RecordSize-4:], crc32.ChecksumIEEE(b[:RecordSize-4]))
			return b
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decodeRecord(tc.buf()); !errors.Is(err, errBadRecord) {
				t.Fatalf("err %v, want errBadRecord", err)
			}
		})
	}
}

func TestDecodeRecordIgnoresTrailingBytes(t *testing.T) {
	b := make([]byte, RecordSize+10)
	s := Sample{TimeMs: 77, BytesIn: 1}
	encodeRecord(b, 2, &s)
	b[RecordSize+3] = 0xff
	seq, got, err := decodeRecord(b)
	if err != nil || seq != 2 || got != s {
		t.Fatalf("seq %d err %v got %+v", seq, err, got)
	}
}

func TestSampleTimeAndInterval(t *testing.T) {
	tests := []struct {
		name     string
		s        Sample
		wantTime time.Time
		wantIv   time.Duration
	}{
		{"epoch, first sample", Sample{}, time.UnixMilli(0), 0},
		{"default interval", Sample{TimeMs: t0.UnixMilli(), IntervalMs: 15000}, t0, DefaultInterval},
		{"max interval", Sample{TimeMs: 1, IntervalMs: math.MaxUint32}, time.UnixMilli(1), time.Duration(math.MaxUint32) * time.Millisecond},
		{"before epoch", Sample{TimeMs: -1500}, time.UnixMilli(-1500), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Time(); !got.Equal(tc.wantTime) {
				t.Errorf("Time %v, want %v", got, tc.wantTime)
			}
			if got := tc.s.Interval(); got != tc.wantIv {
				t.Errorf("Interval %v, want %v", got, tc.wantIv)
			}
		})
	}
}
