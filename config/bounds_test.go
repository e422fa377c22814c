package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// withTable returns minimal (whose last table is [wan], ending on line 7)
// plus extra, so extra's first line is line 8.
func withTable(extra string) string { return minimal + extra }

// parseErr parses src and returns the *Error, failing the test otherwise.
func parseErr(t *testing.T, src string) *Error {
	t.Helper()
	_, err := Parse("b.toml", []byte(src))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want *Error, got %v", err)
	}
	if ce.File != "b.toml" || !strings.HasPrefix(err.Error(), "b.toml") {
		t.Fatalf("error %q does not name the file", err)
	}
	return ce
}

func TestBounds(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		key   string // "" = must parse
		msg   string
		check func(*Config) bool
	}{
		{"port min", withTable("[listen]\nport = 1\n"), "", "", func(c *Config) bool { return c.Listen.Port == 1 }},
		{"port max", withTable("[listen]\nport = 65535\n"), "", "", func(c *Config) bool { return c.Listen.Port == 65535 }},
		{"port zero is default", withTable("[listen]\nport = 0\n"), "", "", func(c *Config) bool { return c.Listen.Port == DefaultPort }},
		{"port negative", withTable("[listen]\nport = -1\n"), "listen.port", "got -1", nil},
		{"port over", withTable("[listen]\nport = 65536\n"), "listen.port", "got 65536", nil},
		{"mtu min", strings.Replace(minimal, "[tunnel]", "[tunnel]\nmtu = 1280", 1), "", "", func(c *Config) bool { return c.Tunnel.MTU == 1280 }},
		{"mtu max", strings.Replace(minimal, "[tunnel]", "[tunnel]\nmtu = 9000", 1), "", "", func(c *Config) bool { return c.Tunnel.MTU == 9000 }},
		{"mtu under", strings.Replace(minimal, "[tunnel]", "[tunnel]\nmtu = 1279", 1), "tunnel.mtu", "got 1279", nil},
		{"mtu over", strings.Replace(minimal, "[tunnel]", "[tunnel]\nmtu = 9001", 1), "tunnel.mtu", "got 9001", nil},
		{"tun name 15", strings.Replace(minimal, "[tunnel]", "[tunnel]\nname = \"abcdefghijklmno\"", 1), "", "", func(c *Config) bool { return c.Tunnel.Name == "abcdefghijklmno" }},
		{"tun name 16", strings.Replace(minimal, "[tunnel]", "[tunnel]\nname = \"abcdefghijklmnop\"", 1), "tunnel.name", "1-15 characters", nil},
		{"tun name space", strings.Replace(minimal, "[tunnel]", "[tunnel]\nname = \"a b\"", 1), "tunnel.name", `contains ' '`, nil},
		{"tun name colon", strings.Replace(minimal, "[tunnel]", "[tunnel]\nname = \"eth0:1\"", 1), "tunnel.name", `contains ':'`, nil},
		{"tun name non-ascii", strings.Replace(minimal, "[tunnel]", "[tunnel]\nname = \"wé\"", 1), "tunnel.name", "contains", nil},
		{"v4 /8", strings.Replace(minimal, "10.99.0.0/16", "10.0.0.0/8", 1), "", "", func(c *Config) bool { return c.Tunnel.Prefix4.Bits() == 8 }},
		{"v4 /30", strings.Replace(minimal, "10.99.0.0/16", "10.99.0.0/30", 1), "", "", func(c *Config) bool { return c.Tunnel.Gateway4() == netip.MustParseAddr("10.99.0.1") }},
		{"v4 /7", strings.Replace(minimal, "10.99.0.0/16", "10.0.0.0/7", 1), "tunnel.ipv4", "/8 to /30, got /7", nil},
		{"v4 /31", strings.Replace(minimal, "10.99.0.0/16", "10.99.0.0/31", 1), "tunnel.ipv4", "got /31", nil},
		{"v4 given v6", strings.Replace(minimal, "10.99.0.0/16", "fd00::/64", 1), "tunnel.ipv4", "IPv4 prefix", nil},
		{"v4 bare address", strings.Replace(minimal, "10.99.0.0/16", "10.99.0.1", 1), "tunnel.ipv4", "IPv4 prefix", nil},
		{"v6 /48", strings.Replace(minimal, "fd00:99::/64", "fd00:99::/48", 1), "", "", func(c *Config) bool { return c.Tunnel.Prefix6.Bits() == 48 }},
		{"v6 /120", strings.Replace(minimal, "fd00:99::/64", "fd00:99::/120", 1), "", "", func(c *Config) bool { return c.Tunnel.Prefix6.Bits() == 120 }},
		{"v6 /47", strings.Replace(minimal, "fd00:99::/64", "fd00::/47", 1), "tunnel.ipv6", "got /47", nil},
		{"v6 /121", strings.Replace(minimal, "fd00:99::/64", "fd00:99::/121", 1), "tunnel.ipv6", "got /121", nil},
		{"v6 host bits", strings.Replace(minimal, "fd00:99::/64", "fd00:99::1/64", 1), "tunnel.ipv6", "did you mean fd00:99::/64", nil},
		{"v6 mapped v4", strings.Replace(minimal, "fd00:99::/64", "::ffff:10.0.0.0/104", 1), "tunnel.ipv6", "IPv6 prefix", nil},
		{"socket 107 bytes", withTable("[control]\nsocket = \"/" + strings.Repeat("s", 106) + "\"\n"), "", "", func(c *Config) bool { return len(c.Control.Socket) == 107 }},
		{"socket 108 bytes", withTable("[control]\nsocket = \"/" + strings.Repeat("s", 107) + "\"\n"), "control.socket", "107 bytes", nil},
		{"group kept", withTable("[control]\ngroup = \"wheel\"\n"), "", "", func(c *Config) bool { return c.Control.Group == "wheel" }},
		{"byte limit max", withTable("[scheduler]\nbyte_limit = 1073741824\n"), "", "", func(c *Config) bool { return c.Scheduler.ByteLimit == 1<<30 }},
		{"byte limit over", withTable("[scheduler]\nbyte_limit = 1073741825\n"), "scheduler.byte_limit", "got 1073741825", nil},
		{"byte limit float", withTable("[scheduler]\nbyte_limit = 1.5\n"), "scheduler.byte_limit", "incompatible types", nil},
		{"packet limit max", withTable("[scheduler]\npacket_limit = 1048576\n"), "", "", func(c *Config) bool { return c.Scheduler.PacketLimit == 1<<20 }},
		{"packet limit over", withTable("[scheduler]\npacket_limit = 1048577\n"), "scheduler.packet_limit", "0 (auto) to 1048576", nil},
		{"packet limit negative", withTable("[scheduler]\npacket_limit = -1\n"), "scheduler.packet_limit", "got -1", nil},
		{"rate min", withTable("[scheduler]\negress_rate = \"64kbit\"\n"), "", "", func(c *Config) bool { return c.Scheduler.Egress.BitsPerSecond == 64_000 }},
		{"rate max", withTable("[scheduler]\ningress_rate = \"400gbit\"\n"), "", "", func(c *Config) bool { return c.Scheduler.Ingress == 400e9 }},
		{"ingress over", withTable("[scheduler]\ningress_rate = \"401gbit\"\n"), "scheduler.ingress_rate", "between 64kbit and 400gbit", nil},
		{"ingress unit", withTable("[scheduler]\ningress_rate = \"5mib\"\n"), "scheduler.ingress_rate", `unknown unit "mib"`, nil},
		{"discipline fifo", withTable("[scheduler]\ndiscipline = \"fifo\"\n"), "", "", func(c *Config) bool { return c.Scheduler.Discipline == "fifo" }},
		{"discipline case", withTable("[scheduler]\ndiscipline = \"SRR\"\n"), "scheduler.discipline", `got "SRR"`, nil},
		{"quarantine negative", withTable("[members]\naddress_quarantine = \"-1h\"\n"), "members.address_quarantine", "must not be negative", nil},
		{"quarantine zero is default", withTable("[members]\naddress_quarantine = \"0s\"\n"), "", "", func(c *Config) bool { return c.Members.Quarantine.Duration == DefaultQuarantine }},
		{"quarantine compound", withTable("[members]\naddress_quarantine = \"1h30m\"\n"), "", "", func(c *Config) bool { return c.Members.Quarantine.Duration == 90*time.Minute }},
		{"quarantine integer", withTable("[members]\naddress_quarantine = 5\n"), "members.address_quarantine", "missing unit", nil},
		{"metrics off", withTable("[metrics]\nlisten = \"off\"\n"), "", "", func(c *Config) bool { return c.Metrics.Listen == MetricsOff }},
		{"metrics port only", withTable("[metrics]\nlisten = \":9586\"\n"), "", "", func(c *Config) bool { return c.Metrics.Listen == ":9586" }},
		{"metrics v6", withTable("[metrics]\nlisten = \"[::1]:9586\"\n"), "", "", nil},
		{"metrics OFF", withTable("[metrics]\nlisten = \"OFF\"\n"), "metrics.listen", `got "OFF"`, nil},
		{"sample 1s", withTable("[metrics]\nsample_interval = \"1s\"\n"), "", "", func(c *Config) bool { return c.Metrics.SampleInterval.Duration == time.Second }},
		{"sample 1h", withTable("[metrics]\nsample_interval = \"1h\"\n"), "", "", func(c *Config) bool { return c.Metrics.SampleInterval.Duration == time.Hour }},
		{"sample 999ms", withTable("[metrics]\nsample_interval = \"999ms\"\n"), "metrics.sample_interval", "got 999ms", nil},
		{"sample 61m", withTable("[metrics]\nsample_interval = \"61m\"\n"), "metrics.sample_interval", "got 1h1m0s", nil},
		{"sample negative", withTable("[metrics]\nsample_interval = \"-1s\"\n"), "metrics.sample_interval", "1s to 1h", nil},
		{"log warn upper", withTable("[log]\nlevel = \"WARN\"\n"), "", "", func(c *Config) bool { return c.Log.Level == "warn" }},
		{"log error", withTable("[log]\nlevel = \"error\"\n"), "", "", func(c *Config) bool { return c.Log.Level == "error" }},
		{"log trace", withTable("[log]\nlevel = \"trace\"\n"), "log.level", `got "trace"`, nil},
		{"endpoint v6", strings.Replace(minimal, "203.0.113.1:443", "[2001:db8::1]:51820", 1), "", "", nil},
		{"endpoint name", strings.Replace(minimal, "203.0.113.1:443", "vpn.example.com:443", 1), "", "", nil},
		{"endpoint empty is fine", strings.Replace(minimal, "public_endpoint = \"203.0.113.1:443\"", "", 1), "", "", func(c *Config) bool { return c.PublicEndpoint == "" }},
		{"endpoint no host", strings.Replace(minimal, "203.0.113.1:443", ":443", 1), "public_endpoint", "missing host", nil},
		{"endpoint bare v6", strings.Replace(minimal, "203.0.113.1:443", "2001:db8::1:443", 1), "public_endpoint", "[addr]:port", nil},
		{"endpoint port over", strings.Replace(minimal, "203.0.113.1:443", "x:65536", 1), "public_endpoint", `got "65536"`, nil},
		{"endpoint port name", strings.Replace(minimal, "203.0.113.1:443", "x:https", 1), "public_endpoint", `got "https"`, nil},
		{"state dir abs", "state_dir = \"/srv/x\"\n" + minimal, "", "", func(c *Config) bool { return c.StateDir == "/srv/x" }},
		{"isolation on", withTable("[filter]\nmember_isolation = true\n"), "", "", func(c *Config) bool { return c.Filter.Isolation() }},
		{"block masked", withTable("[filter]\nblock = [\"10.1.2.3/8\", \"::1\"]\n"), "", "", func(c *Config) bool {
			return len(c.Filter.Blocked) == 2 && c.Filter.Blocked[0] == netip.MustParsePrefix("10.0.0.0/8") && c.Filter.Blocked[1] == netip.MustParsePrefix("::1/128")
		}},
		{"block second bad", withTable("[filter]\nblock = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n"), "filter.block", `got "10.0.0.0/99"`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("b.toml", []byte(tc.src))
			if tc.key == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil && !tc.check(c) {
					t.Fatalf("check failed: %+v", c)
				}
				return
			}
			ce := parseErr(t, tc.src)
			if ce.Key != tc.key || ce.Line == 0 {
				t.Errorf("key %q line %d, want key %q and a line (%v)", ce.Key, ce.Line, tc.key, ce)
			}
			if !strings.Contains(ce.Msg, tc.msg) {
				t.Errorf("message %q does not mention %q", ce.Msg, tc.msg)
			}
		})
	}
}

