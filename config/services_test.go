package config

import (
	"strings"
	"testing"
	"time"
)

func TestServicesDefaults(t *testing.T) {
	c, err := Parse("exitd.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DNS.On() || !c.DNS.Rebind() || !c.DNS.Captured() || c.DNS.CacheEntries != DefaultDNSCacheEntries || len(c.DNS.Upstreams) != 0 {
		t.Fatalf("dns defaults %+v", c.DNS)
	}
	if !c.SOCKS.On() || c.SOCKS.MaxSessions != DefaultSOCKSMaxSessions || c.SOCKS.ConnectRate != DefaultSOCKSConnectRate ||
		c.SOCKS.ConnectBurst != 2*DefaultSOCKSConnectRate || c.SOCKS.IdleTimeout.Duration != DefaultSOCKSIdle {
		t.Fatalf("socks defaults %+v", c.SOCKS)
	}
}

func TestServicesParsed(t *testing.T) {
	c, err := Parse("exitd.toml", []byte(minimal+`
[dns]
upstreams = ["192.0.2.53", "[2001:db8::53]:5353", "tls://1.1.1.1#cloudflare-dns.com"]
capture = false
blocklist = "/etc/exitd/blocklist.txt"
[socks]
max_sessions = 50
idle_timeout = "30s"
[[socks.listen]]
addr = "192.0.2.1:1080"
allow = ["192.0.2.0/24"]
users = ["alice:secret"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DNS.Captured() || !c.DNS.On() || len(c.DNS.Upstreams) != 3 || c.DNS.Blocklist == "" {
		t.Fatalf("dns %+v", c.DNS)
	}
	l := c.SOCKS.Listen
	if c.SOCKS.MaxSessions != 50 || c.SOCKS.IdleTimeout.Duration != 30*time.Second || len(l) != 1 ||
		l[0].Addr.String() != "192.0.2.1:1080" || l[0].Allow[0].String() != "192.0.2.0/24" || l[0].Users[0] != "alice:secret" {
		t.Fatalf("socks %+v", c.SOCKS)
	}
	off, err := Parse("exitd.toml", []byte(minimal+"[dns]\nenabled = false\n[socks]\nenabled = false\n"))
	if err != nil || off.DNS.On() || off.DNS.Captured() || off.SOCKS.On() {
		t.Fatalf("off: %+v %+v %v", off.DNS, off.SOCKS, err)
	}
}

func TestServicesBad(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"upstream name":     {"[dns]\nupstreams = [\"dns.google\"]\n", "dns.upstreams"},
		"cache negative":    {"[dns]\ncache_entries = -1\n", "dns.cache_entries"},
		"relative list":     {"[dns]\nblocklist = \"block.txt\"\n", "dns.blocklist"},
		"unknown dns key":   {"[dns]\nforward = true\n", "forward"},
		"sessions":          {"[socks]\nmax_sessions = -3\n", "socks.max_sessions"},
		"idle":              {"[socks]\nidle_timeout = \"10ms\"\n", "socks.idle_timeout"},
		"open proxy":        {"[[socks.listen]]\naddr = \"192.0.2.1:1080\"\n", "open proxy is never the default"},
		"bad listen addr":   {"[[socks.listen]]\naddr = \"nowhere\"\nallow = [\"192.0.2.0/24\"]\n", "socks.listen"},
		"user without pass": {"[[socks.listen]]\naddr = \"192.0.2.1:1080\"\nallow = [\"192.0.2.0/24\"]\nusers = [\"bob\"]\n", "user:password"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("exitd.toml", []byte(minimal+tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
