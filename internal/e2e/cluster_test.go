package e2e

// Lab tests of issue 15, the cluster: three exit nodes (one exitd per exit
// namespace, netlab.Options.Exits) on a three-member etcd in the mgmt
// namespace, one shared WireGuard key, public_endpoint the cluster address
// netlab.FloatingUnderlay4 (on exit A at the start); real wireguard-go
// members from the config `exitctl member add` printed.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
	"exitd/keys"
)

// clusterLab is a three-exit lab running a three-node exitd cluster.
type clusterLab struct {
	*netlab.Lab
	etcd  *harness.EtcdCluster
	cl    *harness.Cluster
	nodes []*harness.Node // A, B, C: nodes[i] in Exits[i]
	dir   string
}

// newClusterLab builds the lab (underlays shaped to 50 Mbit/s, so a
// download does not eat the machine), the internet host's web server,
// etcd and the cluster, all stopped at cleanup.
func newClusterLab(t *testing.T, members int) *clusterLab {
	t.Helper()
	testenv.RequireRoot(t)
	start := time.Now()
	l := netlab.NewT(t, netlab.Options{Exits: 3, Members: members, DownRate: 50e6})
	serveWeb(t, l)
	ctx := context.Background()
	e, err := harness.StartEtcd(ctx, l, harness.EtcdOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("etcd stop: %v", err)
		}
		if t.Failed() {
			for _, m := range e.Members {
				t.Logf("etcd %s output:\n%s", m.Name, m.Output())
			}
		}
	})
	cl := &clusterLab{Lab: l, etcd: e, dir: shortTempDir(t)}
	c, err := harness.StartCluster(ctx, l, harness.ClusterOptions{Bin: bins, Dir: cl.dir, Etcd: e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for i, n := range c.Nodes {
				t.Logf("exitd %c output:\n%s", 'A'+i, n.Proc.Output())
			}
		}
	})
	cl.cl, cl.nodes = c, c.Nodes
	t.Logf("lab, etcd and 3 nodes up in %v", time.Since(start).Round(time.Millisecond))
	return cl
}

// addMember adds label through node n with exitctl and returns the
// printed config and the member's public key, and when the add was
// acknowledged.
func addMember(t *testing.T, n *harness.Node, label string) (conf, pub string, acked time.Time) {
	t.Helper()
	out, err := n.Exitctl(context.Background(), "member", "add", "--label", label)
	if err != nil {
		t.Fatal(err)
	}
	acked = time.Now()
	return string(out), configPublicKey(t, string(out)), acked
}

// configPublicKey derives the public key of a client config's PrivateKey.
func configPublicKey(t *testing.T, conf string) string {
	t.Helper()
	for _, line := range strings.Split(conf, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "PrivateKey" {
			priv, err := keys.Parse(strings.TrimSpace(v)) // v keeps the base64 padding
			if err != nil {
				t.Fatalf("config's private key: %v", err)
			}
			return priv.Public().String()
		}
	}
	t.Fatalf("no PrivateKey in the config:\n%s", conf)
	return ""
}

// nodeName is a cluster node's name in the issue: A, B or C.
func nodeName(n *harness.Node) string {
	return map[string]string{"exit": "A", "exit1": "B", "exit2": "C"}[n.NS().Role]
}

// upMember brings up a wireguard-go member in ns from conf.
func (cl *clusterLab) upMember(t *testing.T, ns *netlab.NS, label, conf string) *harness.Member {
	t.Helper()
	m := &harness.Member{NS: ns, Label: label, Dev: harness.DeviceName(), Config: conf}
	if err := m.Up(context.Background(), bins.WireguardGo, filepath.Join(cl.dir, label+".conf")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Down() })
	return m
}

// hasPeer reports whether key is a peer of n's device.
func hasPeer(n *harness.Node, key string) (bool, error) {
	out, err := n.NS().Exec(context.Background(), "wg", "show", n.Opts.Tun, "peers")
	if err != nil {
		return false, err
	}
	return slices.Contains(strings.Fields(string(out)), key), nil
}

