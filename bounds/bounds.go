// Package bounds holds the bounds several layers must agree on — the
// registry that accepts a member's policy, the config that accepts the
// pacer rates, and the scheduler that enforces both: the largest member
// weight and the range of rates. One definition; it imports nothing.
package bounds

const (
	// MaxWeight is the largest member weight (the scheduler's quantum
	// multiplier); the smallest is 1.
	MaxWeight = 64
	// MinRate and MaxRate bound every rate in bits per second: pacer
	// rates and member rate caps (64 kbit/s to 400 Gbit/s).
	MinRate = 64_000
	MaxRate = 400_000_000_000
	// MinConns and MaxConns bound a member's connection quota (tracked
	// connections per family): below MinConns ordinary browsing fails,
	// above MaxConns it would not protect a 1M-entry conntrack table.
	MinConns = 64
	MaxConns = 1_000_000
)
