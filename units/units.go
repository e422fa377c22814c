// Package units is exitd's one definition of how quantities are printed:
// byte counts with IEC prefixes (KiB, MiB: memory and files are counted in
// powers of two) and rates in bits/s with SI prefixes (kbit/s, Mbit/s: as
// links are sold). Every table, log line and report uses these two.
//
// It imports the standard library only.
package units

import "fmt"

// FormatBytes prints b with IEC prefixes: "512 B", "1.5 KiB", "2.0 GiB".
func FormatBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// FormatBitRate prints a rate in bits/s with SI prefixes: "950 bit/s",
// "12.5 Mbit/s", "1.9 Gbit/s".
func FormatBitRate(bps float64) string {
	units := [...]string{"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"}
	if bps < 1000 {
		return fmt.Sprintf("%.0f %s", bps, units[0])
	}
	i := 0
	for bps >= 1000 && i < len(units)-1 {
		bps /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %s", bps, units[i])
}