// waitPeer polls until key is (or is no longer) a peer of n's device and
// returns when that was first seen.
func waitPeer(t *testing.T, n *harness.Node, key string, present bool, timeout time.Duration) time.Time {
	t.Helper()
	seen, err := peerSeen(n, key, present, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

func peerSeen(n *harness.Node, key string, present bool, timeout time.Duration) (time.Time, error) {
	var seen time.Time
	var lastErr error
	err := netlab.WaitFor(context.Background(), timeout, func() bool {
		ok, err := hasPeer(n, key)
		lastErr = err
		if err == nil && ok == present {
			seen = time.Now()
			return true
		}
		return false
	})
	if err != nil {
		return seen, fmt.Errorf("node %s: peer %s present=%v not seen within %v (%v)", nodeName(n), key, present, timeout, lastErr)
	}
	return seen, nil
}

// syncLatency polls the nodes' devices at once until key is (or is no
// longer) a peer of each and returns, per node, how long after since that
// was first seen. It fails t when a node misses timeout.
func syncLatency(t *testing.T, nodes []*harness.Node, key string, present bool, since time.Time, timeout time.Duration) []time.Duration {
	t.Helper()
	lat := make([]time.Duration, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			seen, err := peerSeen(n, key, present, timeout)
			lat[i], errs[i] = seen.Sub(since), err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return lat
}

// wan4 is exit i's WAN address, the source the internet host sees.
func wan4(i int) string {
	p, err := netlab.ExitAddrs(i)
	if err != nil {
		panic(err)
	}
	return p.WAN4.String()
}

// underlay4 is exit i's own underlay address.
func underlay4(i int) string {
	p, err := netlab.ExitAddrs(i)
	if err != nil {
		panic(err)
	}
	return p.Underlay4.String()
}

// waitExit polls until ns fetches the internet host's /ip through its
// tunnel and it shows exit i's WAN address; it returns when it did.
func waitExit(t *testing.T, ns *netlab.NS, i int, timeout time.Duration) time.Time {
	t.Helper()
	var body string
	var err error
	werr := netlab.WaitFor(context.Background(), timeout, func() bool {
		body, err = httpGetTimeout(context.Background(), ns, "http://"+netlab.Internet4+"/ip", time.Second)
		return err == nil && strings.TrimSpace(body) == wan4(i)
	})
	if werr != nil {
		t.Fatalf("member did not reach the internet through exit %d (%s) within %v: last %q %v", i, wan4(i), timeout, body, err)
	}
	return time.Now()
}

// listMembers is `exitctl --json member list --no-stats` on n.
func listMembers(n *harness.Node) ([]control.Member, error) {
	out, err := n.Exitctl(context.Background(), "--json", "member", "list", "--no-stats")
	if err != nil {
		return nil, err
	}
	var ms []control.Member
	if err := json.Unmarshal(out, &ms); err != nil {
		return nil, fmt.Errorf("member list: %w: %s", err, out)
	}
	return ms, nil
}

// configAddrs are the Address line's IPv4 and IPv6 of a client config.
func configAddrs(conf string) (v4, v6 string) {
	for _, line := range strings.Split(conf, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "Address" {
			continue
		}
		for _, a := range strings.Split(v, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(a))
			switch {
			case err != nil:
			case p.Addr().Is4():
				v4 = p.Addr().String()
			default:
				v6 = p.Addr().String()
			}
		}
	}
	return v4, v6
}

// TestClusterMemberOnEveryNode: a member added through node A's exitctl
// reaches every node's device within a second and the internet through A
// (the cluster address), B and C with the same config — only the Endpoint
// line changed — leaving through each exit's own WAN address.
func TestClusterMemberOnEveryNode(t *testing.T) {
	cl := newClusterLab(t, 1)
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	ctx := context.Background()
	conf, pub, acked := addMember(t, a, "roamer")
	if !strings.Contains(conf, "Endpoint = "+netlab.FloatingUnderlay4+":443") {
		t.Fatalf("config does not dial the cluster address:\n%s", conf)
	}
	lat := syncLatency(t, []*harness.Node{b, c}, pub, true, acked, 5*time.Second)
	t.Logf("add on A reached B's device %v and C's %v after the ack", lat[0].Round(time.Millisecond), lat[1].Round(time.Millisecond))
	if max(lat[0], lat[1]) > time.Second {
		t.Errorf("add on A reached B, C after %v, want within 1 s", lat)
	}
	v4, v6 := configAddrs(conf)
	for _, n := range cl.nodes {
		ms, err := listMembers(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Label != "roamer" || ms[0].PublicKey != pub || ms[0].IPv4.String() != v4 || ms[0].IPv6.String() != v6 {
			t.Fatalf("%s lists %+v, want roamer %s %s %s", nodeName(n), ms, pub, v4, v6)
		}
	}

	m := cl.upMember(t, cl.Members[0], "roamer", conf)
	waitExit(t, m.NS, 0, 10*time.Second)
	for _, i := range []int{1, 2} {
		if err := m.SetEndpoint(ctx, underlay4(i)+":443"); err != nil {
			t.Fatal(err)
		}
		waitExit(t, m.NS, i, 10*time.Second)
	}
	// The one config still works through the cluster address.
	if err := m.SetEndpoint(ctx, netlab.FloatingUnderlay4+":443"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, m.NS, 0, 10*time.Second)
}

// streamDownload streams /bytes from the internet host through the member's
// tunnel in the background, recording when bytes last arrived.
type streamDownload struct {
	last  atomic.Int64 // unix nanoseconds of the last read
	total atomic.Int64
	done  chan error
}

func startDownload(t *testing.T, ns *netlab.NS) *streamDownload {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &streamDownload{done: make(chan error, 1)}
	t.Cleanup(func() { cancel(); <-d.done })
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+netlab.Internet4+"/bytes?n=1099511627776", nil)
		resp, err := ns.HTTPClient().Do(req)
		if err != nil {
			d.done <- err
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				d.total.Add(int64(n))
				d.last.Store(time.Now().UnixNano())
			}
			if err != nil {
				d.done <- err
				return
			}
		}
	}()
	return d
}

