package nat

// Root tests of Watch's content check: edits to our table made with nft in
// the test's namespace are undone and counted; other tables' changes are
// not.

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"exitd/internal/testenv"
)

// startWatch runs m.Watch with an injected ticker until the test ends and
// returns the events channel and the tick channel.
func startWatch(t *testing.T, m *Manager) (<-chan error, chan<- time.Time) {
	t.Helper()
	tick := make(chan time.Time)
	m.newTicker = func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} }
	ctx, cancel := context.WithCancel(t.Context())
	events := make(chan error, 16)
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx, func(err error) { events <- err }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	return events, tick
}

// TestKernelWatchRestoresEdits: every kind of edit to our table brings the
// whole table back as applied, and counts one restoration.
func TestKernelWatchRestoresEdits(t *testing.T) {
	testenv.RequireRoot(t)
	m, ns := nsManager(t)
	cfg := testCases()[0].cfg
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	golden := readFile(t, "testdata/masquerade.nft")
	events, _ := startWatch(t, m)

	handle := func(chain, rule string) string {
		out := string(nftIn(t, int(ns), "", "-a", "list", "chain", "inet", "exitd", chain))
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, rule) {
				if h := regexp.MustCompile(`# handle (\d+)`).FindStringSubmatch(line); h != nil {
					return h[1]
				}
			}
		}
		t.Fatalf("no rule %q in\n%s", rule, out)
		return ""
	}
	edits := []struct {
		name string
		nft  func() []string
	}{
		{"flush the forward chain", func() []string { return []string{"flush", "chain", "inet", "exitd", "forward"} }},
		{"delete the leak rule", func() []string {
			return []string{"delete", "rule", "inet", "exitd", "forward", "handle", handle("forward", "@blocked4")}
		}},
		{"delete the MSS clamp", func() []string {
			return []string{"delete", "rule", "inet", "exitd", "fwd_mangle", "handle", handle("fwd_mangle", "maxseg")}
		}},
		{"delete a set element", func() []string {
			return []string{"delete", "element", "inet", "exitd", "blocked4", "{ 169.254.0.0/16 }"}
		}},
		{"add a set element", func() []string {
			return []string{"add", "element", "inet", "exitd", "allowed4", "{ 10.0.0.0/8 }"}
		}},
		{"insert an accept", func() []string { return []string{"insert", "rule", "inet", "exitd", "forward", "accept"} }},
		{"change a policy", func() []string {
			return []string{"add", "chain", "inet", "exitd", "input", "{ type filter hook input priority filter; policy drop; }"}
		}},
		{"make the table dormant", func() []string { return []string{"add", "table", "inet", "exitd", "{ flags dormant; }"} }},
		{"delete a counter's rule and the counter", func() []string {
			return []string{"-f", "-"}
		}},
		{"delete the table", func() []string { return []string{"delete", "table", "inet", "exitd"} }},
	}
	for i, e := range edits {
		args := e.nft()
		stdin := ""
		if args[0] == "-f" {
			stdin = "delete rule inet exitd input handle " + handle("input", "gw_input_drop") + "\ndelete counter inet exitd gw_input_drop\n"
		}
		nftIn(t, int(ns), stdin, args...)
		waitEvent(t, events, e.name)
		if got := m.Restorations(); got != uint64(i+1) {
			t.Fatalf("%s: Restorations = %d, want %d", e.name, got, i+1)
		}
		if got := listRuleset(t, ns); got != golden {
			t.Fatalf("%s: after the restore:\n%s", e.name, got)
		}
	}

	// Other tables' changes, and counters rising, are not edits: a
	// barrier edit afterwards must be the only restoration.
	nftIn(t, int(ns), "table inet other {\n set s { type ipv4_addr; elements = { 192.0.2.1 } }\n chain c { type filter hook forward priority 0; counter; }\n}\n", "-f", "-")
	nftIn(t, int(ns), "", "add", "element", "inet", "other", "s", "{ 192.0.2.2 }")
	nftIn(t, int(ns), "", "flush", "chain", "inet", "other", "c")
	nftIn(t, int(ns), "", "flush", "chain", "inet", "exitd", "input")
	waitEvent(t, events, "barrier")
	if got, want := m.Restorations(), uint64(len(edits)+1); got != want {
		t.Fatalf("Restorations = %d after other tables changed, want %d", got, want)
	}
	if n := len(events); n != 0 {
		t.Errorf("%d unexpected re-applies", n)
	}
	if !strings.Contains(listRuleset(t, ns), "table inet other") {
		t.Error("the other table was touched")
	}
}

