package portforward

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Proto is the transport protocol of a mapping; its values are the request
// opcodes.
type Proto uint8

// The protocols.
const (
	UDP = Proto(OpMapUDP)
	TCP = Proto(OpMapTCP)
)

func (p Proto) String() string {
	switch p {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// MarshalText encodes p as "udp" or "tcp".
func (p Proto) MarshalText() ([]byte, error) {
	if p != UDP && p != TCP {
		return nil, fmt.Errorf("portforward: invalid protocol %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText accepts "udp" and "tcp".
func (p *Proto) UnmarshalText(b []byte) error {
	switch string(b) {
	case "udp":
		*p = UDP
	case "tcp":
		*p = TCP
	default:
		return fmt.Errorf("portforward: unknown protocol %q", b)
	}
	return nil
}

// other is the companion protocol whose port a mapping reserves (§3.3).
func (p Proto) other() Proto { return UDP + TCP - p }

// Mapping is one port mapping: traffic to the exit's WAN address on
// External (of Proto) is forwarded to Internal, the member's inner IPv4
// address and port.
type Mapping struct {
	Member   string         `json:"member"`
	Proto    Proto          `json:"proto"`
	Internal netip.AddrPort `json:"internal"`
	External uint16         `json:"external"`
	Expires  time.Time      `json:"expires"`
}

// check reports what makes m impossible (not what the policy forbids).
func (m *Mapping) check() error {
	switch {
	case m.Member == "":
		return errors.New("no member")
	case m.Proto != UDP && m.Proto != TCP:
		return fmt.Errorf("invalid protocol %d", uint8(m.Proto))
	case !m.Internal.Addr().Is4():
		return fmt.Errorf("internal address %v is not IPv4", m.Internal)
	case m.Internal.Port() == 0:
		return errors.New("internal port 0")
	case m.External == 0:
		return errors.New("external port 0")
	case m.Expires.IsZero():
		return errors.New("no expiry time")
	}
	return nil
}

// checkMappings reports the first impossible mapping of ms, or two that
// cannot coexist: the same member, protocol and internal port twice, or an
// external port held twice (for one protocol, or for both by two members).
func checkMappings(ms []Mapping) error {
	keys := make(map[mapKey]bool, len(ms))
	owners := make(map[extKey]string, len(ms))
	for i := range ms {
		m := &ms[i]
		if err := m.check(); err != nil {
			return fmt.Errorf("mapping %d: %w", i, err)
		}
		k := mapKey{m.Member, m.Proto, m.Internal.Port()}
		if keys[k] {
			return fmt.Errorf("mapping %d: second %s mapping of member %q for internal port %d", i, m.Proto, m.Member, k.port)
		}
		keys[k] = true
		if _, taken := owners[extKey{m.Proto, m.External}]; taken {
			return fmt.Errorf("mapping %d: external %s port %d mapped twice", i, m.Proto, m.External)
		}
		if o, taken := owners[extKey{m.Proto.other(), m.External}]; taken && o != m.Member {
			return fmt.Errorf("mapping %d: external port %d held by members %q and %q", i, m.External, o, m.Member)
		}
		owners[extKey{m.Proto, m.External}] = m.Member
	}
	return nil
}

// Installer programs the mappings into the packet filter (the nat side's
// DNAT map on the WAN address).
type Installer interface {
	// Apply replaces the installed mappings with all, the whole current
	// set, sorted by member, protocol and external port. It must be atomic:
	// after an error the previously applied set is still in force. all is
	// shared with the Store and must not be modified. Expires is
	// informational: the Table removes mappings itself when they expire,
	// and renewals do not call Apply.
	Apply(all []Mapping) error
}

// Store keeps the mappings across restarts.
type Store interface {
	// Load returns the saved mappings (nil if none were ever saved),
	// expired ones included. An error means saved state exists but cannot
	// be read; it must name where the state is.
	Load() ([]Mapping, error)
	// Save durably replaces the saved mappings with all (sorted as for
	// Apply, not to be modified).
	Save(all []Mapping) error
}
