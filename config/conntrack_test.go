package config

import (
	"strings"
	"testing"
)

func TestConntrackDefaults(t *testing.T) {
	c, err := Parse("exitd.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	ct := c.Conntrack
	if !ct.QuotaAuto() || ct.QuotaOff() {
		t.Errorf("quota: auto %v off %v, want auto", ct.QuotaAuto(), ct.QuotaOff())
	}
	if r, b := ct.Rate(); r != DefaultNewConnRate || b != DefaultNewConnBurst {
		t.Errorf("rate %d burst %d, want %d/%d", r, b, DefaultNewConnRate, DefaultNewConnBurst)
	}
}

func TestConntrackParsed(t *testing.T) {
	for _, tc := range []struct {
		src                string
		auto, off          bool
		quota, rate, burst int
	}{
		{"max_conns_per_member = 8192\n", false, false, 8192, 500, 2000},
		{"max_conns_per_member = -1\nnew_conn_rate = -1\n", false, true, -1, 0, 0},
		{"new_conn_rate = 100\n", true, false, 0, 100, 400},
		{"new_conn_rate = 100\nnew_conn_burst = 150\n", true, false, 0, 100, 150},
	} {
		c, err := Parse("exitd.toml", []byte(minimal+"[conntrack]\n"+tc.src))
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		ct := c.Conntrack
		r, b := ct.Rate()
		if ct.QuotaAuto() != tc.auto || ct.QuotaOff() != tc.off || ct.MaxConnsPerMember != tc.quota || r != tc.rate || b != tc.burst {
			t.Errorf("%q: %+v (rate %d burst %d)", tc.src, ct, r, b)
		}
	}
}

func TestConntrackRejects(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"max_conns_per_member = 10\n", "conntrack.max_conns_per_member"},
		{"max_conns_per_member = 2000000\n", "conntrack.max_conns_per_member"},
		{"new_conn_rate = 2000000\n", "conntrack.new_conn_rate"},
		{"new_conn_burst = -5\n", "conntrack.new_conn_burst"},
		{"max_conns = 5\n", "max_conns"}, // unknown key
	} {
		_, err := Parse("exitd.toml", []byte(minimal+"[conntrack]\n"+tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.src, err, tc.want)
		}
	}
}

func TestClusterConfig(t *testing.T) {
	c, err := Parse("exitd.toml", []byte(minimal))
	if err != nil || c.Cluster.On() {
		t.Fatalf("default: on %v, %v", c.Cluster.On(), err)
	}
	c, err = Parse("exitd.toml", []byte(minimal+"[cluster]\nendpoints = [\"https://10.0.0.5:2379\", \"10.0.0.6:2379\"]\nca = \"/etc/exitd/etcd-ca.pem\"\n"))
	if err != nil || !c.Cluster.On() || c.Cluster.Prefix != DefaultClusterPrefix {
		t.Fatalf("cluster: %+v, %v", c.Cluster, err)
	}
	for _, tc := range []struct{ src, want string }{
		{"prefix = \"/exitd/eu\"\n", "cluster.endpoints"},
		{"endpoints = [\"ftp://x:1\"]\n", "cluster.endpoints"},
		{"endpoints = [\"10.0.0.5\"]\n", "cluster.endpoints"},
		{"endpoints = [\"10.0.0.5:2379\"]\ncert = \"/c.pem\"\n", "cluster.cert"},
		{"endpoints = [\"10.0.0.5:2379\"]\nprefix = \"exitd\"\n", "cluster.prefix"},
		{"endpoints = [\"10.0.0.5:2379\"]\nprefix = \"/\"\n", "cluster.prefix"},
		{"endpoints = [\"10.0.0.5:2379\"]\nname = \"exit a/1\"\n", "cluster.name"},
		{"endpoints = [\"10.0.0.5:2379\"]\nmax_txn_ops = 4\n", "cluster.max_txn_ops"},
	} {
		if _, err := Parse("exitd.toml", []byte(minimal+"[cluster]\n"+tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.src, err, tc.want)
		}
	}
}
