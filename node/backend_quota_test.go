package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/nat"
)

// recNAT is fakeNAT (which records rulesets and fails Apply on demand)
// with the rest of the table recorded or injected: the port-forward table,
// the fair-state drop sets and the status figures.
type recNAT struct {
	*fakeNAT

	mu         sync.Mutex
	forwards   [][]nat.Forward // every ApplyForwards, in order
	wans       []string        // the WAN of each ApplyForwards
	failFwd    error           // ApplyForwards fails with it while set
	removedFwd int             // RemoveForwards calls
	drops      map[netip.Addr]nat.MemberDrops
	dropsErr   error
	dropReads  int
	absent     bool // Present reports the table missing
	counters   map[string]nat.Counter
	restored   uint64
}

var _ natTable = (*recNAT)(nil)

func newRecNAT() *recNAT { return &recNAT{fakeNAT: &fakeNAT{}} }

func (f *recNAT) ApplyForwards(wan string, fs []nat.Forward) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failFwd != nil {
		return f.failFwd
	}
	f.forwards = append(f.forwards, slices.Clone(fs))
	f.wans = append(f.wans, wan)
	return nil
}

func (f *recNAT) RemoveForwards() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removedFwd++
	return nil
}

func (f *recNAT) ConnDrops() (map[netip.Addr]nat.MemberDrops, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropReads++
	if f.dropsErr != nil {
		return nil, f.dropsErr
	}
	return f.drops, nil
}

func (f *recNAT) Present() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.absent, nil
}

func (f *recNAT) Counters() (map[string]nat.Counter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counters, nil
}

func (f *recNAT) Restorations() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restored
}

// set runs fn with f's lock held (for the injected fields).
func (f *recNAT) set(fn func(f *recNAT)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// failRuleset makes Apply fail (true) or succeed again.
func (f *recNAT) failRuleset(fail bool) {
	f.fakeNAT.mu.Lock()
	f.fakeNAT.failApply = fail
	f.fakeNAT.mu.Unlock()
}

// applies is the number of rulesets applied so far.
func (f *recNAT) applies() int {
	f.fakeNAT.mu.Lock()
	defer f.fakeNAT.mu.Unlock()
	return len(f.fakeNAT.applied)
}

// last is the ruleset applied last.
func (f *recNAT) last(t *testing.T) nat.Config {
	t.Helper()
	f.fakeNAT.mu.Lock()
	defer f.fakeNAT.mu.Unlock()
	if len(f.fakeNAT.applied) == 0 {
		t.Fatal("no ruleset was applied")
	}
	return f.fakeNAT.applied[len(f.fakeNAT.applied)-1]
}

// forwardCalls is the number of ApplyForwards calls and the last set.
func (f *recNAT) forwardCalls() (int, []nat.Forward) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.forwards) == 0 {
		return 0, nil
	}
	return len(f.forwards), f.forwards[len(f.forwards)-1]
}

// forwardHistory is every ApplyForwards set, their WANs, and the number
// of RemoveForwards calls.
func (f *recNAT) forwardHistory() ([][]nat.Forward, []string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.forwards), slices.Clone(f.wans), f.removedFwd
}