func TestNATCombinations(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name, extra string
		key, msg    string
		nat         string
		pool        [2]netip.Addr
		ports       [2]uint16
	}{
		{"default masquerade", "", "", "", "masquerade", [2]netip.Addr{}, [2]uint16{}},
		{"explicit masquerade", "nat = \"masquerade\"\n", "", "", "masquerade", [2]netip.Addr{}, [2]uint16{}},
		{"masquerade with ports", "snat_ports = \"1024-2048\"\n", "wan.snat_pool", "only used with nat = \"snat\"", "", [2]netip.Addr{}, [2]uint16{}},
		{"masquerade with both", "nat = \"masquerade\"\nsnat_pool = \"198.51.100.1\"\nsnat_ports = \"1-2\"\n", "wan.snat_pool", "only used", "", [2]netip.Addr{}, [2]uint16{}},
		{"snat single address", "nat = \"snat\"\nsnat_pool = \"198.51.100.9\"\n", "", "", "snat", [2]netip.Addr{a("198.51.100.9"), a("198.51.100.9")}, [2]uint16{}},
		{"snat prefix pool", "nat = \"snat\"\nsnat_pool = \"198.51.100.0/30\"\n", "", "", "snat", [2]netip.Addr{a("198.51.100.0"), a("198.51.100.3")}, [2]uint16{}},
		{"snat v6 pool", "nat = \"snat\"\nsnat_pool = \"2001:db8::10 - 2001:db8::20\"\n", "", "", "snat", [2]netip.Addr{a("2001:db8::10"), a("2001:db8::20")}, [2]uint16{}},
		{"snat one port", "nat = \"snat\"\nsnat_pool = \"198.51.100.9\"\nsnat_ports = \"53\"\n", "", "", "snat", [2]netip.Addr{a("198.51.100.9"), a("198.51.100.9")}, [2]uint16{53, 53}},
		{"snat full ports", "nat = \"snat\"\nsnat_pool = \"198.51.100.9\"\nsnat_ports = \"1-65535\"\n", "", "", "snat", [2]netip.Addr{a("198.51.100.9"), a("198.51.100.9")}, [2]uint16{1, 65535}},
		{"snat ports only", "nat = \"snat\"\nsnat_ports = \"1024-2048\"\n", "wan.snat_pool", "required with nat", "", [2]netip.Addr{}, [2]uint16{}},
		{"snat bad pool", "nat = \"snat\"\nsnat_pool = \"pool\"\n", "wan.snat_pool", "address range such as", "", [2]netip.Addr{}, [2]uint16{}},
		{"snat zoned pool", "nat = \"snat\"\nsnat_pool = \"fe80::1%eth0-fe80::2%eth0\"\n", "wan.snat_pool", "zone", "", [2]netip.Addr{}, [2]uint16{}},
		{"snat port zero", "nat = \"snat\"\nsnat_pool = \"198.51.100.9\"\nsnat_ports = \"0-10\"\n", "wan.snat_ports", "port range such as", "", [2]netip.Addr{}, [2]uint16{}},
		{"snat port over", "nat = \"snat\"\nsnat_pool = \"198.51.100.9\"\nsnat_ports = \"70000\"\n", "wan.snat_ports", `got "70000"`, "", [2]netip.Addr{}, [2]uint16{}},
		{"nat case", "nat = \"SNAT\"\n", "wan.nat", `got "SNAT"`, "", [2]netip.Addr{}, [2]uint16{}},
		{"nat none", "nat = \"none\"\n", "wan.nat", `"masquerade" or "snat"`, "", [2]netip.Addr{}, [2]uint16{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := withTable(tc.extra)
			if tc.key != "" {
				ce := parseErr(t, src)
				if ce.Key != tc.key || ce.Line < 6 || !strings.Contains(ce.Msg, tc.msg) {
					t.Fatalf("got %v, want key %s mentioning %q", ce, tc.key, tc.msg)
				}
				return
			}
			c, err := Parse("b.toml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if c.WAN.NAT != tc.nat || c.WAN.Pool != tc.pool || c.WAN.Ports != tc.ports {
				t.Fatalf("nat %s pool %v ports %v, want %s %v %v", c.WAN.NAT, c.WAN.Pool, c.WAN.Ports, tc.nat, tc.pool, tc.ports)
			}
		})
	}
}