// TestKernelWatchSplit: with the split layout, Watch guards the ip and ip6
// NAT tables as it guards the inet one: a deleted `ip exitd_nat`, an edited
// ip6 chain, a deleted rule come back, each counted once; a same-named
// table of another family is not ours.
func TestKernelWatchSplit(t *testing.T) {
	testenv.RequireRoot(t)
	m, ns := nsManager(t)
	if err := m.Apply(splitCase(t)); err != nil {
		t.Fatal(err)
	}
	golden := readFile(t, "testdata/split.nft")
	events, _ := startWatch(t, m)

	edits := []struct {
		name, stdin string
		args        []string
	}{
		{"delete table ip exitd_nat", "", []string{"delete", "table", "ip", "exitd_nat"}},
		{"delete table ip6 exitd_nat", "", []string{"delete", "table", "ip6", "exitd_nat"}},
		{"flush the ip6 postrouting chain", "", []string{"flush", "chain", "ip6", "exitd_nat", "postrouting"}},
		{"add a rule to the ip prerouting chain", "", []string{"add", "rule", "ip", "exitd_nat", "prerouting", "accept"}},
		{"delete the ip NAT chains", "delete chain ip exitd_nat prerouting\ndelete chain ip exitd_nat postrouting\n", []string{"-f", "-"}},
		{"flush ruleset", "", []string{"flush", "ruleset"}},
	}
	for i, e := range edits {
		nftIn(t, int(ns), e.stdin, e.args...)
		waitEvent(t, events, e.name)
		if got := m.Restorations(); got != uint64(i+1) {
			t.Fatalf("%s: Restorations = %d, want %d", e.name, got, i+1)
		}
		if got := listRuleset(t, ns); got != golden {
			t.Fatalf("%s: after the restore:\n%s", e.name, got)
		}
	}

	// Not ours: another family's exitd_nat, an inet exitd_nat. A barrier
	// edit afterwards must be the only restoration.
	nftIn(t, int(ns), "table arp exitd_nat {\n chain c { type filter hook input priority 0; }\n}\ntable inet exitd_nat {\n chain c { type nat hook postrouting priority srcnat; }\n}\n", "-f", "-")
	nftIn(t, int(ns), "", "delete", "table", "inet", "exitd_nat")
	nftIn(t, int(ns), "", "delete", "table", "ip", "exitd_nat")
	waitEvent(t, events, "barrier")
	if got, want := m.Restorations(), uint64(len(edits)+1); got != want {
		t.Fatalf("Restorations = %d after other tables changed, want %d", got, want)
	}
	if n := len(events); n != 0 {
		t.Errorf("%d unexpected re-applies", n)
	}
	if !strings.Contains(listRuleset(t, ns), "table arp exitd_nat") {
		t.Error("the arp table was touched")
	}
}

// TestKernelWatchTick: the periodic check runs on the injected ticker and
// finds nothing to do on an intact table.
func TestKernelWatchTick(t *testing.T) {
	testenv.RequireRoot(t)
	m, ns := nsManager(t)
	if err := m.Apply(testCases()[0].cfg); err != nil {
		t.Fatal(err)
	}
	_, tick := startWatch(t, m)
	before := m.checks.Load()
	for range 3 {
		tick <- time.Now() // unbuffered: received by the watch loop
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.checks.Load() < before+3 {
		if time.Now().After(deadline) {
			t.Fatalf("checks went %d → %d after 3 ticks", before, m.checks.Load())
		}
	}
	if got := m.Restorations(); got != 0 {
		t.Errorf("Restorations = %d on an intact table", got)
	}
	if got := listRuleset(t, ns); got != readFile(t, "testdata/masquerade.nft") {
		t.Errorf("ruleset changed:\n%s", got)
	}
}

// TestSnapshotDiff covers the descriptions Watch logs.
func TestSnapshotDiffSplit(t *testing.T) {
	want := tableState{"chain postrouting 1=aa", "ip chain postrouting 1=bb", "ip rule postrouting 0 4=01", "ip table 2=00",
		"ip6 chain postrouting 1=cc", "ip6 table 2=00", "table 2=00"}
	drop := func(i ...int) tableState {
		var st tableState
		for j, l := range want {
			if !slices.Contains(i, j) {
				st = append(st, l)
			}
		}
		return st
	}
	for _, tc := range []struct {
		name string
		got  tableState
		diff string
	}{
		{"same", want, ""},
		{"all gone", nil, "table missing"},
		{"ip table gone", drop(1, 2, 3), "ip table missing"},
		{"ip6 table gone", drop(4, 5), "ip6 table missing"},
		{"inet table gone", drop(0, 6), "table missing"},
		{"ip rule gone", drop(2), "missing or changed: ip rule postrouting 0"},
		{"ip6 chain changed", append(drop(4), "ip6 chain postrouting 1=dd"), "changed: ip6 chain postrouting"},
	} {
		slices.Sort(tc.got)
		if got := want.diff(tc.got); got != tc.diff {
			t.Errorf("%s: diff = %q, want %q", tc.name, got, tc.diff)
		}
	}
}

// TestSnapshotDiff covers the descriptions Watch logs.
func TestSnapshotDiff(t *testing.T) {
	want := tableState{"chain forward 1=aa", "rule forward 0 4=01", "rule forward 1 4=02", "table 2=00"}
	for _, tc := range []struct {
		name string
		got  tableState
		diff string
	}{
		{"same", want, ""},
		{"gone", nil, "table missing"},
		{"flushed", tableState{"chain forward 1=aa", "table 2=00"}, "missing or changed: rule forward 0"},
		{"changed", tableState{"chain forward 1=aa", "rule forward 0 4=01", "rule forward 1 4=03", "table 2=00"}, "changed: rule forward 1"},
		{"added", tableState{"chain forward 1=aa", "rule forward 0 4=01", "rule forward 1 4=02", "rule forward 2 4=02", "table 2=00"}, "unexpected: rule forward 2"},
		{"dormant", tableState{"chain forward 1=aa", "rule forward 0 4=01", "rule forward 1 4=02", "table 2=01"}, "changed: table"},
		{"inet table gone, split tables left", tableState{"ip table 2=00"}, "table missing"},
	} {
		if got := want.diff(tc.got); got != tc.diff {
			t.Errorf("%s: diff = %q, want %q", tc.name, got, tc.diff)
		}
	}
}
