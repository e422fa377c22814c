// Package report is exitd's load report: a compact time series the daemon
// samples every 15 s into a fixed-size ring file in state_dir, and the
// rendering of that series into the figures of the Dante load analysis
// (transfer rates, in/out ratio, members by state, members versus
// bandwidth, cumulative bytes, memory, CPU, free capacity, scheduler
// drops) as SVG files and one self-contained HTML page.
//
// It imports the standard library only; the daemon fills Readings from
// its parts, exitctl renders Samples it fetched over the control API.
package report

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// Sample is one point of the load series: deltas over the interval that
// ends at TimeMs, and gauges at TimeMs. All fields are fixed-size so a
// sample is a fixed-size record on disk.
type Sample struct {
	TimeMs     int64  `json:"t"`           // UNIX ms
	IntervalMs uint32 `json:"interval_ms"` // since the previous sample; 0 for the first after a start

	// WireGuard bytes: In received from members (their upload), Out sent
	// to them (their download).
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// The WAN interface's bytes (what ifconfig showed in the Dante report).
	WANRx uint64 `json:"wan_rx"`
	WANTx uint64 `json:"wan_tx"`

	// Members now.
	Configured  uint32 `json:"configured"`
	Active      uint32 `json:"active"`
	Idle        uint32 `json:"idle"`
	Handshaking uint32 `json:"handshaking"`

	// Scheduler: drops and marks in the interval, queue now, and the 99th
	// percentile of queueing delay of the packets sent in the interval.
	OverflowDrops uint64 `json:"overflow_drops"`
	CoDelDrops    uint64 `json:"codel_drops"`
	CEMarks       uint64 `json:"ce_marks"`
	QueueBytes    uint64 `json:"queue_bytes"`
	SojournP99Us  uint32 `json:"sojourn_p99_us"`

	// Drops elsewhere in the interval: nftables (all reasons; LeakDrops
	// is the leak reason alone), TUN+WAN interface drops, UDP receive
	// buffer errors.
	NATDrops     uint64 `json:"nat_drops"`
	LeakDrops    uint64 `json:"leak_drops"`
	LinkDrops    uint64 `json:"link_drops"`
	UDPRcvErrors uint64 `json:"udp_rcvbuf_errors"`

	// Capacity now: conntrack entries and table size, member address
	// slots in the prefixes.
	Conntrack    uint32 `json:"conntrack"`
	ConntrackMax uint32 `json:"conntrack_max"`
	MemberSlots  uint32 `json:"member_slots"`

	// Memory now, bytes.
	MemTotal     uint64 `json:"mem_total"`
	MemAvailable uint64 `json:"mem_available"`
	SwapTotal    uint64 `json:"swap_total"`
	SwapFree     uint64 `json:"swap_free"`
	ExitdRSS     uint64 `json:"exitd_rss"`

	// CPU over the interval, in per mille of all CPUs (1000 = every CPU
	// busy), and the CPU count.
	CPUTotalPm uint16 `json:"cpu_total_pm"`
	CPUExitdPm uint16 `json:"cpu_exitd_pm"`
	NCPU       uint16 `json:"ncpu"`
	_          uint16
}

// Time is TimeMs as a time.Time.
func (s *Sample) Time() time.Time { return time.UnixMilli(s.TimeMs) }

// Interval is IntervalMs as a Duration.
func (s *Sample) Interval() time.Duration { return time.Duration(s.IntervalMs) * time.Millisecond }

// RecordSize is a sample's size on disk: the encoded fields, padding for
// fields later versions add, a sequence number and a CRC.
const RecordSize = 256

var sampleSize = binary.Size(Sample{})

// errBadRecord marks a slot that holds no valid sample (never written,
// torn, or of another format).
var errBadRecord = errors.New("report: bad record")

// encodeRecord writes seq and s into a RecordSize buffer: seq (8), the
// sample, zero padding, CRC32-C of everything before it (4).
func encodeRecord(buf []byte, seq uint64, s *Sample) {
	clear(buf[:RecordSize])
	binary.LittleEndian.PutUint64(buf, seq)
	if _, err := binary.Encode(buf[8:], binary.LittleEndian, s); err != nil {
		panic(err) // fixed-size struct into a buffer checked by TestRecordFits
	}
	binary.LittleEndian.PutUint32(buf[RecordSize-4:], crc32.Checksum(buf[:RecordSize-4], castagnoli))
}

// decodeRecord reverses encodeRecord; a zero seq is an empty slot.
func decodeRecord(buf []byte) (uint64, Sample, error) {
	var s Sample
	if len(buf) < RecordSize {
		return 0, s, errBadRecord
	}
	if crc32.Checksum(buf[:RecordSize-4], castagnoli) != binary.LittleEndian.Uint32(buf[RecordSize-4:]) {
		return 0, s, errBadRecord
	}
	seq := binary.LittleEndian.Uint64(buf)
	if seq == 0 {
		return 0, s, errBadRecord
	}
	if _, err := binary.Decode(buf[8:8+sampleSize], binary.LittleEndian, &s); err != nil {
		return 0, s, errBadRecord
	}
	return seq, s, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
