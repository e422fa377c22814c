// Package members is the member registry: each member's identity (WireGuard
// public key), label, inner addresses and policy, the allocation of those
// addresses from the member prefixes, and their durable storage in an
// embedded bbolt database under the node's state directory.
//
// Every change the registry acknowledges has been committed (fsync) first.
// It imports only exitd/keys; it knows nothing of the tunnel or the daemon.
package members

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

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
	Weight     int        `json:"weight,omitempty"`
	Disabled   bool       `json:"disabled,omitempty"`
	// Index is the member's slot in the prefixes: IPv4 and IPv6 are the
	// prefix base plus Index.
	Index uint32 `json:"index"`
}

// Errors callers act on; the control API maps each to an error code.
var (
	ErrInvalidKey   = errors.New("invalid public key")
	ErrInvalidLabel = errors.New("invalid label")
	ErrDuplicate    = errors.New("member already exists")
	ErrExhausted    = errors.New("member prefix exhausted")
	ErrNotFound     = errors.New("no such member")
)

// maxLabel bounds labels so they fit tables, metrics and logs.
const maxLabel = 64

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
