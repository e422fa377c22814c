package config

import "time"

// Defaults of port forwarding.
const (
	DefaultPortForwardFirst    = 61000 // above Linux's default ephemeral range (32768-60999)
	DefaultPortForwardLast     = 64999
	DefaultPortForwardMax      = 16
	DefaultPortForwardLifetime = 2 * time.Hour
)

// PortForward is NAT-PMP (RFC 6886) at the gateway address: members ask
// for a public port on the exit's WAN address (docs/nat.md, "Port
// forwarding"). Off by default.
type PortForward struct {
	Enabled bool `toml:"enabled"`
	// Ports are the WAN ports members may get (default 61000-64999). The
	// members' UDP listen port may not be among them.
	Ports PortRange `toml:"ports"`
	// MaxPerMember bounds each member's mappings, UDP and TCP together
	// (default 16).
	MaxPerMember int `toml:"max_per_member"`
	// MaxLifetime caps the lifetime a member asks for (default 2h); a
	// mapping ends when it expires unless the member renews it.
	MaxLifetime Duration `toml:"max_lifetime"`
}

func (p *PortForward) finish(listenPort int) error {
	if p.Ports == (PortRange{}) {
		p.Ports = PortRange{DefaultPortForwardFirst, DefaultPortForwardLast}
	}
	if p.Ports[0] == 0 || p.Ports[1] < p.Ports[0] {
		return bad("portforward.ports", "want first-last with 1 <= first <= last, got %d-%d", p.Ports[0], p.Ports[1])
	}
	if lp := uint16(listenPort); lp >= p.Ports[0] && lp <= p.Ports[1] {
		return bad("portforward.ports", "%d-%d includes the members' listen port %d", p.Ports[0], p.Ports[1], listenPort)
	}
	switch {
	case p.MaxPerMember == 0:
		p.MaxPerMember = DefaultPortForwardMax
	case p.MaxPerMember < 1 || p.MaxPerMember > 1024:
		return bad("portforward.max_per_member", "must be 1-1024, got %d", p.MaxPerMember)
	}
	switch d := p.MaxLifetime.Duration; {
	case d == 0:
		p.MaxLifetime.Duration = DefaultPortForwardLifetime
	case d < time.Second || d > 30*24*time.Hour:
		return bad("portforward.max_lifetime", "must be 1s to 720h, got %s", d)
	}
	return nil
}
