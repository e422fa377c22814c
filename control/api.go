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

// Limits of one request.
const (
	// MaxBatch is the most members one batch request adds or removes;
	// clients split larger lists (exitctl sends 1,000 at a time).
	MaxBatch = 5000
	// MaxPage is the largest page GET /v1/members returns with limit=0
	// ("all") — more than any node holds.
	MaxPage = 1 << 22
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
	// CodeUnavailable: the shared member store (etcd) cannot be reached;
	// members keep working, changes are refused until it is back.
	CodeUnavailable = "unavailable"
)

// AddMemberRequest is the body of POST /v1/members. An empty PublicKey makes
// the node generate the key pair and keep the private key. IPv4 or IPv6 asks
// for that address (and the other one of its slot); AddressFallback takes a
// free slot instead when the asked one is outside the prefixes, in use or
// quarantined (imports). Limits are bits/s, 0 = none.
type AddMemberRequest struct {
	Label           string `json:"label"`
	PublicKey       string `json:"public_key,omitempty"`
	IPv4            string `json:"ipv4,omitempty"`
	IPv6            string `json:"ipv6,omitempty"`
	AddressFallback bool   `json:"address_fallback,omitempty"`
	Weight          int    `json:"weight,omitempty"`
	EgressLimit     uint64 `json:"egress_limit,omitempty"`
	IngressLimit    uint64 `json:"ingress_limit,omitempty"`
	Disabled        bool   `json:"disabled,omitempty"`
}

// AddMembersRequest is the body of POST /v1/members:batch: up to MaxBatch
// members added in one transaction and one device update, all or none.
// Configs asks for each member's client config in the answer.
type AddMembersRequest struct {
	Members []AddMemberRequest `json:"members"`
	Configs bool               `json:"configs,omitempty"`
}

// RemoveMembersRequest is the body of POST /v1/members:batchRemove: up to
// MaxBatch labels or keys removed in one transaction, all or none.
type RemoveMembersRequest struct {
	Refs []string `json:"refs"`
}

// MembersResponse answers the batch requests, in request order.
type MembersResponse struct {
	Members []Member `json:"members"`
}

// UpdateMemberRequest is the body of PATCH /v1/members/{ref}: the fields
// given change, the others stay. Disabled members leave the device (their
// session ends) but keep their entry and addresses.
type UpdateMemberRequest struct {
	Weight       *int    `json:"weight,omitempty"`
	EgressLimit  *uint64 `json:"egress_limit,omitempty"`
	IngressLimit *uint64 `json:"ingress_limit,omitempty"`
	// MaxConns is the member's own connection quota (tracked connections
	// per family); 0 returns it to the node's default.
	MaxConns *int  `json:"max_conns,omitempty"`
	Disabled *bool `json:"disabled,omitempty"`
}

// Member is a member as the API shows it: registry data plus live session
// figures from the tunnel.
type Member struct {
	ID           uint32     `json:"id"`
	Label        string     `json:"label"`
	PublicKey    string     `json:"public_key"`
	IPv4         netip.Addr `json:"ipv4,omitzero"`
	IPv6         netip.Addr `json:"ipv6,omitzero"`
	Created      time.Time  `json:"created"`
	Weight       int        `json:"weight,omitempty"`
	EgressLimit  uint64     `json:"egress_limit,omitempty"`
	IngressLimit uint64     `json:"ingress_limit,omitempty"`
	// MaxConns is the member's own connection quota, 0 for the node's.
	MaxConns int `json:"max_conns,omitempty"`
	// LimitsEnforced tells whether this node applies the limits (false: they
	// are stored and shown only).
	LimitsEnforced bool      `json:"limits_enforced,omitempty"`
	Disabled       bool      `json:"disabled,omitempty"`
	LastHandshake  time.Time `json:"last_handshake,omitzero"`
	Endpoint       string    `json:"endpoint,omitempty"`
	RxBytes        uint64    `json:"rx_bytes"`
	TxBytes        uint64    `json:"tx_bytes"`
	// RxRate and TxRate are the current rates in bits/s (received from and
	// sent to the member), averaged over the node's last sampling interval.
	RxRate uint64 `json:"rx_rate,omitempty"`
	TxRate uint64 `json:"tx_rate,omitempty"`
	// KeyKept is true when the node keeps the member's private key (added
	// with --keep-key): anyone allowed on the control socket can read it.
	KeyKept bool `json:"key_kept,omitempty"`
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
	NATMode          string            `json:"nat_mode,omitempty"` // "inet", or "split (ip + ip6 nat tables)" without inet-family NAT
	Drops            map[string]uint64 `json:"drops,omitempty"`
	// Conntrack is the members' share of the connection tracking table.
	Conntrack *ConntrackStatus `json:"conntrack,omitempty"`
	// Services inside the tunnel; nil when off.
	DNS   *ServiceStatus `json:"dns,omitempty"`
	SOCKS *ServiceStatus `json:"socks,omitempty"`
	// PortForward is NAT-PMP; nil when off.
	PortForward *ServiceStatus `json:"portforward,omitempty"`
	Warnings    []string       `json:"warnings,omitempty"`
}

// ConntrackStatus is the connection tracking table as members use it
// (docs/nat.md, "Fair state"); its fill is Load's Conntrack and
// ConntrackMax.
type ConntrackStatus struct {
	Members int `json:"members"` // tracked connections from member addresses
	// Quota is each member's quota of tracked connections per family (0:
	// off); members may have their own.
	Quota int `json:"quota"`
	// AtLimit are the members whose new connections were dropped at their
	// quota or rate since the ruleset was last applied.
	AtLimit []MemberConns `json:"at_limit,omitempty"`
}

// MemberConns is one member's use of the conntrack table.
type MemberConns struct {
	Label      string `json:"label"`
	Conns      int    `json:"conns"`
	QuotaDrops uint64 `json:"quota_drops"`
	RateDrops  uint64 `json:"rate_drops"`
}

// ServiceStatus is one service at the gateway addresses.
type ServiceStatus struct {
	Listen []string `json:"listen"`
	// Summary is one human line of its figures (queries, cache hits,
	// upstreams; sessions, refusals).
	Summary string `json:"summary"`
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
