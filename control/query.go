package control

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"exitd/members"
)

// ConnectedWithin is members.ConnectedWithin, for API clients.
const ConnectedWithin = members.ConnectedWithin

// Connected is members.Connected: the one definition of a live session.
func Connected(last, now time.Time) bool { return members.Connected(last, now) }

// ListQuery selects, orders and pages GET /v1/members. The zero value lists
// every member by id with live figures.
type ListQuery struct {
	// Match keeps members whose label, public key or address contains it
	// (case-insensitive).
	Match string
	// State keeps "enabled", "disabled", "connected" (handshake within
	// ConnectedWithin) or "idle" (enabled, not connected) members.
	State string
	// Sort is a SortKeys key, "-" in front for descending; "" = "id".
	Sort string
	// Offset skips that many members of the sorted list; Limit returns at
	// most that many (0 = all).
	Offset, Limit int
	// NoStats leaves out the live session figures (faster on big nodes;
	// state "connected"/"idle" and the live sort keys then see none).
	NoStats bool
}

// SortKeys are the keys ListQuery.Sort accepts.
var SortKeys = []string{"id", "label", "created", "handshake", "rx", "tx", "rate", "weight"}

// States are the values ListQuery.State accepts.
var States = []string{"enabled", "disabled", "connected", "idle"}

// Values encodes q as URL query parameters (zero fields left out).
func (q ListQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("match", q.Match)
	set("state", q.State)
	set("sort", q.Sort)
	if q.Offset != 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.NoStats {
		v.Set("stats", "0")
	}
	return v
}

// ParseListQuery strictly decodes the query of GET /v1/members: unknown or
// repeated parameters and bad values are errors.
func ParseListQuery(v url.Values) (ListQuery, error) {
	var q ListQuery
	for k, vals := range v {
		if len(vals) != 1 {
			return ListQuery{}, fmt.Errorf("query parameter %q given %d times", k, len(vals))
		}
		s := vals[0]
		var err error
		switch k {
		case "match":
			if len(s) > 256 {
				err = fmt.Errorf("longer than 256 bytes")
			}
			q.Match = s
		case "state":
			if !slices.Contains(States, s) {
				err = fmt.Errorf("%q is not one of %s", s, strings.Join(States, ", "))
			}
			q.State = s
		case "sort":
			if !slices.Contains(SortKeys, strings.TrimPrefix(s, "-")) {
				err = fmt.Errorf("%q is not one of %s (prefix - for descending)", s, strings.Join(SortKeys, ", "))
			}
			q.Sort = s
		case "offset":
			q.Offset, err = nonNegative(s)
		case "limit":
			q.Limit, err = nonNegative(s)
		case "stats":
			switch s {
			case "0", "false":
				q.NoStats = true
			case "1", "true":
			default:
				err = fmt.Errorf("want 0 or 1, got %q", s)
			}
		default:
			return ListQuery{}, fmt.Errorf("unknown query parameter %q (known: match, state, sort, offset, limit, stats)", k)
		}
		if err != nil {
			return ListQuery{}, fmt.Errorf("query parameter %s: %v", k, err)
		}
	}
	return q, nil
}

func nonNegative(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > MaxPage {
		return 0, fmt.Errorf("want a number 0-%d, got %q", MaxPage, s)
	}
	return n, nil
}

// Apply filters, sorts and pages ms (listed by id) as q says and returns the
// page and the number of members that matched. now decides "connected".
func (q ListQuery) Apply(ms []Member, now time.Time) (page []Member, total int) {
	match := strings.ToLower(q.Match)
	out := ms[:0:0]
	for _, m := range ms {
		if q.keep(m, match, now) {
			out = append(out, m)
		}
	}
	if key := strings.TrimPrefix(q.Sort, "-"); key != "" && key != "id" {
		less := sortFunc(key)
		slices.SortStableFunc(out, func(a, b Member) int { return cmp.Or(less(a, b), cmp.Compare(a.ID, b.ID)) })
	}
	if strings.HasPrefix(q.Sort, "-") {
		slices.Reverse(out)
	}
	total = len(out)
	lo := min(q.Offset, total)
	hi := total
	if q.Limit > 0 {
		hi = min(lo+q.Limit, total)
	}
	return out[lo:hi], total
}

func (q ListQuery) keep(m Member, match string, now time.Time) bool {
	connected := Connected(m.LastHandshake, now)
	switch q.State {
	case "enabled":
		if m.Disabled {
			return false
		}
	case "disabled":
		if !m.Disabled {
			return false
		}
	case "connected":
		if m.Disabled || !connected {
			return false
		}
	case "idle":
		if m.Disabled || connected {
			return false
		}
	}
	if match == "" {
		return true
	}
	for _, s := range []string{m.Label, m.PublicKey, m.IPv4.String(), m.IPv6.String()} {
		if strings.Contains(strings.ToLower(s), match) {
			return true
		}
	}
	return false
}

func sortFunc(key string) func(a, b Member) int {
	switch key {
	case "label":
		return func(a, b Member) int { return strings.Compare(a.Label, b.Label) }
	case "created":
		return func(a, b Member) int { return a.Created.Compare(b.Created) }
	case "handshake":
		return func(a, b Member) int { return a.LastHandshake.Compare(b.LastHandshake) }
	case "rx":
		return func(a, b Member) int { return cmp.Compare(a.RxBytes, b.RxBytes) }
	case "tx":
		return func(a, b Member) int { return cmp.Compare(a.TxBytes, b.TxBytes) }
	case "rate":
		return func(a, b Member) int { return cmp.Compare(a.RxRate+a.TxRate, b.RxRate+b.TxRate) }
	case "weight":
		return func(a, b Member) int { return cmp.Compare(a.Weight, b.Weight) }
	}
	return func(a, b Member) int { return cmp.Compare(a.ID, b.ID) }
}
