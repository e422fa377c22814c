package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		name, in string
		want     Upstream
		str      string // canonical String(); "" means in
	}{
		{"ipv4 with port", "1.1.1.1:53", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:53")}, ""},
		{"ipv4 default port", "9.9.9.9", Upstream{Addr: netip.MustParseAddrPort("9.9.9.9:53")}, "9.9.9.9:53"},
		{"ipv4 other port", "192.0.2.1:5353", Upstream{Addr: netip.MustParseAddrPort("192.0.2.1:5353")}, ""},
		{"ipv6 bracketed", "[2606:4700::1111]:53", Upstream{Addr: netip.MustParseAddrPort("[2606:4700::1111]:53")}, ""},
		{"ipv6 bare", "2606:4700::1111", Upstream{Addr: netip.MustParseAddrPort("[2606:4700::1111]:53")}, "[2606:4700::1111]:53"},
		{"ipv4-mapped unmapped", "[::ffff:1.1.1.1]:53", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:53")}, "1.1.1.1:53"},
		{"udp scheme", "udp://1.1.1.1:53", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:53")}, "1.1.1.1:53"},
		{"loopback stub", "127.0.0.53:53", Upstream{Addr: netip.MustParseAddrPort("127.0.0.53:53")}, ""},
		{"surrounding space", "  1.1.1.1:53 ", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:53")}, "1.1.1.1:53"},
		{"tls default port", "tls://1.1.1.1", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:853"), TLS: true}, "tls://1.1.1.1:853"},
		{"tls server name", "tls://1.1.1.1#cloudflare-dns.com", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:853"), TLS: true, ServerName: "cloudflare-dns.com"}, "tls://1.1.1.1:853#cloudflare-dns.com"},
		{"tls port and name", "tls://[2620:fe::fe]:8853#dns.quad9.net", Upstream{Addr: netip.MustParseAddrPort("[2620:fe::fe]:8853"), TLS: true, ServerName: "dns.quad9.net"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUpstream(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			str := tt.str
			if str == "" {
				str = tt.in
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			again, err := ParseUpstream(got.String())
			if err != nil || again != got {
				t.Errorf("String() does not parse back: %+v, %v", again, err)
			}
		})
	}
}

func TestParseUpstreamErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"blank", "   ", "empty"},
		{"hostname", "dns.google:53", "not an IP address"},
		{"hostname tls", "tls://dns.google", "not an IP address"},
		{"doh", "https://1.1.1.1/dns-query", "scheme https is not supported"},
		{"unknown scheme", "sctp://1.1.1.1", `unknown scheme "sctp"`},
		{"name without tls", "1.1.1.1#cloudflare-dns.com", "needs tls://"},
		{"empty server name", "tls://1.1.1.1#", "bad server name"},
		{"server name with port", "tls://1.1.1.1#a:853", "bad server name"},
		{"port zero", "1.1.1.1:0", "port 0"},
		{"port too big", "1.1.1.1:65536", "not an IP address"},
		{"unspecified", "0.0.0.0:53", "not a unicast address"},
		{"unspecified v6", "[::]:53", "not a unicast address"},
		{"multicast", "224.0.0.251:5353", "not a unicast address"},
		{"garbage", "1.1.1", "not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseUpstream(tt.in)
			if err == nil {
				t.Fatalf("ParseUpstream(%q) succeeded", tt.in)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "dns: upstream") {
				t.Errorf("error %q, want it to start with \"dns: upstream\" and contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaultUpstreams(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string
		err        string
	}{
		{"plain", "nameserver 1.1.1.1\nnameserver 2606:4700::1111\n", []string{"1.1.1.1:53", "[2606:4700::1111]:53"}, ""},
		{"comments and options", "# generated\nsearch corp.example\noptions edns0 trust-ad\nnameserver 9.9.9.9 # quad9\n; old\n", []string{"9.9.9.9:53"}, ""},
		{"loopback stubs kept", "nameserver 127.0.0.53\nnameserver ::1\n", []string{"127.0.0.53:53", "[::1]:53"}, ""},
		{"link-local with zone", "nameserver fe80::1%eth0\n", []string{"[fe80::1%eth0]:53"}, ""},
		{"unparseable skipped", "nameserver dns.example\nnameserver\nnameserver 8.8.8.8\n", []string{"8.8.8.8:53"}, ""},
		{"none", "search example\n", nil, "no nameserver"},
		{"empty file", "", nil, "no nameserver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(p, []byte(tt.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := DefaultUpstreams(p)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for _, s := range got {
				if _, err := ParseUpstream(s); err != nil {
					t.Errorf("default upstream %q does not parse: %v", s, err)
				}
			}
		})
	}
	if _, err := DefaultUpstreams(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.HasPrefix(err.Error(), "dns: default upstreams") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		err  string // "" means New succeeds
	}{
		{"defaults", Config{Upstreams: []string{"1.1.1.1"}}, ""},
		{"no upstreams", Config{}, "no upstreams"},
		{"bad upstream", Config{Upstreams: []string{"1.1.1.1", "resolver.example"}}, `upstream "resolver.example"`},
		{"negative cache", Config{Upstreams: []string{"1.1.1.1"}, CacheEntries: -1}, "cache entries -1"},
		{"negative timeout", Config{Upstreams: []string{"1.1.1.1"}, UpstreamTimeout: -1}, "upstream timeout"},
		{"missing blocklist", Config{Upstreams: []string{"1.1.1.1"}, BlocklistPath: filepath.Join(dir, "nope")}, "dns: blocklist"},
		{"rate limit off", Config{Upstreams: []string{"1.1.1.1"}, MemberQPS: -1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg, Options{})
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.Stats().Upstreams[0].Up != true {
					t.Error("a new upstream should start up")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "dns: ") {
				t.Fatalf("err = %v, want it to contain %q", err, tt.err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	r, err := New(Config{Upstreams: []string{"1.1.1.1"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := r.cfg
	if c.CacheEntries != DefaultCacheEntries || c.MemberQPS != DefaultMemberQPS || c.MemberBurst != DefaultMemberBurst || c.UpstreamTimeout != DefaultUpstreamTimeout {
		t.Errorf("defaults not applied: %+v", c)
	}
	if r.limiter == nil || r.limiter.qps != 200 || r.limiter.burst != 400 {
		t.Errorf("limiter = %+v, want 200/s burst 400", r.limiter)
	}
	off, _ := New(Config{Upstreams: []string{"1.1.1.1"}, MemberBurst: -1}, Options{})
	if off.limiter != nil {
		t.Error("a negative burst should turn the limit off")
	}
}