func (d *streamDownload) lastRead() time.Time { return time.Unix(0, d.last.Load()) }

// TestClusterRemoveCutsOnOtherNode: a member downloading through A is
// removed with node C's exitctl; A drops the peer and the download stops
// within a second of the removal.
func TestClusterRemoveCutsOnOtherNode(t *testing.T) {
	cl := newClusterLab(t, 1)
	a, c := cl.nodes[0], cl.nodes[2]
	ctx := context.Background()
	conf, pub, _ := addMember(t, a, "leaver")
	m := cl.upMember(t, cl.Members[0], "leaver", conf)
	waitExit(t, m.NS, 0, 10*time.Second)
	waitPeer(t, c, pub, true, 5*time.Second)

	d := startDownload(t, m.NS)
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool { return d.total.Load() > 4<<20 }); err != nil {
		t.Fatalf("download through A did not start: %d bytes", d.total.Load())
	}
	v4, _ := configAddrs(conf)
	if conntrackFrom(t, a.NS(), v4) == 0 {
		t.Fatalf("no conntrack entry for %s on A during the download", v4)
	}
	removing := time.Now()
	if out, err := c.Exitctl(ctx, "member", "remove", "leaver"); err != nil {
		t.Fatalf("remove on C: %v %s", err, out)
	}
	acked := time.Now()
	if since := removing.Sub(d.lastRead()); since > 500*time.Millisecond {
		t.Fatalf("download was not flowing when the removal started (last bytes %v before)", since)
	}
	gone := waitPeer(t, a, pub, false, 5*time.Second)
	// Stopped: no bytes for 700 ms (the TBF queue is 50 ms, the RTT < 1 ms).
	if err := netlab.WaitFor(ctx, 5*time.Second, func() bool { return time.Since(d.lastRead()) > 700*time.Millisecond }); err != nil {
		t.Fatalf("download through A still flowing %v after the removal on C (%d bytes)", time.Since(removing), d.total.Load())
	}
	cut := d.lastRead().Sub(removing)
	t.Logf("remove on C: acked in %v; A dropped the peer %v and the download's last bytes came %v after the request (%.1f MB downloaded)",
		acked.Sub(removing).Round(time.Millisecond), gone.Sub(removing).Round(time.Millisecond), cut.Round(time.Millisecond), float64(d.total.Load())/1e6)
	if gone.Sub(removing) > time.Second || cut > time.Second {
		t.Errorf("A cut the member %v / %v after the removal on C, want within 1 s", gone.Sub(removing), cut)
	}
	if err := netlab.WaitFor(ctx, time.Second, func() bool { return conntrackFrom(t, a.NS(), v4) == 0 }); err != nil {
		t.Errorf("A keeps %d conntrack entries of the removed member", conntrackFrom(t, a.NS(), v4))
	}
	cannotReach(t, m.NS)
	for _, n := range cl.nodes {
		if ms, err := listMembers(n); err != nil || len(ms) != 0 {
			t.Errorf("%s lists %d members after the removal (%v)", nodeName(n), len(ms), err)
		}
	}
}

