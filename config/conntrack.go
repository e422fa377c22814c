package config

import "exitd/bounds"

// Defaults of the fair share of connection-tracking state.
const (
	DefaultNewConnRate  = 500  // new connections per second, per member and family
	DefaultNewConnBurst = 2000 // new connections at once
)

// Conntrack is each member's fair share of the kernel's connection
// tracking table (docs/nat.md, "Fair state"): a quota of tracked
// connections and a new-connection rate limit, per member and address
// family. Members may have their own quota (exitctl member set
// --max-conns).
type Conntrack struct {
	// MaxConnsPerMember is each member's quota of tracked connections: 0
	// (default) derives it from nf_conntrack_max and the number of
	// members, at start and on reload; negative turns quotas off (members'
	// own quotas still apply).
	MaxConnsPerMember int `toml:"max_conns_per_member"`
	// NewConnRate and NewConnBurst limit each member's new connections per
	// second: 0 takes the defaults (500/s, burst 2,000), a negative rate
	// turns the limit off.
	NewConnRate  int `toml:"new_conn_rate"`
	NewConnBurst int `toml:"new_conn_burst"`
}

// QuotaOff reports whether the node-wide quota is off.
func (c Conntrack) QuotaOff() bool { return c.MaxConnsPerMember < 0 }

// QuotaAuto reports whether the quota is derived from the table size.
func (c Conntrack) QuotaAuto() bool { return c.MaxConnsPerMember == 0 }

// Rate returns the new-connection rate limit and burst, 0 and 0 when off.
func (c Conntrack) Rate() (perSecond, burst int) {
	if c.NewConnRate < 0 {
		return 0, 0
	}
	return c.NewConnRate, c.NewConnBurst
}

func (c *Conntrack) finish() error {
	if q := c.MaxConnsPerMember; q > 0 && (q < bounds.MinConns || q > bounds.MaxConns) {
		return bad("conntrack.max_conns_per_member", "must be %d-%d, 0 (auto) or negative (off), got %d", bounds.MinConns, bounds.MaxConns, q)
	}
	if c.NewConnRate == 0 {
		c.NewConnRate = DefaultNewConnRate
	}
	if c.NewConnRate > 1_000_000 {
		return bad("conntrack.new_conn_rate", "must be at most 1000000 per second, got %d", c.NewConnRate)
	}
	switch {
	case c.NewConnBurst == 0 && c.NewConnRate == DefaultNewConnRate:
		c.NewConnBurst = DefaultNewConnBurst
	case c.NewConnBurst == 0:
		c.NewConnBurst = 4 * max(c.NewConnRate, 0)
	case c.NewConnBurst < 0 || c.NewConnBurst > 10_000_000:
		return bad("conntrack.new_conn_burst", "must be 1-10000000, got %d", c.NewConnBurst)
	}
	return nil
}
