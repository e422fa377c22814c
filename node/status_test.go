package node

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"exitd/config"
	"exitd/members/etcdstore"
	"exitd/nat"
)

// withConfig runs the node on cfg from now on (the state dir kept).
func withConfig(t *testing.T, n *Node, extra string) *config.Config {
	t.Helper()
	c := mustConfig(t, extra)
	c.StateDir = n.config().StateDir
	n.cfg.Store(c)
	return c
}

// warningWith returns the status warning containing s ("" if none).
func warningWith(t *testing.T, n *Node, s string) string {
	t.Helper()
	st, err := backend{n}.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range st.Warnings {
		if strings.Contains(w, s) {
			return w
		}
	}
	return ""
}

const egressHint = "fairness needs [scheduler] egress_rate"

// TestStatusEgressWarning: exitctl status warns about unpaced downloads
// only when egress_rate is auto and the WAN reports no speed; the
// scheduler metrics name the source in every case.
func TestStatusEgressWarning(t *testing.T) {
	n, _, _, _ := quotaNode(t)
	speed := func(bps uint64) func(string) (uint64, bool) {
		return func(string) (uint64, bool) { return bps, bps > 0 }
	}
	for _, tc := range []struct {
		name, extra string
		link        uint64
		source      string
		warn        bool
	}{
		{"auto, link speed known", "", 1e9, egressLink, false},
		{"auto, a link faster than exitd forwards", "", 10e9, egressFastLink, false},
		{"auto, no link speed", "", 0, egressUnknown, true},
		{"explicit auto, no link speed", "[scheduler]\negress_rate = \"auto\"\n", 0, egressUnknown, true},
		{"off", "[scheduler]\negress_rate = \"off\"\n", 0, egressOff, false},
		{"zero is off", "[scheduler]\negress_rate = \"0\"\n", 0, egressOff, false},
		{"configured", "[scheduler]\negress_rate = \"300mbit\"\n", 0, egressConfig, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withConfig(t, n, tc.extra)
			n.linkSpeed = speed(tc.link)
			w := warningWith(t, n, egressHint)
			if (w != "") != tc.warn {
				t.Fatalf("warning %q, want one: %v", w, tc.warn)
			}
			if tc.warn && !strings.Contains(w, "eth0 reports no link speed") {
				t.Fatalf("warning does not name the WAN: %q", w)
			}
			st, ok := (schedSource{n}).SchedStats()
			if !ok || st.EgressSource != tc.source {
				t.Fatalf("metrics source %q (%v), want %q", st.EgressSource, ok, tc.source)
			}
		})
	}
}

// TestStatusFigures: the table's presence, mode, drop counters and
// restorations, and the services off, as the status shows them.
func TestStatusFigures(t *testing.T) {
	n, f, _, _ := quotaNode(t)
	addLabels(t, n, "alice", "bob")
	f.set(func(f *recNAT) {
		f.counters = map[string]nat.Counter{nat.CounterLeakDrop: {Packets: 4, Bytes: 400}, nat.CounterConnQuotaDrop: {Packets: 9}}
	})
	st, err := backend{n}.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.NATPresent || st.NATMode != "inet" || st.MembersTotal != 2 || st.Drops[nat.CounterLeakDrop] != 4 ||
		st.Drops[nat.CounterConnQuotaDrop] != 9 || st.Tunnel != "exit0" || st.ListenPort != 443 {
		t.Fatalf("%+v", st)
	}
	if st.DNS != nil || st.SOCKS != nil || st.PortForward != nil {
		t.Fatalf("services that do not run are shown: %+v %+v %+v", st.DNS, st.SOCKS, st.PortForward)
	}
	if st.PublicKey != n.priv.Public().String() {
		t.Fatal("public key")
	}
	if w := warningWith(t, n, "restored"); w != "" {
		t.Fatalf("restoration warning without restorations: %q", w)
	}
	f.set(func(f *recNAT) { f.absent, f.restored = true, 3 })
	st, _ = backend{n}.Status(context.Background())
	if st.NATPresent {
		t.Fatal("a missing table shown present")
	}
	if w := warningWith(t, n, "restored 3 times"); w == "" {
		t.Fatalf("no restoration warning in %q", st.Warnings)
	}
}

// TestStatusPublicEndpointWarning: the warning comes and goes with the
// setting.
func TestStatusPublicEndpointWarning(t *testing.T) {
	n, _, _, _ := quotaNode(t)
	if warningWith(t, n, "public_endpoint is not set") == "" {
		t.Fatal("no warning without public_endpoint")
	}
	withConfig(t, n, "")
	if w := warningWith(t, n, "public_endpoint"); w != "" {
		t.Fatalf("warning with public_endpoint set: %q", w)
	}
	if st, _ := (backend{n}).Status(context.Background()); st.Endpoint != "198.51.100.1:443" {
		t.Fatalf("endpoint %q", st.Endpoint)
	}
}