// quotaNode is testNodeClock with a recorded nftables table whose ruleset
// is in force as at start, an nf_conntrack_max file of 262144, a WAN that
// reports 1 Gbit/s, an empty conntrack table and recorded flushes.
func quotaNode(t *testing.T) (*Node, *recNAT, *cutRecorder, *manualClock) {
	t.Helper()
	n, clock := testNodeClock(t, 0)
	f := newRecNAT()
	n.nat = f
	n.ctMaxPath = filepath.Join(t.TempDir(), "nf_conntrack_max")
	if err := os.WriteFile(n.ctMaxPath, []byte("262144\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.linkSpeed = func(string) (uint64, bool) { return 1e9, true }
	n.countCT = func([]netip.Prefix) (map[netip.Addr]int, error) { return map[netip.Addr]int{}, nil }
	cuts := &cutRecorder{}
	n.flushCT = cuts.flush
	n.setNATApplied(n.ruleset(n.config()))
	return n, f, cuts, clock
}

// addLabels adds enabled members by label through the backend.
func addLabels(t *testing.T, n *Node, labels ...string) []control.Member {
	t.Helper()
	reqs := make([]control.AddMemberRequest, len(labels))
	for i, l := range labels {
		reqs[i] = control.AddMemberRequest{Label: l}
	}
	ms, err := backend{n}.AddMembers(context.Background(), control.AddMembersRequest{Members: reqs})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// override is the own quota c gives address a (0, false: none).
func override(c nat.Config, a netip.Addr) (int, bool) {
	for _, o := range c.Limits.Overrides {
		if slices.Contains(o.Addrs, a) {
			return o.Max, true
		}
	}
	return 0, false
}

// take is what the recorder was asked to flush, as text, and forgets it.
func (r *cutRecorder) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, p := range r.ps {
		s = append(s, p.String())
	}
	r.ps = nil
	return strings.Join(s, " ")
}

// prefixText is a member's /32 and /128 as cutRecorder.take prints them.
func prefixText(m control.Member) string {
	return netip.PrefixFrom(m.IPv4, 32).String() + " " + netip.PrefixFrom(m.IPv6, 128).String()
}

// TestUpdateMemberMaxConnsAppliesRuleset: a member's own quota reaches the
// ruleset at once (one Apply per change), and only a change of max_conns
// costs an Apply.
func TestUpdateMemberMaxConnsAppliesRuleset(t *testing.T) {
	n, f, _, _ := quotaNode(t)
	b := backend{n}
	ctx := context.Background()
	ms := addLabels(t, n, "alice", "bob")
	if f.applies() != 0 {
		t.Fatalf("adding members without own quotas applied %d rulesets", f.applies())
	}
	q, q2, zero, w := 5000, 100_000, 0, 7

	m, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &q})
	if err != nil || m.MaxConns != 5000 {
		t.Fatalf("%+v %v", m, err)
	}
	if f.applies() != 1 {
		t.Fatalf("%d rulesets applied for one quota change", f.applies())
	}
	last := f.last(t)
	for _, a := range []netip.Addr{ms[0].IPv4, ms[0].IPv6} {
		if got, ok := override(last, a); !ok || got != 5000 {
			t.Fatalf("alice's %s: own quota %d %v in the ruleset, want 5000", a, got, ok)
		}
	}
	if _, ok := override(last, ms[1].IPv4); ok {
		t.Fatal("bob got an own quota he never had")
	}
	if !reflect.DeepEqual(n.natApplied, last) {
		t.Fatal("the ruleset in force is not the one applied")
	}
	if reg, _ := n.reg.Get("alice"); reg.MaxConns != 5000 {
		t.Fatalf("registry: %+v", reg)
	}

	// The same quota again, and other policy, leave the ruleset alone.
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &q}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	if f.applies() != 1 {
		t.Fatalf("unchanged quota or a weight change applied the ruleset (%d applies)", f.applies())
	}

	if _, err := b.UpdateMember(ctx, "bob", control.UpdateMemberRequest{MaxConns: &q2}); err != nil {
		t.Fatal(err)
	}
	if got, _ := override(f.last(t), ms[1].IPv6); got != 100_000 || len(f.last(t).Limits.Overrides) != 2 {
		t.Fatalf("after bob's quota: %+v", f.last(t).Limits.Overrides)
	}
	// Back to the node's quota: the override goes.
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, ok := override(f.last(t), ms[0].IPv4); ok || len(f.last(t).Limits.Overrides) != 1 || f.applies() != 3 {
		t.Fatalf("after alice back to the default (%d applies): %+v", f.applies(), f.last(t).Limits.Overrides)
	}
	// Out of range: refused by the registry, nothing applied.
	for _, bad := range []int{10, -1, 1_000_001} {
		if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &bad}); !errors.Is(err, members.ErrInvalidPolicy) {
			t.Errorf("max_conns %d: %v", bad, err)
		}
	}
	if f.applies() != 3 {
		t.Fatalf("refused quotas applied rulesets (%d)", f.applies())
	}
}

