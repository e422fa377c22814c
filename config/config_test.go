package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const minimal = `
public_endpoint = "203.0.113.1:443"
[tunnel]
ipv4 = "10.99.0.0/16"
ipv6 = "fd00:99::/64"
[wan]
interface = "eth0"
`

func TestDefaults(t *testing.T) {
	c, err := Parse("exitd.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"state_dir", c.StateDir, DefaultStateDir},
		{"port", c.Listen.Port, 443},
		{"tun name", c.Tunnel.Name, "exit0"},
		{"mtu", c.Tunnel.MTU, 1420},
		{"nat", c.WAN.NAT, "masquerade"},
		{"nat_tables", c.WAN.NATTables, "auto"},
		{"isolation", c.Filter.Isolation(), true},
		{"socket", c.Control.Socket, "/run/exitd/control.sock"},
		{"group", c.Control.Group, "exitd"},
		{"discipline", c.Scheduler.Discipline, "srr"},
		{"egress", c.Scheduler.Egress, PaceRate{}},
		{"quarantine", c.Members.Quarantine.Duration, 24 * time.Hour},
		{"log", c.Log.Level, "info"},
		{"sample", c.Metrics.SampleInterval.Duration, 15 * time.Second},
		{"gw4", c.Tunnel.Gateway4(), netip.MustParseAddr("10.99.0.1")},
		{"gw6", c.Tunnel.Gateway6(), netip.MustParseAddr("fd00:99::1")},
		{"path", c.Path, "exitd.toml"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestFull(t *testing.T) {
	src := `
state_dir = "/srv/exitd"
public_endpoint = "[2001:db8::1]:51820"
[listen]
port = 51820
[tunnel]
name = "wg-exit"
mtu = 1380
ipv4 = "100.96.0.0/12"
[wan]
interface = "ens3"
nat = "snat"
snat_pool = "198.51.100.10-198.51.100.20"
snat_ports = "1024-65535"
[filter]
member_isolation = false
block = ["192.0.2.0/24", "2001:db8:dead::/48", "203.0.113.7"]
allow = ["192.168.7.0/24", "203.0.113.9", "fd00:7::1/64"]
[control]
socket = "/run/x/c.sock"
[scheduler]
discipline = "fifo"
egress_rate = "95mbit"
ingress_rate = "10mbps"
[members]
address_quarantine = "1h"
[metrics]
listen = "127.0.0.1:9586"
[log]
level = "DEBUG"
`
	c, err := Parse("f.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Filter.Isolation() {
		t.Error("isolation should be off")
	}
	if c.WAN.Pool[0] != netip.MustParseAddr("198.51.100.10") || c.WAN.Pool[1] != netip.MustParseAddr("198.51.100.20") {
		t.Errorf("pool %v", c.WAN.Pool)
	}
	if c.WAN.Ports != [2]uint16{1024, 65535} {
		t.Errorf("ports %v", c.WAN.Ports)
	}
	if len(c.Filter.Blocked) != 3 || c.Filter.Blocked[2] != netip.MustParsePrefix("203.0.113.7/32") {
		t.Errorf("blocked %v", c.Filter.Blocked)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("192.168.7.0/24"), netip.MustParsePrefix("203.0.113.9/32"),
		netip.MustParsePrefix("fd00:7::/64")}; !slices.Equal(c.Filter.Allowed, want) {
		t.Errorf("allowed %v, want %v", c.Filter.Allowed, want)
	}
	if c.Scheduler.Egress.BitsPerSecond != 95_000_000 || c.Scheduler.Ingress != 80_000_000 {
		t.Errorf("rates %d %d", c.Scheduler.Egress.BitsPerSecond, c.Scheduler.Ingress)
	}
	if c.Tunnel.Prefix6.IsValid() || c.Tunnel.Gateway6().IsValid() {
		t.Error("ipv6 should be off")
	}
	if c.Members.Quarantine.Duration != time.Hour || c.Log.Level != "debug" {
		t.Errorf("quarantine %v level %s", c.Members.Quarantine, c.Log.Level)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		key, msg  string
	}{
		{"unknown top key", "statedir = \"/x\"\n" + minimal, 1, "statedir", `did you mean "state_dir"`},
		{"unknown table key", minimal + "[listen]\nprot = 1\n", 9, "listen.prot", "unknown key"},
		{"unknown table", minimal + "[bogus]\nx = 1\n", 8, "bogus", "unknown key"},
		{"bad type", minimal + "[listen]\nport = \"x\"\n", 9, "listen.port", "incompatible"},
		{"syntax", "state_dir = \n", 1, "", ""},
		{"port range", minimal + "[listen]\nport = 70000\n", 9, "listen.port", "1-65535"},
		{"mtu", strings.Replace(minimal, "[tunnel]", "[tunnel]\nmtu = 500", 1), 4, "tunnel.mtu", "1280-9000"},
		{"bad v4", strings.Replace(minimal, "10.99.0.0/16", "10.99.0.0/33", 1), 4, "tunnel.ipv4", "IPv4 prefix"},
		{"v4 host bits", strings.Replace(minimal, "10.99.0.0/16", "10.99.0.1/16", 1), 4, "tunnel.ipv4", "did you mean 10.99.0.0/16"},
		{"v4 as v6", strings.Replace(minimal, "fd00:99::/64", "10.0.0.0/8", 1), 5, "tunnel.ipv6", "IPv6 prefix"},
		{"v6 too small", strings.Replace(minimal, "fd00:99::/64", "fd00:99::/127", 1), 5, "tunnel.ipv6", "/48 to /120"},
		{"no prefixes", "[wan]\ninterface = \"eth0\"\n", 0, "tunnel.ipv4", "members need addresses"},
		{"no wan", strings.Replace(minimal, `interface = "eth0"`, "", 1), 6, "wan.interface", "required"},
		{"wan name long", strings.Replace(minimal, `"eth0"`, `"abcdefghijklmnop"`, 1), 7, "wan.interface", "1-15"},
		{"tun name slash", strings.Replace(minimal, "[tunnel]", "[tunnel]\nname = \"a/b\"", 1), 4, "tunnel.name", "contains"},
		{"nat mode", minimal + "nat = \"nat\"\n", 8, "wan.nat", "masquerade"},
		{"snat no pool", minimal + "nat = \"snat\"\n", 0, "wan.snat_pool", "required"},
		{"snat reversed", minimal + "nat = \"snat\"\nsnat_pool = \"198.51.100.20-198.51.100.10\"\n", 9, "wan.snat_pool", "ends before"},
		{"snat mixed", minimal + "nat = \"snat\"\nsnat_pool = \"198.51.100.20-2001:db8::1\"\n", 9, "wan.snat_pool", "families"},
		{"ports", minimal + "nat = \"snat\"\nsnat_pool = \"198.51.100.1\"\nsnat_ports = \"9-2\"\n", 10, "wan.snat_ports", "ends before"},
		{"pool without snat", minimal + "snat_pool = \"198.51.100.1\"\n", 8, "wan.snat_pool", "only used"},
		{"block", minimal + "[filter]\nblock = [\"nope\"]\n", 9, "filter.block", "192.0.2.0/24"},
		{"block v4-mapped", minimal + "[filter]\nblock = [\"::ffff:10.0.0.0/104\"]\n", 9, "filter.block", "write it as IPv4"},
		{"allow", minimal + "[filter]\nallow = [\"192.168.1.0/33\"]\n", 9, "filter.allow", "192.0.2.0/24"},
		{"allow zone", minimal + "[filter]\nallow = [\"fe80::1%eth0\"]\n", 9, "filter.allow", "want a prefix"},
		{"allow loopback", minimal + "[filter]\nallow = [\"127.0.0.53\"]\n", 9, "filter.allow", `"127.0.0.53/32" would open loopback 127.0.0.0/8`},
		{"allow ::1", minimal + "[filter]\nallow = [\"::/0\"]\n", 9, "filter.allow", "would open loopback ::1/128"},
		{"allow all v4", minimal + "[filter]\nallow = [\"0.0.0.0/0\"]\n", 9, "filter.allow", "loopback"},
		{"allow members", minimal + "[filter]\nallow = [\"10.0.0.0/8\"]\n", 9, "filter.allow", "would open the member prefix 10.99.0.0/16"},
		{"allow inside members", minimal + "[filter]\nallow = [\"fd00:99::5\"]\n", 9, "filter.allow", "member prefix fd00:99::/64"},
		{"allow typo", minimal + "[filter]\nalow = [\"192.0.2.1\"]\n", 9, "filter.alow", `did you mean "filter.allow"`},
		{"endpoint", strings.Replace(minimal, "203.0.113.1:443", "203.0.113.1", 1), 2, "public_endpoint", "host:port"},
		{"endpoint port", strings.Replace(minimal, "203.0.113.1:443", "x:0", 1), 2, "public_endpoint", "1-65535"},
		{"rel state", "state_dir = \"var\"\n" + minimal, 1, "state_dir", "absolute"},
		{"socket rel", minimal + "[control]\nsocket = \"c.sock\"\n", 9, "control.socket", "absolute"},
		{"discipline", minimal + "[scheduler]\ndiscipline = \"wfq\"\n", 9, "scheduler.discipline", "srr"},
		{"rate unit", minimal + "[scheduler]\negress_rate = \"95 furlongs\"\n", 9, "scheduler.egress_rate", "unknown unit"},
		{"rate small", minimal + "[scheduler]\negress_rate = \"1kbit\"\n", 9, "scheduler.egress_rate", "between"},
		{"byte limit", minimal + "[scheduler]\nbyte_limit = -1\n", 9, "scheduler.byte_limit", "auto"},
		{"quarantine", minimal + "[members]\naddress_quarantine = \"soon\"\n", 9, "members.address_quarantine", "soon"},
		{"metrics", minimal + "[metrics]\nlisten = \"9586\"\n", 9, "metrics.listen", "host:port"},
		{"sample interval", minimal + "[metrics]\nsample_interval = \"10ms\"\n", 9, "metrics.sample_interval", "1s to 1h"},
		{"log", minimal + "[log]\nlevel = \"loud\"\n", 9, "log.level", "debug"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tc.src))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ce.File != "x.toml" {
				t.Errorf("file %q", ce.File)
			}
			if tc.line != 0 && ce.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", ce.Line, tc.line, err)
			}
			if tc.key != "" && ce.Key != tc.key {
				t.Errorf("key %q, want %q (%v)", ce.Key, tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "x.toml") {
				t.Errorf("error %q does not start with the file", err)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	tests := map[string]string{
		"statedir":                `"state_dir"`,
		"filter.member_isolaton":  `"filter.member_isolation"`,
		"tunnel.mut":              `"tunnel.mtu"`,
		"wan.interfaces":          `"wan.interface"`,
		"completely_unrelated_xx": "",
	}
	for in, want := range tests {
		got := suggest(in)
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("suggest(%q) = %q, want %s", in, got, want)
		}
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "exitd.toml")
	if _, err := Load(p); err == nil {
		t.Fatal("missing file loaded")
	}
	if err := os.WriteFile(p, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.Path != p {
		t.Fatalf("%v %v", c, err)
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"95mbit", 95e6, true}, {"1gbit", 1e9, true}, {"500kbit", 5e5, true},
		{"100mbps", 800e6, true}, {"1.5Gbit", 15e8, true}, {"64000", 64000, true},
		{" 10 mbit ", 10e6, true}, {"", 0, false}, {"mbit", 0, false}, {"10furlong", 0, false},
		{"1bit", 0, false}, {"999gbit", 0, false}, {"1.2.3mbit", 0, false}, {"-5mbit", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseAddrRange(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi string
	}{
		{"198.51.100.10-198.51.100.20", "198.51.100.10", "198.51.100.20"},
		{"198.51.100.7", "198.51.100.7", "198.51.100.7"},
		{"198.51.100.0/30", "198.51.100.0", "198.51.100.3"},
		{"198.51.100.5/29", "198.51.100.0", "198.51.100.7"},
		{"2001:db8::/126", "2001:db8::", "2001:db8::3"},
		{"10.0.0.0/7", "10.0.0.0", "11.255.255.255"},
	}
	for _, tc := range tests {
		r, err := ParseAddrRange(tc.in)
		if err != nil || r[0].String() != tc.lo || r[1].String() != tc.hi {
			t.Errorf("ParseAddrRange(%q) = %v, %v", tc.in, r, err)
		}
	}
	for _, in := range []string{"", "x", "1.2.3.4-", "1.2.3.4-y", "fe80::1%eth0"} {
		if _, err := ParseAddrRange(in); err == nil {
			t.Errorf("ParseAddrRange(%q) accepted", in)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	if r, err := ParsePortRange("1024-65535"); err != nil || r != [2]uint16{1024, 65535} {
		t.Errorf("%v %v", r, err)
	}
	if r, err := ParsePortRange("53"); err != nil || r != [2]uint16{53, 53} {
		t.Errorf("%v %v", r, err)
	}
	for _, in := range []string{"", "0", "0-10", "1-65536", "a-b", "10-1", "5-x"} {
		if _, err := ParsePortRange(in); err == nil {
			t.Errorf("ParsePortRange(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("[wan]\ninterface=1\n"))
	f.Add([]byte("[[x]]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("fuzz.toml", b)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "fuzz.toml" {
				t.Fatalf("error not an *Error naming the file: %v", err)
			}
			return
		}
		if c.Listen.Port < 1 || c.Listen.Port > 65535 || c.Tunnel.MTU < 1280 || c.WAN.Interface == "" {
			t.Fatalf("invalid config accepted: %+v", c)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	f.Add("198.51.100.1-198.51.100.9")
	f.Add("2001:db8::/64")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseAddrRange(s)
		if err == nil && (r[1].Less(r[0]) || r[0].Is4() != r[1].Is4()) {
			t.Fatalf("bad range accepted: %q -> %v", s, r)
		}
		p, err := ParsePortRange(s)
		if err == nil && (p[0] == 0 || p[1] < p[0]) {
			t.Fatalf("bad ports accepted: %q -> %v", s, p)
		}
	})
}

func TestKeysAreCaseSensitive(t *testing.T) {
	tests := []struct{ name, src, key string }{
		{"table", minimal + "[LOG]\nlevel = \"warn\"\n", "LOG"},
		{"key", minimal + "[listen]\nPort = 1\n", "listen.Port"},
		{"shadowing", minimal + "[log]\nlevel = \"debug\"\nLevel = \"error\"\n", "log.Level"},
		{"top", "State_Dir = \"/x\"\n" + minimal, "State_Dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte(tc.src))
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), "lower case") {
				t.Fatalf("got %v, want an unknown-key error for %s", err, tc.key)
			}
		})
	}
	if got := suggest("wan.nta"); !strings.Contains(got, `"wan.nat"`) {
		t.Errorf("suggest(wan.nta) = %q, want wan.nat", got)
	}
}

// TestMetricsListen pins what [metrics] listen means: empty (or absent) is
// the default loopback address, not off; "off" is off.
func TestMetricsListen(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		addr      string
		explicit  bool
	}{
		{"absent", minimal, "127.0.0.1:9586", false},
		{"empty", minimal + "[metrics]\nlisten = \"\"\n", "127.0.0.1:9586", false},
		{"off", minimal + "[metrics]\nlisten = \"off\"\n", "", false},
		{"explicit", minimal + "[metrics]\nlisten = \"[::1]:9100\"\n", "[::1]:9100", true},
		{"explicit default", minimal + "[metrics]\nlisten = \"127.0.0.1:9586\"\n", "127.0.0.1:9586", true},
	} {
		c, err := Parse("m.toml", []byte(tc.src))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if addr, explicit := c.Metrics.Address(); addr != tc.addr || explicit != tc.explicit {
			t.Errorf("%s: Address() = %q, %v; want %q, %v", tc.name, addr, explicit, tc.addr, tc.explicit)
		}
	}
	if DefaultMetricsListen != "127.0.0.1:9586" {
		t.Errorf("DefaultMetricsListen = %q: docs/observability.md and the packaged config say 127.0.0.1:9586", DefaultMetricsListen)
	}
}