// chunks fetches /bytes?n=256KiB through the member's tunnel back to back
// (a download an application resumes: each chunk a new connection, a
// second at most), recording when each fetch that succeeded started and
// completed.
type chunks struct {
	mu   sync.Mutex
	done []chunk
	stop chan struct{}
}

type chunk struct{ start, end time.Time }

func startChunks(t *testing.T, ns *netlab.NS) *chunks {
	ctx, cancel := context.WithCancel(context.Background())
	c := &chunks{stop: make(chan struct{})}
	t.Cleanup(func() { cancel(); <-c.stop })
	go func() {
		defer close(c.stop)
		for ctx.Err() == nil {
			start := time.Now()
			body, err := httpGetTimeout(ctx, ns, "http://"+netlab.Internet4+"/bytes?n=262144", time.Second)
			if err == nil && len(body) == 262144 {
				c.mu.Lock()
				c.done = append(c.done, chunk{start, time.Now()})
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// around returns the last completion before t and the first completion of
// a fetch started after t (one in flight at t does not count), and how
// many fetches succeeded.
func (c *chunks) around(t time.Time) (before, after time.Time, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.done {
		if ch.end.Before(t) {
			before = ch.end
		}
		if !ch.start.Before(t) && after.IsZero() {
			after = ch.end
		}
	}
	return before, after, len(c.done)
}

// TestClusterFailover: node A fails (its underlay link goes down) while a
// member downloads through the cluster address; the address moves to B as
// keepalived would move it (del on A, add on B, gratuitous ARP) and the
// member's download continues through B without a config change. The
// stall is the member's: B cannot decrypt the session A held, so the
// member's wireguard-go starts a new handshake only when its data has gone
// unanswered for KeepaliveTimeout + RekeyTimeout (15 s). A is down, as
// when keepalived moves an address (TestClusterPlannedMove moves it away
// from a running A).
func TestClusterFailover(t *testing.T) {
	testClusterMove(t, true)
}

// TestClusterPlannedMove: the cluster address moves from a running A to B
// (maintenance). Before strict sources A kept answering the member from
// its own address when the cluster address left it — its handshake pulled
// the member back to A's own address and B never saw it; now A's sends
// fail, and the member re-handshakes with B through the cluster address.
func TestClusterPlannedMove(t *testing.T) {
	testClusterMove(t, false)
}

func testClusterMove(t *testing.T, aDown bool) {
	cl := newClusterLab(t, 1)
	a := cl.nodes[0]
	ctx := context.Background()
	conf, pub, _ := addMember(t, a, "mover")
	m := cl.upMember(t, cl.Members[0], "mover", conf)
	waitExit(t, m.NS, 0, 10*time.Second)
	waitPeer(t, cl.nodes[1], pub, true, 5*time.Second)

	ch := startChunks(t, m.NS)
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool { _, _, n := ch.around(time.Now()); return n >= 5 }); err != nil {
		t.Fatal("download through A did not start")
	}
	if aDown {
		if _, err := a.NS().Exec(ctx, "ip", "link", "set", netlab.ExitUnderlayIface, "down"); err != nil {
			t.Fatal(err)
		}
	}
	moved := time.Now()
	if err := cl.cl.MoveFloating(1); err != nil {
		t.Fatal(err)
	}
	// keepalived repeats its gratuitous ARP; once a second here.
	lastGARP := time.Now()
	if err := netlab.WaitFor(ctx, 40*time.Second, func() bool {
		if time.Since(lastGARP) > time.Second && time.Since(moved) < 5*time.Second {
			cl.cl.Announce()
			lastGARP = time.Now()
		}
		_, after, _ := ch.around(moved)
		return !after.IsZero()
	}); err != nil {
		t.Fatalf("download did not resume within 40 s of the failover")
	}
	before, after, _ := ch.around(moved)
	stall := after.Sub(moved)
	t.Logf("move A -> B (A down: %v): download resumed %v after the move (gap between chunks %v; target 6 s)",
		aDown, stall.Round(time.Millisecond), after.Sub(before).Round(time.Millisecond))
	if stall > 30*time.Second {
		t.Errorf("failover stall %v, want under 30 s", stall)
	}
	waitExit(t, m.NS, 1, 5*time.Second)
	if !strings.Contains(m.Config, "Endpoint = "+netlab.FloatingUnderlay4+":443") {
		t.Fatalf("member config changed")
	}
	// The member talks to the cluster address, not to A's own one.
	out, err := m.NS.Exec(ctx, "wg", "show", m.Dev, "endpoints")
	if err != nil || !strings.Contains(string(out), netlab.FloatingUnderlay4+":443") {
		t.Fatalf("member endpoint after the move: %s %v", out, err)
	}
}

// TestClusterEtcdOutage: killing one etcd member (the leader) changes
// nothing for members, and once the other two have elected a leader a
// member is added and reaches the other nodes; with etcd stopped members
// keep working and `exitctl member add` fails with "unavailable"; once
// etcd is back adds succeed and reach the other nodes again.
func TestClusterEtcdOutage(t *testing.T) {
	cl := newClusterLab(t, 1)
	a, b, c := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	ctx := context.Background()
	conf, _, _ := addMember(t, a, "steady")
	m := cl.upMember(t, cl.Members[0], "steady", conf)
	waitExit(t, m.NS, 0, 10*time.Second)

	leader, err := cl.etcd.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.etcd.Kill(leader); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// An add proposed at once, while the survivors still follow the dead
	// leader, is lost by etcd; exitd's store reads back whether it
	// committed and proposes it again within its 5 s request time (before,
	// the add failed "unavailable" after 5 s although two of three etcd
	// members were up).
	_, pubAtOnce, ackedAtOnce := addMember(t, b, "at-once")
	t.Logf("add on B proposed as the leader died: acknowledged %v later", ackedAtOnce.Sub(killed).Round(time.Millisecond))
	waitPeer(t, a, pubAtOnce, true, 5*time.Second)
	newLeader := -1
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
		newLeader, err = cl.etcd.Leader(ctx)
		return err == nil
	}); err != nil {
		t.Fatalf("etcd elected no new leader after e%d was killed: %v", leader, err)
	}
	elected := time.Now()
	_, pub, acked := addMember(t, b, "after-kill")
	t.Logf("etcd leader e%d killed; e%d elected %v later; add on B acknowledged in %v",
		leader, newLeader, elected.Sub(killed).Round(time.Millisecond), acked.Sub(elected).Round(time.Millisecond))
	lat := syncLatency(t, []*harness.Node{a, c}, pub, true, acked, 5*time.Second)
	t.Logf("one etcd member down: the add on B reached A %v and C %v after the ack", lat[0].Round(time.Millisecond), lat[1].Round(time.Millisecond))
	if max(lat[0], lat[1]) > time.Second {
		t.Errorf("add on B reached A, C after %v with one etcd member down, want within 1 s", lat)
	}
	waitExit(t, m.NS, 0, 5*time.Second)

	if err := cl.etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, m.NS, 0, 5*time.Second)
	start := time.Now()
	out, err := a.Exitctl(ctx, "member", "add", "--label", "during-outage")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("member add with etcd down = %v, %q; want the unavailable error", err, out)
	}
	t.Logf("etcd down: exitctl member add failed after %v: %v", took.Round(time.Millisecond), err)
	if ms, err := listMembers(c); err != nil || len(ms) != 3 {
		t.Errorf("C lists %d members with etcd down (%v), want the 3 cached", len(ms), err)
	}
	waitExit(t, m.NS, 0, 5*time.Second)

	if err := cl.etcd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	var acks []string
	if err := netlab.WaitFor(ctx, 30*time.Second, func() bool {
		out, err := c.Exitctl(ctx, "member", "add", "--label", "after-outage")
		if err != nil {
			acks = append(acks, err.Error())
			return false
		}
		pub = configPublicKey(t, string(out))
		return true
	}); err != nil {
		t.Fatalf("member add did not succeed within 30 s of etcd's return: %q", acks)
	}
	acked = time.Now()
	t.Logf("etcd back (healthy): member add on C succeeded %v later, after %d refusals", acked.Sub(back).Round(time.Millisecond), len(acks))
	lat = syncLatency(t, []*harness.Node{a, b}, pub, true, acked, 10*time.Second)
	t.Logf("after the outage: the add on C reached A %v and B %v after the ack", lat[0].Round(time.Millisecond), lat[1].Round(time.Millisecond))
	if max(lat[0], lat[1]) > time.Second {
		t.Errorf("add on C after the outage reached A, B after %v, want within 1 s", lat)
	}
	for _, n := range cl.nodes {
		if ms, err := listMembers(n); err != nil || len(ms) != 4 {
			t.Errorf("%s lists %d members after the outage (%v), want 4", nodeName(n), len(ms), err)
		}
	}
	waitExit(t, m.NS, 0, 5*time.Second)
}