// TestUpdateMemberQuotaRefusedUndoesAll: when the ruleset refuses the new
// quota, the registry and the device are put back and the API answers
// conflict; nothing of the change stays, in either direction of enable.
func TestUpdateMemberQuotaRefusedUndoesAll(t *testing.T) {
	n, f, cuts, _ := quotaNode(t)
	b := backend{n}
	ctx := context.Background()
	ms := addLabels(t, n, "alice", "bob")
	ka, _ := keys.Parse(ms[0].PublicKey)
	before := n.natApplied
	f.failRuleset(true)

	q, w, off, on := 5000, 7, true, false
	_, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &q, Weight: &w, Disabled: &off})
	if !errors.Is(err, control.ErrConflict) || !strings.Contains(err.Error(), "the ruleset refused the quota") ||
		!strings.Contains(err.Error(), "injected") {
		t.Fatalf("err = %v", err)
	}
	reg, _ := n.reg.Get("alice")
	if reg.MaxConns != 0 || reg.Weight != 1 || reg.Disabled {
		t.Fatalf("registry not undone: %+v", reg)
	}
	if _, ok := devicePeers(t, n)[ka]; !ok {
		t.Fatal("the disable was not undone in the device")
	}
	if g := cuts.take(); g != "" {
		t.Fatalf("a refused change cut flows: %s", g)
	}
	if !reflect.DeepEqual(n.natApplied, before) {
		t.Fatal("the ruleset in force changed although Apply failed")
	}

	// Enabling with a refused quota: the member stays disabled and out.
	f.failRuleset(false)
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	cuts.take()
	f.failRuleset(true)
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &q, Disabled: &on}); !errors.Is(err, control.ErrConflict) {
		t.Fatalf("enable with a refused quota: %v", err)
	}
	if reg, _ := n.reg.Get("alice"); !reg.Disabled || reg.MaxConns != 0 {
		t.Fatalf("registry not undone: %+v", reg)
	}
	if _, ok := devicePeers(t, n)[ka]; ok {
		t.Fatal("the enable was not undone in the device")
	}

	// Once the ruleset takes it, the same request goes through.
	f.failRuleset(false)
	m, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &q, Disabled: &on})
	if err != nil || m.MaxConns != 5000 || m.Disabled {
		t.Fatalf("%+v %v", m, err)
	}
	if _, ok := devicePeers(t, n)[ka]; !ok {
		t.Fatal("enabled member not in the device")
	}
	if got, _ := override(n.natApplied, ka4(t, n, "alice")); got != 5000 {
		t.Fatalf("quota in force %d", got)
	}
}

// ka4 is the member's IPv4 address.
func ka4(t *testing.T, n *Node, ref string) netip.Addr {
	t.Helper()
	m, err := n.reg.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	return m.IPv4
}

