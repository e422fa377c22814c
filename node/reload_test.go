package node

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"exitd/config"
	"exitd/control"
	"exitd/keys"
	"exitd/nat"
)

// fakeNAT is an nftables table in memory; Apply fails while failApply is set.
type fakeNAT struct {
	mu        sync.Mutex
	applied   []nat.Config
	failApply bool
}

func (f *fakeNAT) Apply(c nat.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failApply {
		return errors.New("injected: netlink refused the ruleset")
	}
	f.applied = append(f.applied, c)
	return nil
}

func (f *fakeNAT) Present() (bool, error)                         { return true, nil }
func (f *fakeNAT) Counters() (map[string]nat.Counter, error)      { return map[string]nat.Counter{}, nil }
func (f *fakeNAT) Watch(ctx context.Context, _ func(error)) error { <-ctx.Done(); return nil }

func TestApplyStepsRollsBack(t *testing.T) {
	var log []string
	mk := func(name string, fail bool) step {
		return step{name,
			func() error {
				log = append(log, "apply "+name)
				if fail {
					return errors.New("boom")
				}
				return nil
			},
			func() error { log = append(log, "undo "+name); return nil }}
	}
	err := applySteps([]step{mk("a", false), mk("b", false), mk("c", true), mk("d", false)})
	if err == nil || !strings.Contains(err.Error(), "reload: c: boom") {
		t.Fatalf("err = %v", err)
	}
	want := "apply a,apply b,apply c,undo b,undo a"
	if got := strings.Join(log, ","); got != want {
		t.Fatalf("steps ran %s, want %s", got, want)
	}
	log = nil
	if err := applySteps([]step{mk("a", false), {name: "noundo", apply: func() error { return nil }}}); err != nil || len(log) != 1 {
		t.Fatalf("%v %v", err, log)
	}
}

// reloadNode is a testNode with a fake nftables table and a config file
// the test rewrites.
func reloadNode(t *testing.T) (*Node, *fakeNAT, *string) {
	t.Helper()
	n := testNode(t, 0)
	f := &fakeNAT{}
	n.nat = f
	base := n.config()
	extra := new(string)
	n.loadCfg = func() (*config.Config, error) {
		c, err := config.Parse("t.toml", []byte(*extra+"\n[tunnel]\nipv4 = \"10.99.0.0/16\"\nipv6 = \"fd00:99::/64\"\n[wan]\ninterface = \"eth0\"\n"))
		if err != nil {
			return nil, err
		}
		c.StateDir = base.StateDir
		return c, nil
	}
	return n, f, extra
}

// TestReloadAllOrNothing: the nftables step fails after the scheduler was
// changed; the scheduler is rolled back and the old config keeps running.
func TestReloadAllOrNothing(t *testing.T) {
	n, f, extra := reloadNode(t)
	old := n.config()
	*extra = "[filter]\nmember_isolation = false\n[scheduler]\ndiscipline = \"fifo\"\n"
	f.failApply = true
	err := n.Reload()
	if err == nil || !strings.Contains(err.Error(), "nftables") {
		t.Fatalf("reload error %v", err)
	}
	if n.config() != old {
		t.Fatal("a failed reload swapped the config")
	}
	if d := n.plane.SchedStats().Discipline; d != "srr" {
		t.Fatalf("scheduler left at %q after a failed reload", d)
	}
	f.failApply = false
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if n.config().Filter.Isolation() || n.plane.SchedStats().Discipline != "fifo" || len(f.applied) != 1 {
		t.Fatalf("reload not applied: isolation %v, discipline %q, nft applies %d",
			n.config().Filter.Isolation(), n.plane.SchedStats().Discipline, len(f.applied))
	}
}

func TestReloadRejectsBeforeApplying(t *testing.T) {
	n, f, extra := reloadNode(t)
	for name, e := range map[string]string{
		"bad toml":         "[scheduler\n",
		"restart-only key": "[listen]\nport = 4443\n",
	} {
		*extra = e
		if err := n.Reload(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if len(f.applied) != 0 {
		t.Fatalf("rejected reloads applied %d rulesets", len(f.applied))
	}
}

// TestReloadWhileServing: reloads in a loop while the API is polled; run
// under -race this shows the running config is read without a data race.
func TestReloadWhileServing(t *testing.T) {
	n, _, extra := reloadNode(t)
	n.priv, _ = keys.Generate(nil)
	b := backend{n}
	ctx := context.Background()
	if _, err := b.AddMembers(ctx, control.AddMembersRequest{Members: []control.AddMemberRequest{{Label: "a"}, {Label: "b"}}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := b.Status(ctx); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := b.Members(ctx, control.ListQuery{}); err != nil {
					t.Error(err)
					return
				}
				n.nodeInfo()
			}
		}()
	}
	for i := range 50 {
		if i%2 == 0 {
			*extra = "public_endpoint = \"198.51.100.7:443\"\n"
		} else {
			*extra = ""
		}
		if err := n.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
}

func (f *fakeNAT) Restorations() uint64 { return 0 }

func (f *fakeNAT) ConnDrops() (map[netip.Addr]nat.MemberDrops, error) { return nil, nil }

func (f *fakeNAT) ApplyForwards(string, []nat.Forward) error { return nil }

func (f *fakeNAT) RemoveForwards() error { return nil }
func (f *fakeNAT) Mode() string          { return "inet" }

// TestReloadUpdatesDenySet: the resolver and the proxy read the deny set
// in force, so a reload that blocks a prefix blocks it for them too, and
// nothing is allowed before the ruleset is.
func TestReloadUpdatesDenySet(t *testing.T) {
	n, _, extra := reloadNode(t)
	a := netip.MustParseAddr("198.51.100.7")
	if !n.denied(a) {
		t.Fatal("an address passed before any ruleset was in force")
	}
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if n.denied(a) {
		t.Fatal("a public address is denied")
	}
	*extra = "[filter]\nblock = [\"198.51.100.0/24\"]\n"
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if !n.denied(a) || n.denied(netip.MustParseAddr("203.0.113.9")) {
		t.Fatal("deny set not updated by the reload")
	}
}