// TestClusterConcurrentAdds: 100 `exitctl member add` at once, spread over
// the three nodes, give 100 distinct addresses, and every acknowledged
// member is listed by every node and is a peer of every node's device.
func TestClusterConcurrentAdds(t *testing.T) {
	const total = 100
	cl := newClusterLab(t, 1)
	ctx := context.Background()
	acks := make([]clusterAck, total)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range total {
		wg.Go(func() {
			<-gate
			label := fmt.Sprintf("burst-%03d", i)
			out, err := cl.nodes[i%3].Exitctl(ctx, "member", "add", "--label", label)
			v4, v6 := configAddrs(string(out))
			acks[i] = clusterAck{label, v4, v6, err}
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	took := time.Since(start)
	want := map[string]clusterAck{}
	by4, by6 := map[string]string{}, map[string]string{}
	for _, a := range acks {
		if a.err != nil {
			t.Errorf("add %s: %v", a.label, a.err)
			continue
		}
		if a.v4 == "" || a.v6 == "" {
			t.Errorf("add %s: no addresses in the config", a.label)
			continue
		}
		if o, dup := by4[a.v4]; dup {
			t.Errorf("%s and %s both got %s", o, a.label, a.v4)
		}
		if o, dup := by6[a.v6]; dup {
			t.Errorf("%s and %s both got %s", o, a.label, a.v6)
		}
		by4[a.v4], by6[a.v6] = a.label, a.label
		want[a.label] = a
	}
	t.Logf("%d concurrent adds over 3 nodes: %d acknowledged in %v", total, len(want), took.Round(time.Millisecond))
	synced := time.Now()
	for _, n := range cl.nodes {
		var ms []control.Member
		var problem string
		err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
			var err error
			if ms, err = listMembers(n); err != nil {
				problem = err.Error()
				return false
			}
			problem = checkListed(ms, want)
			return problem == ""
		})
		if err != nil {
			t.Errorf("%s: %s", nodeName(n), problem)
			continue
		}
		out, err := n.NS().Exec(ctx, "wg", "show", n.Opts.Tun, "peers")
		if err != nil {
			t.Fatal(err)
		}
		if peers := len(strings.Fields(string(out))); peers != len(want) {
			t.Errorf("%s's device has %d peers, want %d", nodeName(n), peers, len(want))
		}
	}
	t.Logf("every node listed every acknowledged member %v after the last ack", time.Since(synced).Round(time.Millisecond))
}

// clusterAck is one `exitctl member add` of the burst: the label and the
// addresses the printed config gave, or the error.
type clusterAck struct {
	label, v4, v6 string
	err           error
}

// checkListed says what differs between a node's list and the acknowledged
// members ("" when they match: the same labels with the same addresses,
// nothing else, no address twice).
func checkListed(ms []control.Member, want map[string]clusterAck) string {
	var missing, wrong []string
	by4 := map[string]string{}
	for _, m := range ms {
		v4, v6 := m.IPv4.String(), m.IPv6.String()
		if o, dup := by4[v4]; dup {
			return fmt.Sprintf("%s and %s listed with the same address %s", o, m.Label, v4)
		}
		by4[v4] = m.Label
		if w, ok := want[m.Label]; !ok || w.v4 != v4 || w.v6 != v6 {
			wrong = append(wrong, fmt.Sprintf("%s %s %s", m.Label, v4, v6))
		}
	}
	listed := map[string]bool{}
	for _, m := range ms {
		listed[m.Label] = true
	}
	for l := range want {
		if !listed[l] {
			missing = append(missing, l)
		}
	}
	if len(missing)+len(wrong) == 0 {
		return ""
	}
	slices.Sort(missing)
	return fmt.Sprintf("%d listed; %d acknowledged members missing %v; unexpected or readdressed %v", len(ms), len(missing), missing, wrong)
}
