package config

import (
	"strings"
	"testing"
)

func TestClusterEndpoints(t *testing.T) {
	for _, tc := range []struct {
		endpoints string
		ok        bool
	}{
		{`["http://10.0.0.5:2379"]`, true},
		{`["https://[2001:db8::1]:2379"]`, true},
		{`["etcd-1.example.net:2379", "etcd-2.example.net:2379"]`, true},
		{`["[2001:db8::5]:2379"]`, true},
		{`["unix:///run/etcd.sock"]`, false},
		{`["https://"]`, false},
		{`[""]`, false},
		{`["10.0.0.5:2379/v3"]`, false},
		{`["etcd host:2379"]`, false},
		{`["10.0.0.5:2379", "10.0.0.6"]`, false},
	} {
		c, err := Parse("exitd.toml", []byte(minimal+"[cluster]\nendpoints = "+tc.endpoints+"\n"))
		if tc.ok {
			if err != nil || !c.Cluster.On() {
				t.Errorf("%s: %v", tc.endpoints, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "cluster.endpoints") || !strings.Contains(err.Error(), "want http(s)://host:port or host:port") {
			t.Errorf("%s: %v", tc.endpoints, err)
		}
	}
	// The error names the endpoint and its position.
	_, err := Parse("exitd.toml", []byte(minimal+"[cluster]\nendpoints = [\"10.0.0.5:2379\", \"ftp://x:1\"]\n"))
	if err == nil || !strings.Contains(err.Error(), `endpoint 1 "ftp://x:1"`) {
		t.Errorf("position: %v", err)
	}
	// An empty list is a single node; a string is not a list.
	if c, err := Parse("exitd.toml", []byte(minimal+"[cluster]\nendpoints = []\n")); err != nil || c.Cluster.On() || c.Cluster.Prefix != "" {
		t.Errorf("empty list: %+v %v", c, err)
	}
	if _, err := Parse("exitd.toml", []byte(minimal+"[cluster]\nendpoints = \"10.0.0.5:2379\"\n")); err == nil || !strings.Contains(err.Error(), "cluster.endpoints") {
		t.Errorf("string: %v", err)
	}
}

func TestClusterSettings(t *testing.T) {
	const ep = "[cluster]\nendpoints = [\"10.0.0.5:2379\"]\n"
	c, err := Parse("exitd.toml", []byte(minimal+ep+"prefix = \"/exitd/eu-1/\"\nname = \"exit-a\"\nwireguard_key = \"/etc/exitd/cluster.key\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nca = \"/ca.pem\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Cluster{Endpoints: []string{"10.0.0.5:2379"}, Prefix: "/exitd/eu-1/", Name: "exit-a",
		WireGuardKey: "/etc/exitd/cluster.key", Cert: "/c.pem", Key: "/k.pem", CA: "/ca.pem"}
	if got := c.Cluster; got.Prefix != want.Prefix || got.Name != want.Name || got.WireGuardKey != want.WireGuardKey ||
		got.Cert != want.Cert || got.Key != want.Key || got.CA != want.CA || len(got.Endpoints) != 1 {
		t.Fatalf("%+v", got)
	}
	for _, tc := range []struct{ src, key, msg string }{
		{ep + "prefix = \"//\"\n", "cluster.prefix", `got "//"`},
		{ep + "prefix = \"/ex itd\"\n", "cluster.prefix", "want a key path"},
		{ep + "prefix = \"/exitd/\t\"\n", "cluster.prefix", "want a key path"},
		{ep + "key = \"/k.pem\"\n", "cluster.cert", "cert and key go together"},
		{"[cluster]\nname = \"exit-a\"\n", "cluster.endpoints", "settings without endpoints"},
		{"[cluster]\nwireguard_key = \"/k\"\n", "cluster.endpoints", "settings without endpoints"},
		{"[cluster]\nca = \"/ca.pem\"\n", "cluster.endpoints", "remove the table for a single node"},
	} {
		ce := parseErr(t, minimal+tc.src)
		if ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
			t.Errorf("%q: %#v, want %s: %s", tc.src, *ce, tc.key, tc.msg)
		}
	}
}

// TestConntrackEdges: the bounds are inclusive, negative means off, and
// the burst follows a configured rate unless given.
func TestConntrackEdges(t *testing.T) {
	for _, tc := range []struct {
		src               string
		quota, rate, want int // want: burst as Rate() reports it
		off               bool
	}{
		{"max_conns_per_member = 64\n", 64, 500, 2000, false},
		{"max_conns_per_member = 1000000\n", 1_000_000, 500, 2000, false},
		{"max_conns_per_member = -5\n", -5, 500, 2000, true},
		{"new_conn_rate = 500\n", 0, 500, 2000, false},
		{"new_conn_rate = 1000000\n", 0, 1_000_000, 4_000_000, false},
		{"new_conn_rate = 1\n", 0, 1, 4, false},
		{"new_conn_rate = -1\nnew_conn_burst = 5\n", 0, 0, 0, false},
		{"new_conn_burst = 10000000\n", 0, 500, 10_000_000, false},
	} {
		c, err := Parse("exitd.toml", []byte(minimal+"[conntrack]\n"+tc.src))
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		r, b := c.Conntrack.Rate()
		if c.Conntrack.MaxConnsPerMember != tc.quota || r != tc.rate || b != tc.want || c.Conntrack.QuotaOff() != tc.off {
			t.Errorf("%q: %+v, rate %d burst %d", tc.src, c.Conntrack, r, b)
		}
	}
	for _, tc := range []struct{ src, key, msg string }{
		{"max_conns_per_member = 63\n", "conntrack.max_conns_per_member", "must be 64-1000000, 0 (auto) or negative (off), got 63"},
		{"max_conns_per_member = 1000001\n", "conntrack.max_conns_per_member", "got 1000001"},
		{"max_conns_per_member = \"lots\"\n", "conntrack.max_conns_per_member", "incompatible types"},
		{"new_conn_rate = 1000001\n", "conntrack.new_conn_rate", "at most 1000000"},
		{"new_conn_burst = 10000001\n", "conntrack.new_conn_burst", "must be 1-10000000"},
	} {
		ce := parseErr(t, minimal+"[conntrack]\n"+tc.src)
		if ce.Key != tc.key || ce.Line != 9 || !strings.Contains(ce.Msg, tc.msg) {
			t.Errorf("%q: %#v", tc.src, *ce)
		}
	}
}

// TestEgressRateInTOML: egress_rate as operators write it.
func TestEgressRateInTOML(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want PaceRate
	}{
		{`"auto"`, PaceRate{}},
		{`""`, PaceRate{}},
		{`"off"`, PaceRate{Off: true}},
		{`"0"`, PaceRate{Off: true}},
		{`0`, PaceRate{Off: true}},
		{`"95mbit"`, PaceRate{BitsPerSecond: 95_000_000}},
		{`"1gbit"`, PaceRate{BitsPerSecond: 1_000_000_000}},
		{`"12.5mbps"`, PaceRate{BitsPerSecond: 100_000_000}},
	} {
		c, err := Parse("exitd.toml", []byte(minimal+"[scheduler]\negress_rate = "+tc.val+"\n"))
		if err != nil || c.Scheduler.Egress != tc.want {
			t.Errorf("egress_rate = %s: %+v %v, want %+v", tc.val, c.Scheduler.Egress, err, tc.want)
		}
	}
	for _, bad := range []string{`"10kbit"`, `"fast"`, `"500gbit"`, `"-1mbit"`} {
		ce := parseErr(t, minimal+"[scheduler]\negress_rate = "+bad+"\n")
		if ce.Key != "scheduler.egress_rate" || ce.Line != 9 || !strings.Contains(ce.Msg, `"auto" or "off"`) {
			t.Errorf("egress_rate = %s: %#v", bad, *ce)
		}
	}
	// ingress_rate has no auto: empty is none, and off is not a rate.
	if c, err := Parse("exitd.toml", []byte(minimal+"[scheduler]\ningress_rate = \"\"\n")); err != nil || c.Scheduler.Ingress != 0 {
		t.Errorf("empty ingress: %v %v", c, err)
	}
	if _, err := Parse("exitd.toml", []byte(minimal+"[scheduler]\ningress_rate = \"off\"\n")); err == nil || !strings.Contains(err.Error(), "scheduler.ingress_rate") {
		t.Errorf("ingress off: %v", err)
	}
}
