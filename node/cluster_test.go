package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/config"
	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/members/storetest"
)

// clusterNode is a test node whose registry is a view of the shared store
// st, following the others' changes into its own data plane.
func clusterNode(t *testing.T, st *storetest.MemStore, priv keys.Key) (*Node, *cutRecorder) {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte("[tunnel]\nipv4 = \"10.99.0.0/16\"\nipv6 = \"fd00:99::/64\"\n[wan]\ninterface = \"eth0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = t.TempDir()
	n := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	n.priv = priv
	reg, err := members.OpenStore(st.Open(), members.Options{
		Prefix4: cfg.Tunnel.Prefix4, Prefix6: cfg.Tunnel.Prefix6, Quarantine: time.Hour,
		KeyDir: filepath.Join(cfg.StateDir, "member-keys"),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.reg = reg
	n.plane = testPlane(t, cfg, priv, time.Now)
	n.nat = &fakeNAT{}
	cuts := &cutRecorder{}
	n.flushCT = cuts.flush
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.routineFollow(ctx) }()
	t.Cleanup(func() { cancel(); <-done; reg.Close() })
	return n, cuts
}

// cutRecorder stands in for the conntrack flush and remembers the
// prefixes it was asked to cut.
type cutRecorder struct {
	mu sync.Mutex
	ps []netip.Prefix
}

func (r *cutRecorder) flush(ps ...netip.Prefix) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ps = append(r.ps, ps...)
	return 0, nil
}

func (r *cutRecorder) has(p netip.Prefix) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.ps, p)
}

// waitPeer waits (≤ 1 s, the bound) until the node's device holds
// key (present true) or not.
func waitPeer(t *testing.T, n *Node, key keys.Key, present bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		_, ok := devicePeers(t, n)[key]
		if ok == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 1 s the device %s %s", map[bool]string{true: "still lacks", false: "still holds"}[present], key)
		}
		time.Sleep(5 * time.Millisecond) // polling another goroutine's device, not waiting for time to pass
	}
}

// A member added through one node is in every node's device within 1 s;
// disabled on another, it leaves them all with its flows cut; removed, it
// is gone everywhere. The nodes share one WireGuard key.
func TestClusterFollow(t *testing.T) {
	st := storetest.NewMemStore()
	priv, err := keys.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, cutA := clusterNode(t, st, priv)
	b, cutB := clusterNode(t, st, priv)
	c, cutC := clusterNode(t, st, priv)
	ctx := context.Background()
	added, err := backend{a}.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "alice"}, {Label: "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := keys.Parse(added[0].PublicKey)
	bob, _ := keys.Parse(added[1].PublicKey)
	for _, n := range []*Node{a, b, c} {
		waitPeer(t, n, alice, true)
		waitPeer(t, n, bob, true)
	}
	disabled := true
	if _, err := (backend{c}).UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b, c} {
		waitPeer(t, n, alice, false)
	}
	if _, err := (backend{b}).RemoveMembers(ctx, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b, c} {
		waitPeer(t, n, bob, false)
	}
	// Revocation is cluster-wide: every node cut the removed member's flows.
	bobAddr := netip.PrefixFrom(added[1].IPv4, 32)
	for name, r := range map[string]*cutRecorder{"a": cutA, "b": cutB, "c": cutC} {
		if !r.has(bobAddr) {
			t.Errorf("node %s did not cut bob's flows (cut %v)", name, r.ps)
		}
	}
	// The same label from two nodes: one wins, the other is a duplicate.
	if _, err := (backend{b}).AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "alice"}}}); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("adding alice again on another node: %v, want a duplicate", err)
	}
}

// With the store unreachable members keep working and changes are refused
// with the API's "unavailable"; they are accepted again when it is back.
func TestClusterStoreDown(t *testing.T) {
	st := storetest.NewMemStore()
	priv, _ := keys.Generate(nil)
	a, _ := clusterNode(t, st, priv)
	ctx := context.Background()
	if _, err := (backend{a}).AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "alice"}}}); err != nil {
		t.Fatal(err)
	}
	st.SetDown(true)
	_, err := (backend{a}).AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "bob"}}})
	if !errors.Is(err, members.ErrStoreUnavailable) {
		t.Fatalf("add while the store is down: %v", err)
	}
	if ms, _, err := (backend{a}).Members(ctx, control.ListQuery{}); err != nil || len(ms) != 1 {
		t.Fatalf("members while the store is down: %d, %v", len(ms), err)
	}
	st.SetDown(false)
	if _, err := (backend{a}).AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "bob"}}}); err != nil {
		t.Fatalf("add after the store is back: %v", err)
	}
}

func TestNodeKey(t *testing.T) {
	dir := t.TempDir()
	own := func(path string) (keys.Key, bool, error) { return keys.Key{1}, true, nil }
	cfg := mustConfig(t, "")
	if k, created, err := nodeKey(cfg, own); err != nil || k != (keys.Key{1}) || !created {
		t.Fatalf("own key: %v %v %v", k, created, err)
	}
	shared, _ := keys.Generate(nil)
	path := filepath.Join(dir, "cluster.key")
	os.WriteFile(path, []byte(shared.String()+"\n"), 0o600)
	cfg.Cluster = config.Cluster{Endpoints: []string{"127.0.0.1:2379"}, WireGuardKey: path}
	if k, created, err := nodeKey(cfg, own); err != nil || k != shared || created {
		t.Fatalf("cluster key: %v %v %v", k, created, err)
	}
	cfg.Cluster.WireGuardKey = filepath.Join(dir, "missing.key")
	if _, _, err := nodeKey(cfg, own); err == nil || !strings.Contains(err.Error(), "provision the cluster's key file") {
		t.Fatalf("missing cluster key: %v", err)
	}
}
