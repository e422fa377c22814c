package nat

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	good := testCases()[0].cfg
	snat := testCases()[1].cfg
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name string
		edit func(*Config)
		base Config
		want string // substring of the error; "" = valid
	}{
		{"masquerade", func(*Config) {}, good, ""},
		{"snat with ports", func(*Config) {}, snat, ""},
		{"v4 only", func(c *Config) { c.Member6, c.Gateway6 = netip.Prefix{}, netip.Addr{} }, good, ""},
		{"v6 only", func(c *Config) { c.Member4, c.Gateway4 = netip.Prefix{}, netip.Addr{} }, good, ""},
		{"snat v6 only without pool6 masquerades v6", func(c *Config) {
			c.Member4, c.Gateway4, c.Pool4, c.Pool6, c.Ports = netip.Prefix{}, netip.Addr{}, [2]netip.Addr{}, [2]netip.Addr{}, [2]uint16{}
		}, snat, ""},
		{"custom table", func(c *Config) { c.Table = "exit_d-2" }, good, ""},
		{"15-byte interface", func(c *Config) { c.Tun = "abcdefghijklmno" }, good, ""},
		{"extra blocks", func(c *Config) { c.Block = []netip.Prefix{p("198.18.0.0/15"), p("64:ff9b::/96")} }, good, ""},
		{"single-port snat", func(c *Config) { c.Ports = [2]uint16{4000, 4000} }, snat, ""},
		{"services", func(c *Config) {
			c.ServiceTCP, c.ServiceUDP, c.CaptureDNS = []uint16{1080}, [][2]uint16{{40000, 40999}}, true
		}, good, ""},
		{"service port 0", func(c *Config) { c.ServiceTCP = []uint16{0} }, good, "service TCP port 0"},
		{"service port 53", func(c *Config) { c.ServiceTCP = []uint16{53} }, good, "not 53"},
		{"empty UDP range", func(c *Config) { c.ServiceUDP = [][2]uint16{{5000, 4000}} }, good, "is empty"},

		{"empty tun", func(c *Config) { c.Tun = "" }, good, "tun: empty interface name"},
		{"empty wan", func(c *Config) { c.WAN = "" }, good, "wan: empty interface name"},
		{"tun too long", func(c *Config) { c.Tun = "abcdefghijklmnop" }, good, "longer than 15 bytes"},
		{"wan with slash", func(c *Config) { c.WAN = "eth/0" }, good, "contains '/'"},
		{"wan with space", func(c *Config) { c.WAN = "eth 0" }, good, "whitespace"},
		{"dot interface", func(c *Config) { c.Tun = ".." }, good, "not an interface name"},
		{"tun is wan", func(c *Config) { c.WAN = c.Tun }, good, "same interface"},
		{"table at the limit", func(c *Config) { c.Table = strings.Repeat("t", 251) }, good, ""},
		{"table too long", func(c *Config) { c.Table = strings.Repeat("t", 252) }, good, `more than 251 (the NAT tables append "_nat")`},
		{"layout split", func(c *Config) { c.Layout = LayoutSplit }, good, ""},
		{"layout inet", func(c *Config) { c.Layout = LayoutInet }, good, ""},
		{"layout unknown", func(c *Config) { c.Layout = 3 }, good, "unknown table layout 3"},
		{"layout negative", func(c *Config) { c.Layout = -1 }, good, "unknown table layout -1"},
		{"table bad char", func(c *Config) { c.Table = "exit d" }, good, "table name"},
		{"table leading digit", func(c *Config) { c.Table = "1exitd" }, good, "table name"},
		{"no members", func(c *Config) {
			c.Member4, c.Member6, c.Gateway4, c.Gateway6 = netip.Prefix{}, netip.Prefix{}, netip.Addr{}, netip.Addr{}
		}, good, "no member prefix"},
		{"member4 host bits", func(c *Config) { c.Member4 = p("10.8.0.1/16") }, good, "host bits set (did you mean 10.8.0.0/16?)"},
		{"member4 is v6", func(c *Config) { c.Member4 = p("fd00::/64") }, good, "wrong address family"},
		{"member6 is v4", func(c *Config) { c.Member6 = p("10.0.0.0/8") }, good, "wrong address family"},
		{"member6 v4-mapped", func(c *Config) { c.Member6 = p("::ffff:10.0.0.0/104") }, good, "wrong address family"},
		{"member4 too wide", func(c *Config) { c.Member4, c.Gateway4 = p("10.0.0.0/7"), a("10.0.0.1") }, good, "at least 8"},
		{"member4 single address", func(c *Config) { c.Member4, c.Gateway4 = p("10.8.0.1/32"), a("10.8.0.1") }, good, "leave room"},
		{"gateway4 missing", func(c *Config) { c.Gateway4 = netip.Addr{} }, good, "needs gateway4"},
		{"gateway4 outside", func(c *Config) { c.Gateway4 = a("10.9.0.1") }, good, "gateway4 10.9.0.1 is not in member4 10.8.0.0/16"},
		{"gateway6 outside", func(c *Config) { c.Gateway6 = a("fd00::1") }, good, "is not in member6"},
		{"gateway4 is v6", func(c *Config) { c.Gateway4 = a("fd8a:e2d1:5a3c::1") }, good, "is not in member4"},
		{"gateway4 network address", func(c *Config) { c.Gateway4 = a("10.8.0.0") }, good, "network address"},
		{"gateway without member", func(c *Config) { c.Member6 = netip.Prefix{} }, good, "gateway6 fd8a:e2d1:5a3c::1 without member6"},
		{"gateway6 with zone", func(c *Config) { c.Gateway6 = a("fd8a:e2d1:5a3c::1%eth0") }, good, "is not in member6"},
		{"pool in masquerade", func(c *Config) { c.Pool4 = snat.Pool4 }, good, "need mode snat"},
		{"ports in masquerade", func(c *Config) { c.Ports = [2]uint16{1024, 2048} }, good, "need mode snat"},
		{"unknown mode", func(c *Config) { c.Mode = 7 }, good, "unknown mode 7"},
		{"snat without pool4", func(c *Config) { c.Pool4 = [2]netip.Addr{} }, snat, "needs pool4"},
		{"pool4 reversed", func(c *Config) { c.Pool4[0], c.Pool4[1] = c.Pool4[1], c.Pool4[0] }, snat, "198.51.100.20-198.51.100.10: reversed"},
		{"pool4 half", func(c *Config) { c.Pool4[1] = netip.Addr{} }, snat, "both first and last"},
		{"pool4 is v6", func(c *Config) { c.Pool4 = [2]netip.Addr{a("2001:db8::1"), a("2001:db8::2")} }, snat, "pool4 2001:db8::1: wrong address family"},
		{"pool6 is v4", func(c *Config) { c.Pool6 = c.Pool4 }, snat, "pool6 198.51.100.10: wrong address family"},
		{"pool6 reversed", func(c *Config) { c.Pool6[0], c.Pool6[1] = c.Pool6[1], c.Pool6[0] }, snat, "reversed"},
		{"ports reversed", func(c *Config) { c.Ports = [2]uint16{2000, 1000} }, snat, "ports 2000-1000: reversed"},
		{"port zero", func(c *Config) { c.Ports = [2]uint16{0, 1000} }, snat, "port 0"},
		{"block invalid", func(c *Config) { c.Block = []netip.Prefix{{}} }, good, "block: invalid prefix"},
		{"block host bits", func(c *Config) { c.Block = []netip.Prefix{p("198.18.0.1/15")} }, good, "host bits set"},
		{"block v4-mapped", func(c *Config) { c.Block = []netip.Prefix{p("::ffff:1.2.3.0/120")} }, good, "IPv4-mapped"},
		{"wan prefixes", func(c *Config) { c.WANPrefixes = []netip.Prefix{p("203.0.113.0/24"), p("2001:db8:1::/64")} }, good, ""},
		{"wan prefix host bits", func(c *Config) { c.WANPrefixes = []netip.Prefix{p("203.0.113.1/24")} }, good, "wan prefix 203.0.113.1/24: host bits set"},
		{"wan prefix invalid", func(c *Config) { c.WANPrefixes = []netip.Prefix{{}} }, good, "wan prefix: invalid prefix"},
		{"allow a neighbour", func(c *Config) { c.Allow = []netip.Prefix{p("203.0.113.7/32"), p("192.168.1.0/24"), p("fd00:1::/64")} }, good, ""},
		{"allow host bits", func(c *Config) { c.Allow = []netip.Prefix{p("192.168.1.1/24")} }, good, "allow 192.168.1.1/24: host bits set"},
		{"allow v4-mapped", func(c *Config) { c.Allow = []netip.Prefix{p("::ffff:192.168.1.0/120")} }, good, "IPv4-mapped"},
		{"allow loopback", func(c *Config) { c.Allow = []netip.Prefix{p("127.0.0.53/32")} }, good, "allow 127.0.0.53/32: would open loopback 127.0.0.0/8"},
		{"allow everything", func(c *Config) { c.Allow = []netip.Prefix{p("0.0.0.0/0")} }, good, "would open loopback"},
		{"allow ::1", func(c *Config) { c.Allow = []netip.Prefix{p("::/0")} }, good, "would open loopback ::1/128"},
		{"allow member4", func(c *Config) { c.Allow = []netip.Prefix{p("10.8.3.0/24")} }, good, "allow 10.8.3.0/24: would open member4 10.8.0.0/16"},
		{"allow around member6", func(c *Config) { c.Allow = []netip.Prefix{p("fd00::/8")} }, good, "would open member6 fd8a:e2d1:5a3c::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.base
			cfg.Block = append([]netip.Prefix(nil), cfg.Block...)
			tc.edit(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "nat: invalid config: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestApplyRejectsInvalidWithoutTouchingKernel(t *testing.T) {
	m, rec := newFakeManager(t)
	err := m.Apply(Config{})
	if !errors.Is(err, ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "nat: apply ruleset: ") {
		t.Fatalf("Apply(zero) = %v", err)
	}
	if b := rec.take(); len(b) != 0 {
		t.Fatalf("an invalid config sent %d batches", len(b))
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{Table: "bad name"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a bad table name: %v", err)
	}
	m, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.log == nil || m.table != DefaultTable {
		t.Errorf("defaults: log %v, table %q", m.log, m.table)
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Masquerade: "masquerade", SNAT: "snat", 9: "Mode(9)"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
	}
}

func TestLayoutString(t *testing.T) {
	for l, want := range map[Layout]string{LayoutAuto: "auto", LayoutInet: "inet", LayoutSplit: "split", 7: "Layout(7)"} {
		if got := l.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(l), got, want)
		}
	}
}