// TestUpdateMemberConflictOverSocket: the refusal reaches a client of the
// control socket as the code "conflict" (HTTP 409), with the reason.
func TestUpdateMemberConflictOverSocket(t *testing.T) {
	n, f, _, _ := quotaNode(t)
	addLabels(t, n, "alice")
	dir, err := os.MkdirTemp("", "xn") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	s, err := control.Listen(control.ServerOptions{Path: sock, Backend: backend{n}, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	c := control.NewClient(sock)
	f.failRuleset(true)
	q := 5000
	_, err = c.UpdateMember(context.Background(), "alice", control.UpdateMemberRequest{MaxConns: &q})
	var ae *control.APIError
	if !errors.As(err, &ae) || ae.Code != control.CodeConflict || !strings.Contains(ae.Message, "ruleset refused the quota") {
		t.Fatalf("err = %v", err)
	}
	f.failRuleset(false)
	m, err := c.UpdateMember(context.Background(), "alice", control.UpdateMemberRequest{MaxConns: &q})
	if err != nil || m.MaxConns != 5000 {
		t.Fatalf("%+v %v", m, err)
	}
	got, err := c.Member(context.Background(), "alice")
	if err != nil || got.MaxConns != 5000 {
		t.Fatalf("member show: %+v %v", got, err)
	}
}

// TestDeviceRefusalUndoesRegistry: a device that refuses (here: closed)
// fails enable and removal with conflict, and the registry keeps its
// state; no ruleset is applied and no flow is cut.
func TestDeviceRefusalUndoesRegistry(t *testing.T) {
	n, f, cuts, _ := quotaNode(t)
	b := backend{n}
	ctx := context.Background()
	addLabels(t, n, "alice", "bob")
	off, on, q := true, false, 5000
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	cuts.take()
	if err := n.plane.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{Disabled: &on, MaxConns: &q})
	if !errors.Is(err, control.ErrConflict) || !strings.Contains(err.Error(), "device refused the change") {
		t.Fatalf("enable on a closed device: %v", err)
	}
	if reg, _ := n.reg.Get("alice"); !reg.Disabled || reg.MaxConns != 0 {
		t.Fatalf("registry not undone: %+v", reg)
	}
	if f.applies() != 0 {
		t.Fatal("a refused change applied the ruleset")
	}
	_, err = b.RemoveMembers(ctx, []string{"bob"})
	if !errors.Is(err, control.ErrConflict) || !strings.Contains(err.Error(), "no member was removed") {
		t.Fatalf("remove on a closed device: %v", err)
	}
	if _, err := n.reg.Get("bob"); err != nil || n.reg.Len() != 2 {
		t.Fatalf("bob left the registry: %v (%d members)", err, n.reg.Len())
	}
	if g := cuts.take(); g != "" {
		t.Fatalf("refused changes cut %s", g)
	}
	// A disabled member is not in the device: removing it needs no device.
	if _, err := b.RemoveMembers(ctx, []string{"alice"}); err != nil {
		t.Fatalf("removing a disabled member: %v", err)
	}
	if n.reg.Len() != 1 {
		t.Fatal("alice not removed")
	}
}

// TestRemoveMembersOwnQuotaReapplies: removing a member with its own
// quota re-applies the ruleset without it; others cost no Apply, and a
// refused Apply does not undo the removal (the next reload retries).
func TestRemoveMembersOwnQuotaReapplies(t *testing.T) {
	n, f, cuts, _ := quotaNode(t)
	b := backend{n}
	ctx := context.Background()
	ms := addLabels(t, n, "alice", "bob", "carol")
	q, q2 := 5000, 6000
	if _, err := b.UpdateMember(ctx, "alice", control.UpdateMemberRequest{MaxConns: &q}); err != nil {
		t.Fatal(err)
	}
	if f.applies() != 1 {
		t.Fatal("quota not applied")
	}
	if _, err := b.RemoveMembers(ctx, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if f.applies() != 1 {
		t.Fatal("removing a member without an own quota applied the ruleset")
	}
	if g := cuts.take(); g != prefixText(ms[1]) {
		t.Fatalf("bob's removal cut %q", g)
	}
	gone, err := b.RemoveMembers(ctx, []string{ms[0].PublicKey})
	if err != nil || len(gone) != 1 || gone[0].MaxConns != 5000 {
		t.Fatalf("%+v %v", gone, err)
	}
	if f.applies() != 2 || len(f.last(t).Limits.Overrides) != 0 {
		t.Fatalf("after removing alice (%d applies): %+v", f.applies(), f.last(t).Limits.Overrides)
	}
	if len(n.natApplied.Limits.Overrides) != 0 {
		t.Fatal("alice's quota still in force")
	}

	if _, err := b.UpdateMember(ctx, "carol", control.UpdateMemberRequest{MaxConns: &q2}); err != nil {
		t.Fatal(err)
	}
	f.failRuleset(true)
	if _, err := b.RemoveMembers(ctx, []string{"carol"}); err != nil {
		t.Fatalf("a refused re-apply failed the removal: %v", err)
	}
	if n.reg.Len() != 0 || len(devicePeers(t, n)) != 0 {
		t.Fatalf("carol not removed: %d in the registry, %d in the device", n.reg.Len(), len(devicePeers(t, n)))
	}
	if got, _ := override(n.natApplied, ms[2].IPv4); got != 6000 {
		t.Fatalf("the ruleset in force changed although Apply failed (carol's quota %d)", got)
	}
}

// TestRemoveMembersRepeatedRef: the same member named twice (label and
// key) is refused before the device is touched; the member stays in
// registry and device with its session.
func TestRemoveMembersRepeatedRef(t *testing.T) {
	n, _, cuts, _ := quotaNode(t)
	ms := addLabels(t, n, "alice")
	ka, _ := keys.Parse(ms[0].PublicKey)
	_, err := backend{n}.RemoveMembers(context.Background(), []string{"alice", ms[0].PublicKey})
	if !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := devicePeers(t, n)[ka]; !ok || n.reg.Len() != 1 {
		t.Fatal("a refused removal left alice out of registry or device")
	}
	if g := cuts.take(); g != "" {
		t.Fatalf("a refused removal cut %s", g)
	}
	if _, err := (backend{n}).RemoveMembers(context.Background(), []string{"nobody"}); !errors.Is(err, members.ErrNotFound) {
		t.Fatalf("unknown ref: %v", err)
	}
}

// TestRulesetConnLimits: ruleset() derives the auto quota from the
// nf_conntrack_max file (the default size when it is missing or garbage),
// takes a fixed quota as configured, and carries every own quota.
func TestRulesetConnLimits(t *testing.T) {
	n, _, _, _ := quotaNode(t)
	var reqs []members.AddRequest
	for i := range 10 {
		reqs = append(reqs, members.AddRequest{Label: fmt.Sprintf("m%d", i)})
	}
	reqs[3].MaxConns = 9000
	reqs[4].MaxConns, reqs[4].Disabled = 70_000, true
	ms, err := n.reg.AddBatch(reqs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.config()
	for _, tc := range []struct {
		name, file string
		want       int
	}{
		{"table size", "400000\n", nat.AutoQuota(400000, 10)},
		{"garbage", "many\n", nat.AutoQuota(defaultCTMax, 10)},
		{"missing", "", nat.AutoQuota(defaultCTMax, 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.file == "" {
				os.Remove(n.ctMaxPath)
			} else if err := os.WriteFile(n.ctMaxPath, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			nc := n.ruleset(cfg)
			if nc.Limits.Quota != tc.want || nc.Limits.Rate != 500 || nc.Limits.Burst != 2000 {
				t.Fatalf("limits %+v, want quota %d", nc.Limits, tc.want)
			}
			if err := nc.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if nat.AutoQuota(400000, 10) == nat.AutoQuota(defaultCTMax, 10) {
		t.Fatal("the cases cannot tell the file from the default")
	}
	fixed := mustConfig(t, "[conntrack]\nmax_conns_per_member = 9000\nnew_conn_rate = 50\n")
	if l := n.ruleset(fixed).Limits; l.Quota != 9000 || l.Rate != 50 || l.Burst != 200 {
		t.Fatalf("fixed: %+v", l)
	}
	off := n.ruleset(mustConfig(t, "[conntrack]\nmax_conns_per_member = -1\n")).Limits
	if off.Quota != 0 || len(off.Overrides) != 2 {
		t.Fatalf("quota off: %+v (own quotas must stay)", off)
	}
	nc := n.ruleset(cfg)
	if got, _ := override(nc, ms[3].IPv6); got != 9000 {
		t.Fatalf("m3's own quota %d", got)
	}
	if got, _ := override(nc, ms[4].IPv4); got != 70_000 {
		t.Fatalf("a disabled member's own quota %d, want it kept for when it is enabled", got)
	}
}

// TestApplyRulesetPublishesDenySet: applyRuleset puts the new ruleset in
// force and its deny set with it; a refused one changes neither.
func TestApplyRulesetPublishesDenySet(t *testing.T) {
	n, f, _, _ := quotaNode(t)
	n.deny.Store(nil)
	public := netip.MustParseAddr("198.51.100.7")
	f.failRuleset(true)
	if err := n.applyRuleset(); err == nil {
		t.Fatal("refused ruleset reported applied")
	}
	if !n.denied(public) {
		t.Fatal("a refused ruleset published a deny set")
	}
	f.failRuleset(false)
	if err := n.applyRuleset(); err != nil {
		t.Fatal(err)
	}
	if n.denied(public) || !n.denied(netip.MustParseAddr("10.99.0.9")) || !n.denied(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("deny set in force is not the ruleset's")
	}
	if !reflect.DeepEqual(n.natApplied, f.last(t)) {
		t.Fatal("natApplied is not the ruleset applied")
	}
}

// TestConnStateTTLIsDocumented pins the cache period status, top and
// scrapes share (docs/nat.md says the table is walked at most every 5 s).
func TestConnStateTTLIsDocumented(t *testing.T) {
	if connStateTTL != 5*time.Second {
		t.Fatalf("connStateTTL = %v", connStateTTL)
	}
}

// TestAddMembersCutsReusedAddressFirst: a member added on a reused
// address has the earlier owner's flows cut before its peer is in the
// device, never after (when its own flows could exist).
func TestAddMembersCutsReusedAddressFirst(t *testing.T) {
	n, _, _, _ := quotaNode(t) // no quarantine
	ms := addLabels(t, n, "bob")
	if _, err := (backend{n}).RemoveMembers(context.Background(), []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	var cuts, afterDevice int
	n.flushCT = func(ps ...netip.Prefix) (int, error) {
		cuts++
		if len(devicePeers(t, n)) > 0 {
			afterDevice++
		}
		return 0, nil
	}
	added, err := backend{n}.AddMembers(context.Background(), control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "carol", IPv4: ms[0].IPv4.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	carol := added[0]
	if cuts != 1 || afterDevice != 0 || carol.IPv4 != ms[0].IPv4 || len(devicePeers(t, n)) != 1 {
		t.Fatalf("%d cuts, %d after carol was in the device", cuts, afterDevice)
	}
}
