package nat

// Kernel tests: the real ruleset in throwaway network namespaces (root; a
// skip becomes a failure under EXITD_REQUIRE_ROOT=1). They never touch the
// host's root namespace.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/internal/testenv"

	"github.com/vishvananda/netns"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// nsManager returns a Manager for a fresh namespace.
func nsManager(t *testing.T) (*Manager, netns.NsHandle) {
	t.Helper()
	ns := testenv.NewNetNS(t)
	m, err := New(Options{NetNS: int(ns), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m, ns
}

func listRuleset(t *testing.T, ns netns.NsHandle) string {
	t.Helper()
	return string(nftIn(t, int(ns), "", "list", "ruleset"))
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update as root)", err)
	}
	if got != string(want) {
		t.Errorf("nft list ruleset differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestKernelGolden applies each test case in its own namespace and compares
// `nft list ruleset` with testdata/<case>.nft; a second Apply must leave the
// same ruleset.
func TestKernelGolden(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range testCases() {
		t.Run(tc.name, func(t *testing.T) {
			m, ns := nsManager(t)
			if err := m.Apply(tc.cfg); err != nil {
				t.Fatal(err)
			}
			first := listRuleset(t, ns)
			checkGolden(t, tc.name+".nft", first)
			if err := m.Apply(tc.cfg); err != nil {
				t.Fatal(err)
			}
			if again := listRuleset(t, ns); again != first {
				t.Errorf("second Apply changed the ruleset:\n%s\nvs\n%s", again, first)
			}
			if ok, err := m.Present(); err != nil || !ok {
				t.Errorf("Present = %v, %v; want true", ok, err)
			}
			// LayoutAuto probes: this kernel has inet NAT.
			want := "inet"
			if tc.cfg.Layout == LayoutSplit {
				want = "split (ip + ip6 nat tables)"
			}
			if got := m.Mode(); got != want {
				t.Errorf("Mode = %q, want %q", got, want)
			}
		})
	}
}

// TestKernelReconfigure moves between configurations and table names; only
// the latest table remains.
func TestKernelReconfigure(t *testing.T) {
	m, ns := nsManager(t)
	cases := testCases()
	for _, tc := range append(cases, cases[0]) {
		if err := m.Apply(tc.cfg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	if got := listRuleset(t, ns); got != readFile(t, "testdata/masquerade.nft") {
		t.Errorf("after reconfiguring back to masquerade:\n%s", got)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKernelRemove: Remove deletes our tables only (the split layout's ip
// and ip6 ones too), is idempotent, and works on a Manager that never
// applied (exitd cleanup after a crash) whichever layout was left behind.
func TestKernelRemove(t *testing.T) {
	for _, tc := range []testCase{testCases()[0], {"split", splitCase(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			m, ns := nsManager(t)
			nftIn(t, int(ns), "table inet other {\n chain c { type filter hook input priority 0; counter; }\n}\ntable ip legacy {\n chain c { type nat hook postrouting priority srcnat; masquerade; }\n}\ntable ip6 exitd {\n chain c { type filter hook input priority 0; counter; }\n}\n", "-f", "-")
			before := listRuleset(t, ns)

			if err := m.Apply(tc.cfg); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(listRuleset(t, ns), "table inet exitd") {
				t.Fatal("table missing after Apply")
			}
			for i := range 2 {
				if err := m.Remove(); err != nil {
					t.Fatalf("Remove #%d: %v", i+1, err)
				}
				if got := listRuleset(t, ns); got != before {
					t.Fatalf("after Remove #%d the ruleset is\n%s\nwant the other tables untouched:\n%s", i+1, got, before)
				}
			}
			if ok, err := m.Present(); err != nil || ok {
				t.Errorf("Present after Remove = %v, %v", ok, err)
			}

			// A fresh Manager (crash cleanup) removes leftover tables by name.
			if err := m.Apply(tc.cfg); err != nil {
				t.Fatal(err)
			}
			fresh, err := New(Options{NetNS: int(ns)})
			if err != nil {
				t.Fatal(err)
			}
			if err := fresh.Remove(); err != nil {
				t.Fatal(err)
			}
			if got := listRuleset(t, ns); got != before {
				t.Fatalf("cleanup left\n%s", got)
			}
		})
	}
}

// TestKernelSplitPresent: with the split layout Present needs all three
// tables.
func TestKernelSplitPresent(t *testing.T) {
	m, ns := nsManager(t)
	if err := m.Apply(splitCase(t)); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"ip6", "ip"} {
		if ok, err := m.Present(); err != nil || !ok {
			t.Fatalf("Present = %v, %v; want true", ok, err)
		}
		nftIn(t, int(ns), "", "delete", "table", table, "exitd_nat")
		if ok, err := m.Present(); err != nil || ok {
			t.Errorf("Present without table %s exitd_nat = %v, %v; want false", table, ok, err)
		}
		if err := m.Apply(splitCase(t)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKernelCountersPresent(t *testing.T) {
	m, _ := nsManager(t)
	if ok, err := m.Present(); err != nil || ok {
		t.Fatalf("Present before Apply = %v, %v", ok, err)
	}
	if err := m.Apply(testCases()[0].cfg); err != nil {
		t.Fatal(err)
	}
	got, err := m.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range counterNames() {
		if c, ok := got[name]; !ok || c != (Counter{}) {
			t.Errorf("counter %s = %+v, %v; want present and zero", name, c, ok)
		}
	}
	if len(got) != len(counterNames()) {
		t.Errorf("counters %v, want exactly %v", got, counterNames())
	}
}

// waitEvent waits for one Watch report.
func waitEvent(t *testing.T, events <-chan error, what string) {
	t.Helper()
	select {
	case err := <-events:
		if err != nil {
			t.Fatalf("%s: re-apply failed: %v", what, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: Watch did not re-apply within 20s", what)
	}
}

// TestKernelWatch: after `nft flush ruleset` or `nft delete table`, Watch
// puts the table back; Apply's own replace and Remove do not trigger it.
func TestKernelWatch(t *testing.T) {
	m, ns := nsManager(t)
	cfg := testCases()[0].cfg
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	golden := readFile(t, "testdata/masquerade.nft")

	// Deleted before Watch starts: caught by its first check.
	nftIn(t, int(ns), "", "flush", "ruleset")

	ctx, cancel := context.WithCancel(t.Context())
	events := make(chan error, 16)
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx, func(err error) { events <- err }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	}()
	waitEvent(t, events, "flush before Watch")
	if got := listRuleset(t, ns); got != golden {
		t.Fatalf("after re-apply:\n%s", got)
	}

	nftIn(t, int(ns), "", "flush", "ruleset")
	waitEvent(t, events, "nft flush ruleset")
	if got := listRuleset(t, ns); got != golden {
		t.Fatalf("after re-apply:\n%s", got)
	}

	// Our own re-apply is a delete and an add in one transaction: no event.
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	nftIn(t, int(ns), "", "delete", "table", "inet", "exitd")
	waitEvent(t, events, "nft delete table")

	// After Remove, Watch leaves the table gone.
	if err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	// A barrier: apply and delete again; exactly one more event must come,
	// so Remove's deletion produced none.
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	nftIn(t, int(ns), "", "delete", "table", "inet", "exitd")
	waitEvent(t, events, "delete after Remove and Apply")
	if err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch returned %v", err)
	}
	done <- nil // for the deferred wait
	if n := len(events); n != 0 {
		t.Errorf("%d unexpected re-applies (Apply's own replace or Remove triggered Watch)", n)
	}
	if ok, err := m.Present(); err != nil || ok {
		t.Errorf("Present after Remove with Watch running = %v, %v", ok, err)
	}
}

func TestKernelWatchCancel(t *testing.T) {
	m, _ := nsManager(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := m.Watch(ctx, nil); err != nil {
		t.Fatalf("Watch with a cancelled context: %v", err)
	}
}

func TestKernelApplyInvalid(t *testing.T) {
	m, ns := nsManager(t)
	before := listRuleset(t, ns)
	err := m.Apply(Config{Tun: "exit0"})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Apply(invalid) = %v", err)
	}
	if got := listRuleset(t, ns); got != before {
		t.Fatalf("an invalid Apply changed the ruleset:\n%s", got)
	}
}
