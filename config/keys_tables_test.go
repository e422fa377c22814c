package config

import (
	"errors"
	"strings"
	"testing"
)

// Regression (fixed): knownKeys (load.go) lists no key of [conntrack], [portforward] or
// [cluster]. Parse relies on it for two things, and both fail for these
// tables:
//
//   - caseMismatch: the TOML decoder matches names case-insensitively and
//     exitd's keys are exact ("[LOG]" is refused), but "[PortForward]
//     Enabled = true" is silently taken — and "enabled = false" followed
//     by "Enabled = true" in one table turns port forwarding on;
//   - suggest: a typo in these tables gets a hint into another table
//     ("portforward.enable: unknown key (did you mean "dns.enabled"?)")
//     or none at all.
func TestNewTablesKeysAreCaseSensitive(t *testing.T) {
	for _, tc := range []struct{ name, src, key string }{
		{"portforward table", "[PortForward]\nenabled = true\n", "PortForward"},
		{"portforward key", "[portforward]\nEnabled = true\n", "portforward.Enabled"},
		{"portforward shadowing", "[portforward]\nenabled = false\nEnabled = true\n", "portforward.Enabled"},
		{"conntrack key", "[conntrack]\nMax_Conns_Per_Member = 100000\n", "conntrack.Max_Conns_Per_Member"},
		{"cluster key", "[cluster]\nEndpoints = [\"10.0.0.5:2379\"]\n", "cluster.Endpoints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(minimal+tc.src))
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), "lower case") {
				t.Fatalf("got %v, want an unknown-key error for %s", err, tc.key)
			}
		})
	}
}

func TestNewTablesTypoSuggestions(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"[portforward]\nenable = true\n", `did you mean "portforward.enabled"?`},
		{"[portforward]\nmax_per_memer = 4\n", `did you mean "portforward.max_per_member"?`},
		{"[conntrack]\nmax_conn_per_member = 100\n", `did you mean "conntrack.max_conns_per_member"?`},
		{"[cluster]\nendpoint = [\"10.0.0.5:2379\"]\n", `did you mean "cluster.endpoints"?`},
	} {
		ce := parseErr(t, minimal+tc.src)
		if !strings.Contains(ce.Msg, tc.want) {
			t.Errorf("%q: %q, want %s", tc.src, ce.Msg, tc.want)
		}
	}
}
