// Package control is exitd's local API: versioned JSON over HTTP on a unix
// socket. The server side (used by node) checks the peer's credentials and
// maps backend errors to stable error codes; the client side is what exitctl
// uses. The wire types are documented in docs/control-api.md.
//
// It imports exitd/members for the member types and errors only.
package control

import (
	"net/netip"
	"time"
)

// Version is the API version prefix of every path.
const Version = "v1"

// Error codes a client can act on.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidKey     = "invalid_key"
	CodeInvalidLabel   = "invalid_label"
	CodeDuplicate      = "duplicate"
	CodeExhausted      = "prefix_exhausted"
	CodeNotFound       = "not_found"
	CodeConflict       = "conflict"
	CodeForbidden      = "forbidden"
	CodeInternal       = "internal"
)

// AddMemberRequest is the body of POST /v1/members. An empty PublicKey makes
// the node generate the key pair and keep the private key.
type AddMemberRequest struct {
	Label     string `json:"label"`
	PublicKey string `json:"public_key,omitempty"`
	IPv4      string `json:"ipv4,omitempty"`
	Weight    int    `json:"weight,omitempty"`
}

// Member is a member as the API shows it: registry data plus live session
// figures from the tunnel.
type Member struct {
	ID            uint32     `json:"id"`
	Label         string     `json:"label"`
	PublicKey     string     `json:"public_key"`
	IPv4          netip.Addr `json:"ipv4,omitzero"`
	IPv6          netip.Addr `json:"ipv6,omitzero"`
	Created       time.Time  `json:"created"`
	Weight        int        `json:"weight,omitempty"`
	Disabled      bool       `json:"disabled,omitempty"`
	LastHandshake time.Time  `json:"last_handshake,omitzero"`
	Endpoint      string     `json:"endpoint,omitempty"`
	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
	// Config is the wg-quick client config; set on add, and on show when the
	// node holds the member's private key.
	Config string `json:"config,omitempty"`
}

// Status is GET /v1/status.
type Status struct {
	Version          string            `json:"version"`
	Started          time.Time         `json:"started"`
	PublicKey        string            `json:"public_key"`
	Endpoint         string            `json:"endpoint"`
	ListenPort       int               `json:"listen_port"`
	Tunnel           string            `json:"tunnel"`
	MembersTotal     int               `json:"members_total"`
	MembersConnected int               `json:"members_connected"`
	RxBytes          uint64            `json:"rx_bytes"`
	TxBytes          uint64            `json:"tx_bytes"`
	NATPresent       bool              `json:"nat_present"`
	Drops            map[string]uint64 `json:"drops,omitempty"`
	Warnings         []string          `json:"warnings,omitempty"`
}

// ErrorBody is every non-2xx response.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// APIError is a coded error; it is also what the client returns.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return e.Message + " (" + e.Code + ")" }