// TestStatusClusterWarning: a clustered node whose last refresh missed
// etcd says so, naming the endpoints; a reachable store or a single node
// has no such warning.
func TestStatusClusterWarning(t *testing.T) {
	n, _, _, _ := quotaNode(t)
	withConfig(t, n, "[cluster]\nendpoints = [\"10.0.0.5:2379\", \"https://10.0.0.6:2379\"]\n")
	if w := warningWith(t, n, "cluster:"); w != "" {
		t.Fatalf("single node (no store) warns: %q", w)
	}
	n.store = &etcdstore.Store{} // clustered; never asked: status reads the refresh loop's view
	w := warningWith(t, n, "cluster:")
	if !strings.Contains(w, "etcd (10.0.0.5:2379, https://10.0.0.6:2379) is unreachable") || !strings.Contains(w, "exitctl cluster status") {
		t.Fatalf("warning %q", w)
	}
	n.cluster.up.Store(true)
	if w := warningWith(t, n, "cluster:"); w != "" {
		t.Fatalf("reachable store warns: %q", w)
	}
}

// TestClusterSource: the cluster metrics exist only on a clustered node
// and report the refresh loop's view without asking etcd.
func TestClusterSource(t *testing.T) {
	n, _, _, _ := quotaNode(t)
	if _, ok := (clusterSource{n}).ClusterStats(); ok {
		t.Fatal("a single node reports cluster figures")
	}
	n.store = &etcdstore.Store{}
	st, ok := (clusterSource{n}).ClusterStats()
	if !ok || st.StoreUp || st.Registered || st.Nodes != 0 {
		t.Fatalf("before the first refresh: %+v %v", st, ok)
	}
	n.cluster.up.Store(true)
	n.cluster.nodes.Store(3)
	if st, _ := (clusterSource{n}).ClusterStats(); !st.StoreUp || st.Registered || st.Nodes != 3 {
		t.Fatalf("after a refresh without registration: %+v", st)
	}
}

// TestNatConfigPortForward: with [portforward] the ruleset gets its DNAT
// table and the input chain opens NAT-PMP's port to members, after the
// SOCKS relay range.
func TestNatConfigPortForward(t *testing.T) {
	nc := natConfig(mustConfig(t, "[portforward]\nenabled = true\n"))
	if !nc.PortForward {
		t.Fatal("port forwarding not in the ruleset")
	}
	want := [][2]uint16{{socksUDPFirst, socksUDPLast}, {5351, 5351}}
	if !slices.Equal(nc.ServiceUDP, want) {
		t.Fatalf("UDP services %v, want %v", nc.ServiceUDP, want)
	}
	if err := nc.Validate(); err != nil {
		t.Fatal(err)
	}
	noSocks := natConfig(mustConfig(t, "[socks]\nenabled = false\n[portforward]\nenabled = true\n"))
	if !slices.Equal(noSocks.ServiceUDP, [][2]uint16{{5351, 5351}}) || noSocks.ServiceTCP != nil {
		t.Fatalf("without SOCKS: UDP %v TCP %v", noSocks.ServiceUDP, noSocks.ServiceTCP)
	}
	if off := natConfig(mustConfig(t, "")); off.PortForward || slices.Contains(off.ServiceUDP, [2]uint16{5351, 5351}) {
		t.Fatalf("port forwarding off: %+v", off)
	}
}

// TestRestartOnlyNewTables: [cluster] and [portforward] need a restart;
// [conntrack] is reloadable.
func TestRestartOnlyNewTables(t *testing.T) {
	base := mustConfig(t, "")
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"cluster", "[cluster]\nendpoints = [\"10.0.0.5:2379\"]\n", "[cluster] changed"},
		{"portforward", "[portforward]\nenabled = true\n", "[portforward] changed"},
		{"portforward ports", "[portforward]\nports = \"50000-50100\"\n", "[portforward] changed"},
		{"conntrack", "[conntrack]\nmax_conns_per_member = 9000\n", ""},
		{"egress rate", "[scheduler]\negress_rate = \"100mbit\"\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := restartOnly(base, mustConfig(t, tc.extra))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestReloadAppliesConntrackQuota: a reload with a new [conntrack] quota
// re-applies the ruleset with it, and status shows it; an invalid one is
// refused before anything is applied.
func TestReloadAppliesConntrackQuota(t *testing.T) {
	n, f, extra := reloadNode(t)
	n.countCT = func([]netip.Prefix) (map[netip.Addr]int, error) { return nil, nil }
	*extra = "[conntrack]\nmax_conns_per_member = 9000\nnew_conn_rate = 50\n"
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(f.applied) != 1 || f.applied[0].Limits.Quota != 9000 || f.applied[0].Limits.Rate != 50 {
		t.Fatalf("applied %d rulesets: %+v", len(f.applied), f.applied)
	}
	if s := n.conntrackStatus(); s.Quota != 9000 {
		t.Fatalf("status quota %d", s.Quota)
	}
	// The same config again changes nothing.
	if err := n.Reload(); err != nil || len(f.applied) != 1 {
		t.Fatalf("unchanged reload: %v (%d applies)", err, len(f.applied))
	}
	*extra = "[conntrack]\nmax_conns_per_member = 10\n"
	if err := n.Reload(); err == nil || !strings.Contains(err.Error(), "conntrack.max_conns_per_member") {
		t.Fatalf("bad quota: %v", err)
	}
	*extra = "[conntrack]\nmax_conns_per_member = -1\n"
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(f.applied) != 2 || f.applied[1].Limits.Quota != 0 || n.conntrackStatus().Quota != 0 {
		t.Fatalf("quota off not applied: %+v", f.applied[len(f.applied)-1].Limits)
	}
}
