package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/config"
	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/members/etcdstore"
	"exitd/members/storetest"
	"exitd/nat"
	"exitd/portforward"
)

// added is the events Follow reports for members another node added.
func added(ms ...members.Member) []members.Event {
	evs := make([]members.Event, len(ms))
	for i, m := range ms {
		evs[i] = members.Event{After: m}
	}
	return evs
}

// removed is the events for members another node removed.
func removed(ms ...members.Member) []members.Event {
	evs := make([]members.Event, len(ms))
	for i, m := range ms {
		evs[i] = members.Event{Before: m}
	}
	return evs
}

// changed commits c to ref in the node's registry as another node would
// have, and returns the event Follow reports for it.
func changed(t *testing.T, n *Node, ref string, c members.Change) members.Event {
	t.Helper()
	before, after, err := n.reg.Update(ref, c)
	if err != nil {
		t.Fatal(err)
	}
	return members.Event{Before: before, After: after}
}

// inDevice reports whether m's peer is in the node's device.
func inDevice(t *testing.T, n *Node, m members.Member) bool {
	t.Helper()
	_, ok := devicePeers(t, n)[m.PublicKey]
	return ok
}

// memberText is a member's /32 and /128 as cutRecorder.take prints them.
func memberText(m members.Member) string {
	return netip.PrefixFrom(m.IPv4, 32).String() + " " + netip.PrefixFrom(m.IPv6, 128).String()
}

