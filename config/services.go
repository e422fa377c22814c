package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults of the services inside the tunnel.
const (
	DefaultSOCKSPort        = 1080
	DefaultSOCKSMaxSessions = 1024
	DefaultSOCKSConnectRate = 100
	DefaultSOCKSIdle        = 5 * time.Minute
	DefaultDNSCacheEntries  = 100_000
	// DefaultResolvConf is where the node's own resolvers are read from
	// when [dns] upstreams is empty.
	DefaultResolvConf = "/etc/resolv.conf"
)

// DNS is the resolver at the gateway addresses (docs/dns.md).
type DNS struct {
	// Enabled serves DNS on the gateway addresses, port 53 (default true).
	Enabled *bool `toml:"enabled"`
	// Upstreams are "ip[:port]" or "tls://ip[:port][#name]"; empty means
	// the node's resolv.conf servers, read at start.
	Upstreams []string `toml:"upstreams"`
	// CacheEntries bounds the cache (default 100,000).
	CacheEntries int `toml:"cache_entries"`
	// MemberQPS and MemberBurst limit each member's queries (0: defaults,
	// negative: off).
	MemberQPS   int `toml:"member_qps"`
	MemberBurst int `toml:"member_burst"`
	// RebindProtection empties answers that point a public name at a denied
	// address (default true).
	RebindProtection *bool `toml:"rebind_protection"`
	// Blocklist is a hosts or domain-list file answered NXDOMAIN, re-read on
	// SIGHUP; "" for none.
	Blocklist string `toml:"blocklist"`
	// Capture redirects members' plain DNS (UDP/TCP 53) to any other
	// resolver to this one (default true).
	Capture *bool `toml:"capture"`
}

// On reports whether the resolver runs.
func (d DNS) On() bool { return d.Enabled == nil || *d.Enabled }

// Rebind reports whether rebinding protection is on.
func (d DNS) Rebind() bool { return d.RebindProtection == nil || *d.RebindProtection }

// Captured reports whether members' port-53 traffic is redirected.
func (d DNS) Captured() bool { return d.On() && (d.Capture == nil || *d.Capture) }

func (d *DNS) finish() error {
	if d.CacheEntries == 0 {
		d.CacheEntries = DefaultDNSCacheEntries
	}
	if d.CacheEntries < 0 || d.CacheEntries > 10_000_000 {
		return bad("dns.cache_entries", "must be 1-10000000, got %d", d.CacheEntries)
	}
	for _, u := range d.Upstreams {
		host := strings.TrimPrefix(u, "tls://")
		if i := strings.IndexByte(host, '#'); i >= 0 {
			host = host[:i]
		}
		if _, err := netip.ParseAddr(host); err == nil {
			continue
		}
		if _, err := netip.ParseAddrPort(host); err == nil {
			continue
		}
		return bad("dns.upstreams", "want an IP address, ip:port or tls://ip[:port][#server-name], got %q", u)
	}
	if d.Blocklist != "" && !strings.HasPrefix(d.Blocklist, "/") {
		return bad("dns.blocklist", "must be an absolute path, got %q", d.Blocklist)
	}
	return nil
}

// SOCKS is the SOCKS5 proxy at the gateway addresses (docs/socks.md).
type SOCKS struct {
	// Enabled serves SOCKS5 to members on the gateway addresses, port 1080
	// (default true).
	Enabled *bool `toml:"enabled"`
	// MaxSessions is each member's limit of concurrent sessions.
	MaxSessions int `toml:"max_sessions"`
	// ConnectRate and ConnectBurst limit each member's new sessions per
	// second.
	ConnectRate  int `toml:"connect_rate"`
	ConnectBurst int `toml:"connect_burst"`
	// IdleTimeout closes relays idle this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// Listen are extra listeners for clients outside the tunnel, each with
	// Dante-style client rules.
	Listen []SOCKSListener `toml:"listen"`
}

// SOCKSListener is an extra SOCKS5 listener.
type SOCKSListener struct {
	// Addr is ip:port.
	Addr netip.AddrPort `toml:"addr"`
	// Allow are the client prefixes admitted; required.
	Allow []netip.Prefix `toml:"allow"`
	// Users are "user:password" pairs; empty means no authentication.
	Users []string `toml:"users"`
}

// On reports whether the proxy runs.
func (s SOCKS) On() bool { return s.Enabled == nil || *s.Enabled }

func (s *SOCKS) finish() error {
	if s.MaxSessions == 0 {
		s.MaxSessions = DefaultSOCKSMaxSessions
	}
	if s.MaxSessions < 1 || s.MaxSessions > 100_000 {
		return bad("socks.max_sessions", "must be 1-100000, got %d", s.MaxSessions)
	}
	if s.ConnectRate == 0 {
		s.ConnectRate = DefaultSOCKSConnectRate
	}
	if s.ConnectRate < 1 {
		return bad("socks.connect_rate", "must be positive, got %d", s.ConnectRate)
	}
	if s.ConnectBurst == 0 {
		s.ConnectBurst = 2 * s.ConnectRate
	}
	if s.ConnectBurst < 1 {
		return bad("socks.connect_burst", "must be positive, got %d", s.ConnectBurst)
	}
	switch d := s.IdleTimeout.Duration; {
	case d == 0:
		s.IdleTimeout.Duration = DefaultSOCKSIdle
	case d < time.Second:
		return bad("socks.idle_timeout", "must be at least 1s, got %s", d)
	}
	for i, l := range s.Listen {
		key := fmt.Sprintf("socks.listen[%d]", i)
		if !l.Addr.IsValid() || l.Addr.Port() == 0 {
			return bad(key+".addr", "want ip:port, got %q", l.Addr)
		}
		if len(l.Allow) == 0 {
			return bad(key+".allow", "name the client prefixes this listener admits (e.g. [\"192.0.2.0/24\"]); an open proxy is never the default")
		}
		for _, u := range l.Users {
			if user, pass, ok := strings.Cut(u, ":"); !ok || user == "" || pass == "" || len(user) > 255 || len(pass) > 255 {
				return bad(key+".users", "want \"user:password\" (1-255 bytes each), got %q", u)
			}
		}
	}
	return nil
}
