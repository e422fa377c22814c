package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPortForwardDefaults: off, but its policy is filled in (and
// checked) either way, so enabling it later needs only enabled = true.
func TestPortForwardDefaults(t *testing.T) {
	c, err := Parse("exitd.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := PortForward{Ports: PortRange{61000, 64999}, MaxPerMember: 16, MaxLifetime: Duration{2 * time.Hour}}
	if c.PortForward != want {
		t.Fatalf("defaults %+v, want %+v", c.PortForward, want)
	}
	on, err := Parse("exitd.toml", []byte(minimal+"[portforward]\nenabled = true\n"))
	if err != nil || !on.PortForward.Enabled || on.PortForward.Ports != want.Ports {
		t.Fatalf("enabled: %+v %v", on.PortForward, err)
	}
}

func TestPortForwardParsed(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      PortForward
	}{
		{"all set", "enabled = true\nports = \"50000-50099\"\nmax_per_member = 4\nmax_lifetime = \"30m\"\n",
			PortForward{Enabled: true, Ports: PortRange{50000, 50099}, MaxPerMember: 4, MaxLifetime: Duration{30 * time.Minute}}},
		{"one port", "ports = \"62000\"\n", PortForward{Ports: PortRange{62000, 62000}, MaxPerMember: 16, MaxLifetime: Duration{2 * time.Hour}}},
		{"port as a number", "ports = 62000\n", PortForward{Ports: PortRange{62000, 62000}, MaxPerMember: 16, MaxLifetime: Duration{2 * time.Hour}}},
		{"just below the listen port", "ports = \"400-442\"\n", PortForward{Ports: PortRange{400, 442}, MaxPerMember: 16, MaxLifetime: Duration{2 * time.Hour}}},
		{"just above the listen port", "ports = \"444-500\"\n", PortForward{Ports: PortRange{444, 500}, MaxPerMember: 16, MaxLifetime: Duration{2 * time.Hour}}},
		{"bounds", "max_per_member = 1024\nmax_lifetime = \"720h\"\n", PortForward{Ports: PortRange{61000, 64999}, MaxPerMember: 1024, MaxLifetime: Duration{720 * time.Hour}}},
		{"low bounds", "max_per_member = 1\nmax_lifetime = \"1s\"\n", PortForward{Ports: PortRange{61000, 64999}, MaxPerMember: 1, MaxLifetime: Duration{time.Second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("exitd.toml", []byte(minimal+"[portforward]\n"+tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if c.PortForward != tc.want {
				t.Fatalf("%+v, want %+v", c.PortForward, tc.want)
			}
		})
	}
}

// TestPortForwardRejects: every refusal names the key and its line.
func TestPortForwardRejects(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		key, msg  string
	}{
		{"range holds the listen port", "[portforward]\nports = \"400-500\"\n", 9, "portforward.ports", "400-500 includes the members' listen port 443"},
		{"range is the listen port", "[portforward]\nports = \"443\"\n", 9, "portforward.ports", "includes the members' listen port 443"},
		{"range ends at the listen port", "[portforward]\nports = \"100-443\"\n", 9, "portforward.ports", "listen port 443"},
		{"default range holds a moved listen port", "[listen]\nport = 61500\n[portforward]\nenabled = true\n", 10, "portforward.ports", "61000-64999 includes the members' listen port 61500"},
		{"reversed", "[portforward]\nports = \"9-1\"\n", 9, "portforward.ports", "ends before it starts"},
		{"port 0", "[portforward]\nports = \"0-10\"\n", 9, "portforward.ports", "want a port range"},
		{"beyond 65535", "[portforward]\nports = \"70000\"\n", 9, "portforward.ports", "want a port range"},
		{"too many per member", "[portforward]\nmax_per_member = 1025\n", 9, "portforward.max_per_member", "must be 1-1024, got 1025"},
		{"negative per member", "[portforward]\nmax_per_member = -1\n", 9, "portforward.max_per_member", "got -1"},
		{"lifetime too short", "[portforward]\nmax_lifetime = \"500ms\"\n", 9, "portforward.max_lifetime", "must be 1s to 720h, got 500ms"},
		{"lifetime too long", "[portforward]\nmax_lifetime = \"721h\"\n", 9, "portforward.max_lifetime", "got 721h0m0s"},
		{"lifetime not a duration", "[portforward]\nmax_lifetime = \"bogus\"\n", 9, "portforward.max_lifetime", "invalid duration"},
		{"enabled as text", "[portforward]\nenabled = \"yes\"\n", 9, "portforward.enabled", "incompatible types"},
		{"unknown key", "[portforward]\nrange = \"1-2\"\n", 9, "portforward.range", "unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce := parseErr(t, minimal+tc.src)
			if ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %#v, want line %d key %s msg %q", *ce, tc.line, tc.key, tc.msg)
			}
		})
	}
}

// TestPortForwardNeedsIPv4: NAT-PMP is IPv4 only, so an IPv6-only node
// may not enable it (but may leave it off).
func TestPortForwardNeedsIPv4(t *testing.T) {
	v6only := "[tunnel]\nipv6 = \"fd00:99::/64\"\n[wan]\ninterface = \"eth0\"\n"
	if _, err := Parse("exitd.toml", []byte(v6only+"[portforward]\nenabled = false\n")); err != nil {
		t.Fatalf("off on an IPv6-only node: %v", err)
	}
	_, err := Parse("exitd.toml", []byte(v6only+"[portforward]\nenabled = true\n"))
	if err == nil || !strings.Contains(err.Error(), "portforward.enabled") || !strings.Contains(err.Error(), "NAT-PMP is IPv4 only: it needs tunnel.ipv4") {
		t.Fatalf("enabled without IPv4: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "exitd.toml:6: ") {
		t.Fatalf("error does not point at the enabled line: %v", err)
	}
}

// TestLoadNamesTheFile: what `exitd check` and a reload print: the file's
// path, the line and the key.
func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exitd.toml")
	if err := os.WriteFile(path, []byte(minimal+"[portforward]\nenabled = true\nports = \"1-1000\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":10: portforward.ports: 1-1000 includes the members' listen port 443") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Fatalf("missing file: %v", err)
	}
}
