package dns

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultCacheEntries    = 100000
	DefaultMemberQPS       = 200
	DefaultMemberBurst     = 400
	DefaultUpstreamTimeout = 2 * time.Second
)

// Config is the resolver's configuration, as read from the daemon's [dns]
// table. Zero values mean the defaults above.
type Config struct {
	// Upstreams are tried in order of health; see ParseUpstream for the forms.
	Upstreams []string
	// CacheEntries bounds the cache (LRU). The cache also keeps its packed
	// messages under CacheEntries KiB in total.
	CacheEntries int
	// MemberQPS and MemberBurst rate-limit queries per source address (a
	// token bucket). 0 means the default, a negative value turns the limit off.
	MemberQPS, MemberBurst int
	// Rebind turns on rebinding protection: answers that point at an
	// address in Options.Deny become empty NOERROR answers. The daemon
	// defaults it to true.
	Rebind bool
	// BlocklistPath names a hosts-format or domain-list file; empty means no
	// blocklist.
	BlocklistPath string
	// UpstreamTimeout bounds one exchange with one upstream.
	UpstreamTimeout time.Duration
}

// withDefaults returns c with zero fields set to their defaults, or an error
// for values that have no meaning.
func (c Config) withDefaults() (Config, error) {
	if len(c.Upstreams) == 0 {
		return c, errors.New("dns: config: no upstreams")
	}
	if c.CacheEntries < 0 {
		return c, fmt.Errorf("dns: config: cache entries %d is negative", c.CacheEntries)
	}
	if c.UpstreamTimeout < 0 {
		return c, fmt.Errorf("dns: config: upstream timeout %v is negative", c.UpstreamTimeout)
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = DefaultCacheEntries
	}
	if c.MemberQPS == 0 {
		c.MemberQPS = DefaultMemberQPS
	}
	if c.MemberBurst == 0 {
		c.MemberBurst = DefaultMemberBurst
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	return c, nil
}

// Upstream is one parsed upstream resolver.
type Upstream struct {
	// Addr is the resolver's address; always an IP, never a hostname.
	Addr netip.AddrPort
	// TLS selects DNS over TLS (RFC 7858) instead of plain UDP/TCP.
	TLS bool
	// ServerName is the name the TLS certificate must carry; empty means
	// the certificate must carry Addr's IP. Only set when TLS is.
	ServerName string
}

// String returns u in the form ParseUpstream reads.
func (u Upstream) String() string {
	if !u.TLS {
		return u.Addr.String()
	}
	s := "tls://" + u.Addr.String()
	if u.ServerName != "" {
		s += "#" + u.ServerName
	}
	return s
}

// ParseUpstream parses an upstream resolver:
//
//	1.1.1.1  1.1.1.1:53  2606:4700::1111  [2606:4700::1111]:53   plain DNS, port 53 by default
//	tls://1.1.1.1  tls://1.1.1.1:853#cloudflare-dns.com         DNS over TLS, port 853 by default
//
// The address must be an IP: a hostname would need a resolver to find the
// resolver. The optional "#name" of a TLS upstream is the certificate name
// to verify; without it the certificate must be issued for the IP.
func ParseUpstream(s string) (Upstream, error) {
	var u Upstream
	rest := strings.TrimSpace(s)
	if rest == "" {
		return u, errors.New("dns: upstream: empty")
	}
	port := uint16(53)
	if scheme, after, ok := strings.Cut(rest, "://"); ok {
		switch scheme {
		case "tls":
			u.TLS, port, rest = true, 853, after
		case "udp", "tcp", "dns":
			rest = after
		case "https", "h3", "quic":
			return u, fmt.Errorf("dns: upstream %q: scheme %s is not supported (use plain or tls://)", s, scheme)
		default:
			return u, fmt.Errorf("dns: upstream %q: unknown scheme %q", s, scheme)
		}
	}
	if host, name, ok := strings.Cut(rest, "#"); ok {
		if !u.TLS {
			return u, fmt.Errorf("dns: upstream %q: a #server-name needs tls://", s)
		}
		if name == "" || strings.ContainsAny(name, " /#:") {
			return u, fmt.Errorf("dns: upstream %q: bad server name %q", s, name)
		}
		u.ServerName, rest = name, host
	}
	if ap, err := netip.ParseAddrPort(rest); err == nil {
		u.Addr = ap
	} else if a, err2 := netip.ParseAddr(rest); err2 == nil {
		u.Addr = netip.AddrPortFrom(a, port)
	} else {
		return u, fmt.Errorf("dns: upstream %q: not an IP address or IP:port: %w", s, err)
	}
	u.Addr = netip.AddrPortFrom(u.Addr.Addr().Unmap(), u.Addr.Port())
	if u.Addr.Port() == 0 {
		return u, fmt.Errorf("dns: upstream %q: port 0", s)
	}
	if u.Addr.Addr().IsUnspecified() || u.Addr.Addr().IsMulticast() {
		return u, fmt.Errorf("dns: upstream %q: %s is not a unicast address", s, u.Addr.Addr())
	}
	return u, nil
}

// DefaultUpstreams returns the nameserver lines of a resolv.conf (normally
// /etc/resolv.conf) as upstreams on port 53, in file order.
//
// Loopback stub resolvers (systemd-resolved's 127.0.0.53, a local unbound or
// dnsmasq, ::1) are kept: exitd runs in the node's network namespace, so they
// work, and dropping them silently could leave no upstream at all. With such
// a stub the members' queries pass through it, and its own upstreams and
// privacy settings apply; set upstreams explicitly to bypass it.
func DefaultUpstreams(resolvConfPath string) ([]string, error) {
	f, err := os.Open(resolvConfPath)
	if err != nil {
		return nil, fmt.Errorf("dns: default upstreams: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // resolv(5) ignores what it cannot parse; so do we
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53).String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dns: default upstreams: read %s: %w", resolvConfPath, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dns: default upstreams: no nameserver in %s", resolvConfPath)
	}
	return out, nil
}