func TestNATTables(t *testing.T) {
	tests := []struct {
		name, extra string
		key, msg    string // "" = valid
		want        string
	}{
		{"default", "", "", "", "auto"},
		{"auto", "nat_tables = \"auto\"\n", "", "", "auto"},
		{"inet", "nat_tables = \"inet\"\n", "", "", "inet"},
		{"split", "nat_tables = \"split\"\n", "", "", "split"},
		{"split with snat", "nat = \"snat\"\nsnat_pool = \"198.51.100.9\"\nnat_tables = \"split\"\n", "", "", "split"},
		{"empty is the default", "nat_tables = \"\"\n", "", "", "auto"},
		{"upper case", "nat_tables = \"Split\"\n", "wan.nat_tables", `must be "auto", "inet" or "split", got "Split"`, ""},
		{"a family", "nat_tables = \"ip\"\n", "wan.nat_tables", `must be "auto", "inet" or "split", got "ip"`, ""},
		{"ip6 spelled out", "nat_tables = \"ip+ip6\"\n", "wan.nat_tables", `got "ip+ip6"`, ""},
		{"not a string", "nat_tables = 2\n", "wan.nat_tables", "", ""},
		{"singular", "nat_table = \"split\"\n", "wan.nat_table", `did you mean "wan.nat_tables"?`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := withTable(tc.extra)
			if tc.key != "" {
				ce := parseErr(t, src)
				if ce.Key != tc.key || ce.Line < 8 || !strings.Contains(ce.Msg, tc.msg) {
					t.Fatalf("got %#v, want key %s on line 8 or later mentioning %q", *ce, tc.key, tc.msg)
				}
				return
			}
			c, err := Parse("b.toml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if c.WAN.NATTables != tc.want {
				t.Fatalf("nat_tables %q, want %q", c.WAN.NATTables, tc.want)
			}
		})
	}
}

