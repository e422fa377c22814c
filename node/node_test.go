package node

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"exitd/config"
	"exitd/control"
	"exitd/nat"
	"exitd/tuning"
)

func mustConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	c, err := config.Parse("t.toml", []byte(`public_endpoint = "198.51.100.1:443"
[tunnel]
ipv4 = "10.99.0.0/16"
ipv6 = "fd00:99::/64"
[wan]
interface = "eth0"
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNatConfig(t *testing.T) {
	c := mustConfig(t, "nat = \"snat\"\nsnat_pool = \"198.51.100.10-198.51.100.20\"\nsnat_ports = \"1024-65535\"\n[filter]\nmember_isolation = false\nblock = [\"192.0.2.0/24\"]\n")
	nc := natConfig(c)
	if nc.Tun != "exit0" || nc.WAN != "eth0" || nc.Mode != nat.SNAT || nc.Isolation ||
		nc.Gateway4 != netip.MustParseAddr("10.99.0.1") || nc.Gateway6 != netip.MustParseAddr("fd00:99::1") ||
		nc.Pool4[1] != netip.MustParseAddr("198.51.100.20") || nc.Ports != [2]uint16{1024, 65535} || len(nc.Block) != 1 {
		t.Fatalf("%+v", nc)
	}
	if err := nc.Validate(); err != nil {
		t.Fatalf("mapped config invalid: %v", err)
	}
	if sp := natConfig(mustConfig(t, "nat_tables = \"split\"\n")); sp.Layout != nat.LayoutSplit {
		t.Fatalf("nat_tables = split mapped to %v", sp.Layout)
	}
	m := natConfig(mustConfig(t, ""))
	if m.Layout != nat.LayoutAuto || !m.CaptureDNS || len(m.ServiceTCP) != 1 || m.ServiceTCP[0] != 1080 || len(m.ServiceUDP) != 1 {
		t.Fatalf("defaults: %+v", m)
	}
	if off := natConfig(mustConfig(t, "[dns]\ncapture = false\n[socks]\nenabled = false\n")); off.CaptureDNS || off.ServiceTCP != nil || off.ServiceUDP != nil {
		t.Fatalf("services off: %+v", off)
	}
	if m.Mode != nat.Masquerade || !m.Isolation {
		t.Fatalf("%+v", m)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSchedConfig(t *testing.T) {
	n := &Node{linkSpeed: func(string) (uint64, bool) { return 10e9, true }}
	s := n.schedConfig(mustConfig(t, "[scheduler]\ndiscipline = \"fifo\"\negress_rate = \"95mbit\"\nbyte_limit = 100000\n"))
	if s.Discipline != "fifo" || s.EgressRate != 95_000_000 || s.LimitBytes != 100000 {
		t.Fatalf("%+v", s)
	}
	if s := n.schedConfig(mustConfig(t, "")); s.EgressRate != 0 {
		t.Fatalf("auto on a 10 Gbit/s link: %d bit/s, want unpaced (faster than exitd forwards)", s.EgressRate)
	}
	n.linkSpeed = func(string) (uint64, bool) { return 1e9, true }
	if s := n.schedConfig(mustConfig(t, "")); s.EgressRate != 950_000_000 {
		t.Fatalf("auto on a 1 Gbit/s link: %d bit/s, want 95 %%", s.EgressRate)
	}
}

func TestEgressRate(t *testing.T) {
	fast := func(string) (uint64, bool) { return 1e9, true }
	none := func(string) (uint64, bool) { return 0, false }
	for _, tc := range []struct {
		extra  string
		speed  func(string) (uint64, bool)
		rate   uint64
		source string
	}{
		{"", fast, 950_000_000, egressLink},
		{"", none, 0, egressUnknown},
		{"[scheduler]\negress_rate = \"auto\"\n", fast, 950_000_000, egressLink},
		{"[scheduler]\negress_rate = \"off\"\n", fast, 0, egressOff},
		{"[scheduler]\negress_rate = \"200mbit\"\n", fast, 200_000_000, egressConfig},
		{"[scheduler]\negress_rate = \"200mbit\"\n", none, 200_000_000, egressConfig},
		{"", func(string) (uint64, bool) { return 10e9, true }, 0, egressFastLink},
		{"", func(string) (uint64, bool) { return 2.5e9, true }, 2_375_000_000, egressLink},
	} {
		rate, src := egressRate(mustConfig(t, tc.extra), tc.speed)
		if rate != tc.rate || src != tc.source {
			t.Errorf("%q: %d bit/s from %s, want %d from %s", tc.extra, rate, src, tc.rate, tc.source)
		}
		if w := egressWarning(src, "eth0"); (w != "") != (src == egressUnknown) {
			t.Errorf("%q: warning %q for source %s", tc.extra, w, src)
		}
	}
}

func TestLinkSpeed(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"eth0": "1000\n", "veth0": "10000\n", "virt0": "-1\n", "bad0": "fast\n"} {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "speed"), []byte(content), 0o644)
	}
	for _, tc := range []struct {
		name string
		bps  uint64
		ok   bool
	}{{"eth0", 1e9, true}, {"veth0", 10e9, true}, {"virt0", 0, false}, {"bad0", 0, false}, {"missing0", 0, false}} {
		if bps, ok := linkSpeed(dir, tc.name); bps != tc.bps || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, bps, ok, tc.bps, tc.ok)
		}
	}
}

func TestRestartOnly(t *testing.T) {
	base := mustConfig(t, "")
	tests := []struct {
		name, extra string
		ok          bool
	}{
		{"filter change is reloadable", "[filter]\nblock = [\"192.0.2.0/24\"]\n", true},
		{"scheduler change is reloadable", "[scheduler]\ndiscipline = \"fifo\"\n", true},
		{"port needs restart", "[listen]\nport = 51820\n", false},
		{"socket needs restart", "[control]\nsocket = \"/run/x.sock\"\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := restartOnly(base, mustConfig(t, tc.extra))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
	mtu := mustConfig(t, "")
	mtu.Tunnel.MTU = 1380
	if err := restartOnly(base, mtu); err == nil || !strings.Contains(err.Error(), "[tunnel]") {
		t.Fatalf("mtu change: %v", err)
	}
	if !reflect.DeepEqual(natConfig(base), natConfig(mustConfig(t, ""))) {
		t.Fatal("identical configs reported as changed")
	}
	if reflect.DeepEqual(natConfig(base), natConfig(mustConfig(t, "[filter]\nmember_isolation = false\n"))) {
		t.Fatal("isolation change not detected")
	}
}

func TestKernelWarnings(t *testing.T) {
	var fails []tuning.Result
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		fails = append(fails, tuning.Result{Key: k, Wanted: "1", InForce: "0", Status: tuning.StatusDrift})
	}
	w := kernelWarnings(fails)
	if len(w) != 3 || !strings.Contains(w[2], "3 more") || !strings.Contains(w[0], "exitd tune apply") {
		t.Fatalf("%q", w)
	}
	if len(kernelWarnings(fails[:3])) != 3 || len(kernelWarnings(nil)) != 0 {
		t.Fatal("short lists must be shown whole")
	}
}

func TestAllowPeers(t *testing.T) {
	allow := allowPeers("no-such-group-xyz")
	if !allow(control.Peer{UID: 0}) || !allow(control.Peer{UID: uint32(os.Geteuid())}) {
		t.Fatal("root and self must be allowed")
	}
	if os.Geteuid() == 0 && allow(control.Peer{UID: 65534, GID: 65534}) {
		t.Fatal("nobody allowed without a group")
	}
	if lookupGroup("") != -1 || lookupGroup("no-such-group-xyz") != -1 {
		t.Fatal("missing group must be -1")
	}
	if g := lookupGroup("root"); g != 0 {
		t.Fatalf("root gid %d", g)
	}
	byGroup := allowPeers("root")
	if !byGroup(control.Peer{UID: 12345, GID: 0}) {
		t.Fatal("member of the group by primary gid refused")
	}
}

func TestNodeInfoWithoutEndpoint(t *testing.T) {
	c := mustConfig(t, "")
	c.PublicEndpoint = ""
	n := New(Options{Config: c})
	ni := n.nodeInfo()
	if !strings.Contains(ni.Endpoint, "set public_endpoint") || ni.MTU != 1420 {
		t.Fatalf("%+v", ni)
	}
}
