// Package members is the member registry: each member's identity (WireGuard
// public key), label, inner addresses and policy, the allocation of those
// addresses from the member prefixes, and their durable storage behind the
// Store interface: an embedded bbolt database under the node's state
// directory (Open), or a store a cluster of nodes shares (OpenStore with
// members/etcdstore), whose changes by other nodes Follow applies.
//
// Every change the registry acknowledges has been committed first (fsync,
// or the shared store's quorum). It imports only exitd/keys and
// exitd/bounds; it knows nothing of the tunnel, the daemon or etcd.
package members

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"exitd/bounds"
	"exitd/keys"
)

// Member is one VPN client allowed to use the node.
type Member struct {
	ID        uint32   `json:"id"`
	Label     string   `json:"label"`
	PublicKey keys.Key `json:"public_key"`
	// PrivateKey is kept only when the node generated the key pair, so the
	// client config can be shown again.
	PrivateKey *keys.Key  `json:"private_key,omitempty"`
	IPv4       netip.Addr `json:"ipv4,omitzero"`
	IPv6       netip.Addr `json:"ipv6,omitzero"`
	Created    time.Time  `json:"created"`
	// Weight multiplies the member's scheduler quantum, 1..MaxWeight. The
	// registry normalises it (a request's 0 means DefaultWeight); a stored
	// or returned member never has 0.
	Weight int `json:"weight,omitempty"`
	// EgressLimit and IngressLimit cap the member's download (towards the
	// member) and upload, in bits/s; 0 = no cap.
	EgressLimit  uint64 `json:"egress_limit,omitempty"`
	IngressLimit uint64 `json:"ingress_limit,omitempty"`
	// MaxConns overrides the node's connection quota for this member
	// (tracked connections per family); 0 = the node's default.
	MaxConns int `json:"max_conns,omitempty"`
	// Disabled members keep their entry and addresses but are not in the
	// device: they cannot connect.
	Disabled bool `json:"disabled,omitempty"`
	// Index is the member's slot in the prefixes: IPv4 and IPv6 are the
	// prefix base plus Index.
	Index uint32 `json:"index"`
	// ReusedAddress is set on a member just added whose addresses had an
	// earlier owner (after the quarantine): its tracked flows must go.
	// Never stored.
	ReusedAddress bool `json:"-"`
}

// Errors callers act on; the control API maps each to an error code.
var (
	ErrInvalidKey   = errors.New("invalid public key")
	ErrInvalidLabel = errors.New("invalid label")
	ErrDuplicate    = errors.New("member already exists")
	ErrExhausted    = errors.New("member prefix exhausted")
	ErrNotFound     = errors.New("no such member")
	// ErrInvalidPolicy: weight or rate cap out of range.
	ErrInvalidPolicy = errors.New("invalid member policy")
	// ErrStoreUnavailable: the shared store cannot be reached; the
	// registry still serves the members it knows, but refuses changes.
	ErrStoreUnavailable = errors.New("member store unavailable")
	// ErrConflict: another node changed the member meanwhile; the change
	// reaches this node within a second, then the request can be retried.
	ErrConflict = errors.New("member changed on another node")
)

// maxLabel bounds labels so they fit tables, metrics and logs.
const maxLabel = 64

// MaxWeight is the largest member weight (the scheduler's bound).
const MaxWeight = bounds.MaxWeight

// DefaultWeight is the weight of a member added without one.
const DefaultWeight = 1

// normWeight maps a request's weight onto a stored one: 0 means the default.
func normWeight(w int) int {
	if w == 0 {
		return DefaultWeight
	}
	return w
}

// Addrs are the member's inner addresses (IPv4 first), those of the
// families in use.
func (m Member) Addrs() []netip.Addr {
	a := make([]netip.Addr, 0, 2)
	if m.IPv4.IsValid() {
		a = append(a, m.IPv4)
	}
	if m.IPv6.IsValid() {
		a = append(a, m.IPv6)
	}
	return a
}

// Prefixes are the member's /32 and /128: its peer's allowed IPs.
func (m Member) Prefixes() []netip.Prefix {
	p := make([]netip.Prefix, 0, 2)
	for _, a := range m.Addrs() {
		p = append(p, netip.PrefixFrom(a, a.BitLen()))
	}
	return p
}

// MaxLimit bounds rate caps (400 Gbit/s, like the scheduler's rates).
const MaxLimit = bounds.MaxRate

// checkPolicy validates weight, rate caps and the connection quota.
func checkPolicy(weight int, egress, ingress uint64, maxConns int) error {
	if maxConns != 0 && (maxConns < bounds.MinConns || maxConns > bounds.MaxConns) {
		return fmt.Errorf("%w: connection quota must be %d-%d (0 = the node's default), got %d",
			ErrInvalidPolicy, bounds.MinConns, bounds.MaxConns, maxConns)
	}
	if weight < 0 || weight > MaxWeight {
		return fmt.Errorf("%w: weight must be 0-%d, got %d", ErrInvalidPolicy, MaxWeight, weight)
	}
	if egress > MaxLimit || ingress > MaxLimit {
		return fmt.Errorf("%w: rate cap above 400 Gbit/s", ErrInvalidPolicy)
	}
	return nil
}

// CheckLabel validates a member label: 1-64 characters of letters, digits,
// '.', '_', '-' and '@', not looking like a key.
func CheckLabel(s string) error {
	if s == "" || len(s) > maxLabel {
		return fmt.Errorf("%w: must be 1-%d characters", ErrInvalidLabel, maxLabel)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-' || r == '@'
		if !ok {
			return fmt.Errorf("%w: %q contains %q (allowed: letters, digits, . _ - @)", ErrInvalidLabel, s, r)
		}
	}
	return nil
}

// ConnectedWithin: a member whose last handshake is younger than this has a
// live session (WireGuard rekeys every 2 minutes while traffic flows). The
// control API, exitctl and the metrics all use this one definition.
const ConnectedWithin = 3 * time.Minute

// Connected reports whether a member whose last handshake was at last has
// a live session at now.
func Connected(last, now time.Time) bool {
	return !last.IsZero() && now.Sub(last) < ConnectedWithin
}
