package nat

// Traffic through the split layout (the fallback for kernels without
// inet-family NAT), forced on this kernel, on the lab of lab_test.go.

import (
	"net/netip"
	"strings"
	"testing"

	"exitd/internal/testenv"
)

// TestLabSplitLayout: with the NAT chains in ip and ip6 tables, a member's
// flow still leaves masqueraded and is answered while the inet table keeps
// filtering; switching to the inet layout drops the ip and ip6 tables in the
// same transaction; Remove leaves no table of either kind.
func TestLabSplitLayout(t *testing.T) {
	testenv.RequireRoot(t)
	l := newLab(t)
	l.cfg.Layout = LayoutSplit
	if err := l.m.Apply(l.cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := l.m.Mode(), "split (ip + ip6 nat tables)"; got != want {
		t.Errorf("Mode = %q, want %q", got, want)
	}
	rs := listRuleset(t, l.router)
	for _, want := range []string{"table inet exitd {", "table ip exitd_nat {", "table ip6 exitd_nat {",
		`oifname "w0" ip saddr 10.8.0.0/24 masquerade fully-random`} {
		if !strings.Contains(rs, want) {
			t.Fatalf("router ruleset lacks %q:\n%s", want, rs)
		}
	}
	if inet := rs[:strings.Index(rs, "table ip exitd_nat")]; strings.Contains(inet, "type nat") {
		t.Fatalf("the inet table still has a NAT chain:\n%s", inet)
	}

	member := newPinger(t, l.member, netip.Addr{})
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if !member.waitReply(labTarget) {
		t.Fatal("no echo reply from the internet side")
	}
	if got := counter(t, l.probe, "natted"); got != 1 {
		t.Errorf("target saw %d masqueraded requests, want 1", got)
	}
	// The filter still works beside the NAT tables.
	if err := member.send(labBlocked); err != nil {
		t.Fatal(err)
	}
	if got := waitCounter(t, l.m, CounterLeakDrop, 1); got != 1 {
		t.Errorf("leak_drop = %d, want 1", got)
	}

	// A reload to the inet layout: NAT moves back into the inet table.
	// The member's flows are forgotten first, else conntrack would keep
	// the old NAT binding and prove nothing.
	inet := l.cfg
	inet.Layout = LayoutInet
	if err := l.m.Apply(inet); err != nil {
		t.Fatal(err)
	}
	if got := listRuleset(t, l.router); strings.Contains(got, "exitd_nat") || !strings.Contains(got, "chain postrouting") {
		t.Fatalf("after switching to the inet layout:\n%s", got)
	}
	if _, err := FlushConntrack(int(l.router), l.cfg.Member4); err != nil {
		t.Fatal(err)
	}
	if err := member.send(labTarget); err != nil {
		t.Fatal(err)
	}
	if !member.waitReply(labTarget) {
		t.Fatal("no echo reply after switching to the inet layout")
	}

	// And back, then away.
	if err := l.m.Apply(l.cfg); err != nil {
		t.Fatal(err)
	}
	if err := l.m.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := string(nftIn(t, int(l.router), "", "list", "tables")); got != "" {
		t.Fatalf("after Remove the router still has tables:\n%s", got)
	}
	if got := counter(t, l.probe, "unnatted"); got != 0 {
		t.Errorf("target received %d packets with a member source", got)
	}
}
