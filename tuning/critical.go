package tuning

import (
	"slices"
	"strconv"
)

// Keys the daemon acts on.
const (
	KeyIPForward   = "net.ipv4.ip_forward"
	KeyIPv6Forward = "net.ipv6.conf.all.forwarding"
)

// critical describes a safety-critical key: the value exitd wants when the
// profile does not say, and which values in force are safe. Reporting a safe
// value that differs from the wanted one is drift, not a critical failure.
type critical struct {
	want string
	safe func(v string) bool
}

func equals(want string) func(string) bool {
	return func(v string) bool { return NormalizeValue(v) == want }
}

func atLeast(floor int64) func(string) bool {
	return func(v string) bool {
		n, ok := parseKernelInt(NormalizeValue(v))
		return ok && n >= floor
	}
}

// criticalKeys are checked even when a profile omits them: forwarding on
// (the node's job), reverse-path filtering on (anti-spoofing; strict 1 is
// wanted, loose 2 still filters), redirects and source routing off (nobody
// can steer the node's routing), and a conntrack table big enough for NAT.
var criticalKeys = map[string]critical{
	KeyIPForward:                                {"1", equals("1")},
	KeyIPv6Forward:                              {"1", equals("1")},
	"net.ipv4.conf.all.rp_filter":               {"1", func(v string) bool { return equals("1")(v) || equals("2")(v) }},
	"net.ipv4.conf.default.rp_filter":           {"1", func(v string) bool { return equals("1")(v) || equals("2")(v) }},
	"net.ipv4.conf.all.accept_redirects":        {"0", equals("0")},
	"net.ipv4.conf.default.accept_redirects":    {"0", equals("0")},
	"net.ipv6.conf.all.accept_redirects":        {"0", equals("0")},
	"net.ipv6.conf.default.accept_redirects":    {"0", equals("0")},
	"net.ipv4.conf.all.send_redirects":          {"0", equals("0")},
	"net.ipv4.conf.default.send_redirects":      {"0", equals("0")},
	"net.ipv4.conf.all.accept_source_route":     {"0", equals("0")},
	"net.ipv4.conf.default.accept_source_route": {"0", equals("0")},
	"net.ipv6.conf.all.accept_source_route":     {"0", ipv6SourceRouteSafe},
	"net.ipv6.conf.default.accept_source_route": {"0", ipv6SourceRouteSafe},
	KeyConntrackMax:                             {strconv.Itoa(ConntrackFloor), atLeast(ConntrackFloor)},
}

// ipv6SourceRouteSafe: 0 accepts only type-2 routing headers (Mobile IPv6),
// negative accepts none; positive values ask for more.
func ipv6SourceRouteSafe(v string) bool {
	n, ok := parseKernelInt(NormalizeValue(v))
	return ok && n <= 0
}

// CriticalKeys lists the safety-critical keys.
func CriticalKeys() []string {
	keys := make([]string, 0, len(criticalKeys))
	for k := range criticalKeys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
