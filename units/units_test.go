package units

import (
	"math"
	"testing"
)

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{1 << 20, "1.0 MiB"}, {5 << 30, "5.0 GiB"}, {math.MaxUint64, "16.0 EiB"},
	} {
		if got := FormatBytes(tc.in); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFormatBitRate(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0 bit/s"}, {999, "999 bit/s"}, {1000, "1.0 kbit/s"}, {12.5e6, "12.5 Mbit/s"},
		{1.9e9, "1.9 Gbit/s"}, {3e12, "3.0 Tbit/s"}, {5e15, "5000.0 Tbit/s"},
	} {
		if got := FormatBitRate(tc.in); got != tc.want {
			t.Errorf("FormatBitRate(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