func TestIPv6Only(t *testing.T) {
	src := "[tunnel]\nipv6 = \"fd00:99::/64\"\n[wan]\ninterface = \"eth0\"\n"
	c, err := Parse("", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != "config" {
		t.Errorf("path %q, want config for an unnamed source", c.Path)
	}
	if c.Tunnel.Prefix4.IsValid() || c.Tunnel.Gateway4().IsValid() {
		t.Errorf("IPv4 should be off: %v %v", c.Tunnel.Prefix4, c.Tunnel.Gateway4())
	}
	if c.Tunnel.Gateway6() != netip.MustParseAddr("fd00:99::1") {
		t.Errorf("gw6 %v", c.Tunnel.Gateway6())
	}
	if c.PublicEndpoint != "" {
		t.Errorf("endpoint %q", c.PublicEndpoint)
	}
	// An unnamed source names "config" in its errors.
	_, err = Parse("", []byte("[tunnel]\nipv6 = \"fd00:99::/130\"\n[wan]\ninterface = \"eth0\"\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "config:2: tunnel.ipv6: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestDuplicates(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		mention   string
	}{
		{"key twice", minimal + "interface = \"eth1\"\n", 8, "wan.interface"},
		{"top key twice", "state_dir = \"/a\"\nstate_dir = \"/b\"\n" + minimal, 2, "state_dir"},
		{"table twice", minimal + "[wan]\nnat = \"snat\"\n", 8, "'wan'"},
		{"table reopened later", minimal + "[log]\nlevel = \"info\"\n[tunnel]\nmtu = 1400\n", 10, "'tunnel'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ce := parseErr(t, tc.src)
			if ce.Line != tc.line || !strings.Contains(ce.Error(), tc.mention) || !strings.Contains(ce.Msg, "already been defined") {
				t.Fatalf("got %#v, want line %d mentioning %s", *ce, tc.line, tc.mention)
			}
		})
	}
}

func TestUnknownKeySuggestions(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		key, msg  string
	}{
		{"ipv5", strings.Replace(minimal, "ipv6 =", "ipv5 =", 1), 5, "tunnel.ipv5", `did you mean "tunnel.ipv4"?`},
		{"socket typo", minimal + "[control]\nsokcet = \"/x\"\n", 9, "control.sokcet", `did you mean "control.socket"?`},
		{"plural", minimal + "[log]\nlevels = \"info\"\n", 9, "log.levels", `did you mean "log.level"?`},
		{"unknown table with key", minimal + "[tunel]\nmtu = 1400\n", 8, "tunel", "unknown key"},
		{"dotted top level", "tunnel.mut = 1400\n" + minimal, 1, "tunnel.mut", `did you mean "tunnel.mtu"?`},
		{"no close key", minimal + "[log]\nverbosity = 3\n", 9, "log.verbosity", "unknown key"},
		{"unknown after known", minimal + "[scheduler]\ndiscipline = \"srr\"\negres_rate = \"1mbit\"\n", 10, "scheduler.egres_rate", `"scheduler.egress_rate"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ce := parseErr(t, tc.src)
			if ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %#v, want line %d key %s msg %q", *ce, tc.line, tc.key, tc.msg)
			}
			if tc.name == "no close key" && strings.Contains(ce.Msg, "did you mean") {
				t.Fatalf("suggested for an unrelated key: %q", ce.Msg)
			}
		})
	}
}

func TestSuggestTable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"x", ""},
		{"level", `"log.level"`},
		{"scheduler.byte_limt", `"scheduler.byte_limit"`},
		{"metrics.sample_intervall", `"metrics.sample_interval"`},
		{"members.address_quarantien", `"members.address_quarantine"`},
		{"wan.SNAT_POOL", `"wan.snat_pool"`},
		{"PUBLIC_ENDPOINT", `"public_endpoint"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := suggest(tc.in)
			if tc.want == "" {
				if got != "" {
					t.Fatalf("suggest(%q) = %q, want none", tc.in, got)
				}
				return
			}
			if got != " (did you mean "+tc.want+"?)" {
				t.Fatalf("suggest(%q) = %q, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"abc", "abc", 0},
		{"kitten", "sitting", 3}, {"ab", "ba", 2}, {"mtu", "mut", 2}, {"port", "prot", 2},
		{"flaw", "lawn", 2}, {"a", "b", 1},
	}
	for _, tc := range tests {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetry)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "f", Msg: "m"}, "f: m"},
		{Error{File: "f", Line: 3, Msg: "m"}, "f:3: m"},
		{Error{File: "f", Key: "k.x", Msg: "m"}, "f: k.x: m"},
		{Error{File: "f", Line: 12, Key: "k", Msg: "m"}, "f:12: k: m"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestDecodeError(t *testing.T) {
	lines := newLineIndex(minimal + "[listen]\nport = \"x\"\n")
	tests := []struct {
		in       string
		line     int
		key, msg string
	}{
		{`toml: line 9 (last key "listen.port"): incompatible types: x`, 9, "listen.port", "incompatible types: x"},
		{`toml: (last key "listen.port"): bad`, 9, "listen.port", "bad"},
		{`toml: (last key "tunnel.ipv4"): bad`, 4, "tunnel.ipv4", "bad"},
		{`toml: something else`, 0, "", "something else"},
	}
	for _, tc := range tests {
		e := decodeError("d.toml", lines, errors.New(tc.in))
		if e.File != "d.toml" || e.Line != tc.line || e.Key != tc.key || e.Msg != tc.msg {
			t.Errorf("decodeError(%q) = %#v", tc.in, *e)
		}
	}
}

func TestLineIndex(t *testing.T) {
	src := "# comment = 1\nstate_dir = \"/x\"\n\n[ tunnel ] # the tunnel\n  mtu=1400\n\"name\" = \"a\"\n[wan]\ninterface = \"e\"\ninterface = \"f\"\nnot a key\n"
	idx := newLineIndex(src)
	tests := []struct {
		key  string
		want int
	}{
		{"state_dir", 2}, {"tunnel", 4}, {"tunnel.mtu", 5}, {"tunnel.name", 6},
		{"wan.interface", 8}, // first definition wins
		{"wan.nat", 7},       // falls back to the table
		{"tunnel.a.b", 4}, {"comment", 0}, {"nothere", 0}, {"", 0},
	}
	for _, tc := range tests {
		if got := idx.find(tc.key); got != tc.want {
			t.Errorf("find(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

func TestLastAddr(t *testing.T) {
	tests := []struct{ p, want string }{
		{"198.51.100.7/32", "198.51.100.7"},
		{"198.51.100.6/31", "198.51.100.7"},
		{"10.0.0.0/12", "10.15.255.255"},
		{"0.0.0.0/0", "255.255.255.255"},
		{"2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff"},
		{"2001:db8::/61", "2001:db8:0:7:ffff:ffff:ffff:ffff"},
		{"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	}
	for _, tc := range tests {
		if got := lastAddr(netip.MustParsePrefix(tc.p)).String(); got != tc.want {
			t.Errorf("lastAddr(%s) = %s, want %s", tc.p, got, tc.want)
		}
	}
}

func TestParseRateUnits(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  string
	}{
		{"64kbit", 64_000, ""}, {"64000bit", 64_000, ""}, {"8kbps", 64_000, ""},
		{"1gbps", 8e9, ""}, {"50GBPS", 400e9, ""}, {"2.5mbit", 2_500_000, ""},
		{"63999", 0, "between"}, {"51gbps", 0, "between"}, {"1e6", 0, "unknown unit \"e6\""},
		{"10 mb", 0, `unknown unit "mb"`}, {".", 0, "want a number"}, {"0.0.1kbit", 0, "want a number"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRate(tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
				t.Fatalf("ParseRate(%q) error %v, want one naming the input and %q", tc.in, err, tc.err)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"24h", 24 * time.Hour, true}, {"1h30m", 90 * time.Minute, true}, {"15s", 15 * time.Second, true},
		{"-2m", -2 * time.Minute, true}, {"0", 0, true}, {"1.5h", 90 * time.Minute, true},
		{"", 0, false}, {"5", 0, false}, {"1d", 0, false}, {"h", 0, false}, {"1h ", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d := Duration{time.Minute}
			err := d.UnmarshalText([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("UnmarshalText(%q) err = %v, want ok %v", tc.in, err, tc.ok)
			}
			if !tc.ok {
				if d.Duration != time.Minute {
					t.Fatalf("failed UnmarshalText changed the value to %v", d.Duration)
				}
				return
			}
			if d.Duration != tc.want {
				t.Fatalf("got %v, want %v", d.Duration, tc.want)
			}
			b, err := d.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			var back Duration
			if err := back.UnmarshalText(b); err != nil || back != d {
				t.Fatalf("round trip %q -> %v %v", b, back, err)
			}
		})
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"95mbit", "1.5Gbit", "100mbps", "64000", "", "1e9", " 10 kbit "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if r != 0 {
				t.Fatalf("error with rate %d", r)
			}
			return
		}
		if r < minRate || r > maxRate {
			t.Fatalf("ParseRate(%q) = %d out of bounds", s, r)
		}
	})
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"24h", "1h30m", "-5s", "0", "1.5µs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d Duration
		if d.UnmarshalText([]byte(s)) != nil {
			return
		}
		b, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Fatalf("%q -> %q -> %v %v", s, b, back, err)
		}
	})
}

func FuzzSuggest(f *testing.F) {
	f.Add("tunnel.mut")
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, k string) {
		got := suggest(k)
		if got == "" {
			return
		}
		for _, kk := range knownKeys() {
			if got == " (did you mean \""+kk+"\"?)" {
				if kk == k {
					t.Fatalf("suggest(%q) suggested itself", k)
				}
				return
			}
		}
		t.Fatalf("suggest(%q) = %q names no known key", k, got)
	})
}