// TestApplyRemote: other nodes' adds go into the device (disabled ones
// not), removals leave it with their flows cut and forwards dropped,
// updates move weight and the enabled state, and any change of an own
// quota — added, changed or removed with its member — re-applies the
// ruleset, nothing else does.
func TestApplyRemote(t *testing.T) {
	n, f, cuts, _ := quotaNode(t)
	ms, err := n.reg.AddBatch([]members.AddRequest{{Label: "alice"}, {Label: "bob", MaxConns: 8000}, {Label: "carol", Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol := ms[0], ms[1], ms[2]
	n.applyRemote(added(ms...))
	if !inDevice(t, n, alice) || !inDevice(t, n, bob) || inDevice(t, n, carol) {
		t.Fatal("device after the adds")
	}
	if f.applies() != 1 {
		t.Fatalf("%d rulesets applied for one own quota added", f.applies())
	}
	if got, _ := override(f.last(t), bob.IPv6); got != 8000 {
		t.Fatalf("bob's quota %d in the ruleset", got)
	}
	if g := cuts.take(); g != "" {
		t.Fatalf("adds on fresh addresses cut %s", g)
	}
	tb := seedForwards(t, n,
		mapping(n, alice.PublicKey.String(), alice.IPv4, portforward.UDP, 5000, 61000),
		mapping(n, bob.PublicKey.String(), bob.IPv4, portforward.TCP, 22, 61001))

	off, on, w, q := true, false, 9, 7000
	n.applyRemote([]members.Event{changed(t, n, "alice", members.Change{Disabled: &off})})
	if inDevice(t, n, alice) || cuts.take() != memberText(alice) {
		t.Fatal("disabled elsewhere: still in the device, or flows not cut")
	}
	if got := tableMembers(tb); len(got) != 1 || got[0] != bob.PublicKey.String() {
		t.Fatalf("forwards after alice was disabled: %v", got)
	}
	n.applyRemote([]members.Event{
		changed(t, n, "alice", members.Change{Disabled: &on}),
		changed(t, n, "bob", members.Change{Weight: &w}),
	})
	if !inDevice(t, n, alice) || cuts.take() != "" || f.applies() != 1 || tb.Len() != 1 {
		t.Fatalf("enable and weight: in device %v, %d applies, %d mappings", inDevice(t, n, alice), f.applies(), tb.Len())
	}
	n.applyRemote([]members.Event{changed(t, n, "carol", members.Change{MaxConns: &q})})
	if f.applies() != 2 {
		t.Fatal("a disabled member's quota change did not re-apply")
	}
	if got, _ := override(f.last(t), carol.IPv4); got != 7000 {
		t.Fatalf("carol's quota %d", got)
	}

	gone, err := n.reg.RemoveBatch([]string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	n.applyRemote(removed(gone...))
	if inDevice(t, n, bob) || n.reg.Len() != 1 {
		t.Fatal("bob still in the device")
	}
	if g := cuts.take(); g != memberText(bob)+" "+memberText(carol) {
		t.Fatalf("removal cut %q", g)
	}
	if tb.Len() != 0 {
		t.Fatalf("bob's forwards stayed: %v", tb.List())
	}
	if f.applies() != 3 || len(f.last(t).Limits.Overrides) != 0 || len(n.natApplied.Limits.Overrides) != 0 {
		t.Fatalf("after removing the members with own quotas: %d applies, %+v", f.applies(), f.last(t).Limits.Overrides)
	}
}

// TestApplyRemoteReusedAddressCut: a member another node added on a
// reused address has the earlier owner's flows cut.
func TestApplyRemoteReusedAddressCut(t *testing.T) {
	n, _, cuts, _ := quotaNode(t) // no quarantine
	ms, err := n.reg.AddBatch([]members.AddRequest{{Label: "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.reg.RemoveBatch([]string{"bob"}); err != nil {
		t.Fatal(err)
	}
	carol, err := n.reg.AddBatch([]members.AddRequest{{Label: "carol", IPv4: ms[0].IPv4}})
	if err != nil || !carol[0].ReusedAddress {
		t.Fatalf("%+v %v", carol, err)
	}
	n.applyRemote(added(carol...))
	if g := cuts.take(); g != memberText(ms[0]) {
		t.Fatalf("reused address: cut %q, want %q", g, memberText(ms[0]))
	}
	if !inDevice(t, n, carol[0]) {
		t.Fatal("carol not in the device")
	}
}

// logRecorder keeps the messages logged at error level.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelError {
		r.mu.Lock()
		r.msgs = append(r.msgs, rec.Message)
		r.mu.Unlock()
	}
	return nil
}

func (r *logRecorder) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

// TestApplyRemoteFailuresLogged: another node's change is committed, so a
// device or ruleset that refuses it here is logged (restart or reload
// catches up) and the rest of the batch still happens: flows are cut,
// forwards dropped.
func TestApplyRemoteFailuresLogged(t *testing.T) {
	n, f, cuts, _ := quotaNode(t)
	logs := &logRecorder{}
	n.log = slog.New(logs)
	ms, err := n.reg.AddBatch([]members.AddRequest{{Label: "alice"}, {Label: "bob", MaxConns: 500}})
	if err != nil {
		t.Fatal(err)
	}
	n.applyRemote(added(ms[0]))
	tb := seedForwards(t, n, mapping(n, ms[0].PublicKey.String(), ms[0].IPv4, portforward.UDP, 5000, 61000))
	before := n.natApplied
	n.plane.Close()
	f.failRuleset(true)
	n.applyRemote(added(ms[1]))
	if !logs.has("cluster: add members to the device") || !logs.has("cluster: re-apply the ruleset") {
		t.Fatalf("failures not logged: %q", logs.msgs)
	}
	if _, ok := override(n.natApplied, ms[1].IPv4); ok || len(before.Limits.Overrides) != len(n.natApplied.Limits.Overrides) {
		t.Fatal("a refused ruleset is recorded as in force")
	}
	gone, err := n.reg.RemoveBatch([]string{"alice"})
	if err != nil {
		t.Fatal(err)
	}
	n.applyRemote(removed(gone...))
	if !logs.has("cluster: remove members from the device") {
		t.Fatalf("device refusal of a removal not logged: %q", logs.msgs)
	}
	if g := cuts.take(); g != memberText(ms[0]) || tb.Len() != 0 {
		t.Fatalf("a refused device kept the rest from happening: cut %q, %d mappings", g, tb.Len())
	}
	off := true
	n.applyRemote([]members.Event{changed(t, n, "bob", members.Change{Disabled: &off})})
	if !logs.has("cluster: apply a member update") {
		t.Fatalf("update failure not logged: %q", logs.msgs)
	}
}

// notifyNAT is fakeNAT telling a channel about each ruleset it applies.
type notifyNAT struct {
	*fakeNAT
	applied chan nat.Config
}

func (f notifyNAT) Apply(c nat.Config) error {
	if err := f.fakeNAT.Apply(c); err != nil {
		return err
	}
	f.applied <- c
	return nil
}

// nextRuleset waits (≤ 10 s) for the next ruleset applied.
func nextRuleset(t *testing.T, ch <-chan nat.Config, what string) nat.Config {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("no ruleset applied after %s", what)
	}
	panic("unreachable")
}

// TestClusterQuotaFollows: an own quota set on one node is in every
// node's ruleset; when the member is removed elsewhere, its quota leaves
// every ruleset and its flows are cut there too.
func TestClusterQuotaFollows(t *testing.T) {
	st := storetest.NewMemStore()
	priv, _ := keys.Generate(nil)
	a, _ := clusterNode(t, st, priv)
	b, cutB := clusterNode(t, st, priv)
	ch := make(chan nat.Config, 16)
	b.mu.Lock()
	b.nat = notifyNAT{&fakeNAT{}, ch}
	b.ctMaxPath = filepath.Join(t.TempDir(), "missing")
	b.mu.Unlock()
	ctx := context.Background()
	ms, err := backend{a}.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	q := 5000
	if _, err := (backend{a}).UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &q}); err != nil {
		t.Fatal(err)
	}
	c := nextRuleset(t, ch, "alice's quota was set on another node")
	if got, _ := override(c, ms[0].IPv4); got != 5000 {
		t.Fatalf("node b's ruleset gives alice %d", got)
	}
	if _, err := (backend{a}).RemoveMembers(ctx, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	c = nextRuleset(t, ch, "alice was removed on another node")
	if len(c.Limits.Overrides) != 0 {
		t.Fatalf("alice's quota outlived her: %+v", c.Limits.Overrides)
	}
	if !cutB.has(netip.PrefixFrom(ms[0].IPv4, 32)) {
		t.Fatal("node b did not cut alice's flows")
	}
	k, _ := keys.Parse(ms[0].PublicKey)
	if _, ok := devicePeers(t, b)[k]; ok {
		t.Fatal("alice still in node b's device")
	}
}

func TestNodeName(t *testing.T) {
	c := mustConfig(t, "")
	c.Cluster.Name = "exit-a.eu_1"
	if name, err := nodeName(c); err != nil || name != "exit-a.eu_1" {
		t.Fatalf("%q %v", name, err)
	}
	for _, bad := range []string{"exit a", "a@b", "a/b", strings.Repeat("x", 65)} {
		c.Cluster.Name = bad
		if _, err := nodeName(c); err == nil || !strings.Contains(err.Error(), "node name") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// Without a name, the host name's first label, if it does.
	c.Cluster.Name = ""
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	first, _, _ := strings.Cut(host, ".")
	name, err := nodeName(c)
	if etcdstore.CheckNodeName(first) == nil {
		if err != nil || name != first {
			t.Fatalf("host %q: %q %v, want %q", host, name, err, first)
		}
	} else if err == nil || !strings.Contains(err.Error(), "the host name does not do") {
		t.Fatalf("host %q: %q %v, want an error", host, name, err)
	}
}

// TestClusterRecord: the record a node publishes, with the JSON names
// exitctl cluster status reads.
func TestClusterRecord(t *testing.T) {
	n, f, _, clock := quotaNode(t)
	withConfig(t, n, "")
	n.version = "v1.2.3"
	n.cluster.name = "exit-a"
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	clock.set(at)
	addLabels(t, n, "alice", "bob")
	var raw map[string]any
	if err := json.Unmarshal(n.clusterRecord(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "endpoint", "version", "members_connected", "members_total", "rate_in", "rate_out", "free_rate", "kernel_ok", "table_ok", "updated"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("record lacks %q: %v", k, raw)
		}
	}
	var cn control.ClusterNode
	json.Unmarshal(n.clusterRecord(), &cn)
	if cn.Name != "exit-a" || cn.Endpoint != "198.51.100.1:443" || cn.Version != "v1.2.3" || cn.MembersTotal != 2 ||
		cn.MembersConnected != 0 || !cn.TableOK || !cn.KernelOK || cn.FreeRate != 950_000_000 || cn.RateOut != 0 {
		t.Fatalf("%+v", cn)
	}
	if !cn.Updated.Equal(at) || cn.Updated.Location() != time.UTC {
		t.Fatalf("updated %v, want %v in UTC", cn.Updated, at)
	}
	// Unpaced: no free rate to speak of; a missing table says so.
	withConfig(t, n, "[scheduler]\negress_rate = \"off\"\n")
	f.set(func(f *recNAT) { f.absent = true })
	cn = control.ClusterNode{}
	json.Unmarshal(n.clusterRecord(), &cn)
	if cn.FreeRate != 0 || cn.TableOK {
		t.Fatalf("unpaced, table missing: %+v", cn)
	}
}

// TestSingleNodeCluster: without a store there is no cluster to show,
// register or refresh.
func TestSingleNodeCluster(t *testing.T) {
	n, _, _, _ := quotaNode(t)
	_, err := backend{n}.Cluster(context.Background())
	if !errors.Is(err, control.ErrConflict) || !strings.Contains(err.Error(), "not in a cluster") {
		t.Fatalf("err = %v", err)
	}
	if stop, err := n.startCluster(); stop != nil || err != nil || n.cluster.name != "" {
		t.Fatalf("startCluster without a store: %v %v", stop != nil, err)
	}
	for name, store := range map[string]*etcdstore.Store{"no store": nil, "not registered": {}} {
		n.store = store
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { n.routineCluster(ctx); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: routineCluster runs", name)
		}
		cancel()
		<-done
	}
}

// TestOpenRegistry: a single node's registry is bbolt in state_dir; a
// cluster whose TLS files cannot be read fails before dialling etcd.
func TestOpenRegistry(t *testing.T) {
	c := mustConfig(t, "")
	c.StateDir = t.TempDir()
	var logged []string
	logf := func(msg string, _ ...any) { logged = append(logged, msg) }
	opts := members.Options{Prefix4: c.Tunnel.Prefix4, Prefix6: c.Tunnel.Prefix6}
	reg, store, err := openRegistry(c, opts, logf)
	if err != nil || store != nil {
		t.Fatalf("single node: %v %v", store, err)
	}
	reg.Close()
	if _, err := os.Stat(filepath.Join(c.StateDir, "members.db")); err != nil {
		t.Fatal(err)
	}
	c.Cluster = config.Cluster{Endpoints: []string{"10.0.0.5:2379"}, Prefix: "/exitd/t", CA: filepath.Join(t.TempDir(), "missing-ca.pem")}
	if _, _, err := openRegistry(c, opts, logf); err == nil || !strings.HasPrefix(err.Error(), "[cluster]: ") || !strings.Contains(err.Error(), "TLS CA") {
		t.Fatalf("missing CA: %v", err)
	}
	if len(logged) != 0 {
		t.Fatalf("logged %q", logged)
	}
}
