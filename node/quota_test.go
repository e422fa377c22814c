package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"exitd/control"
	"exitd/members"
	"exitd/nat"
)

func TestConnLimits(t *testing.T) {
	ms := []members.Member{
		{Label: "a", IPv4: netip.MustParseAddr("10.99.0.2"), IPv6: netip.MustParseAddr("fd00:99::2")},
		{Label: "b", IPv4: netip.MustParseAddr("10.99.0.3"), MaxConns: 100_000},
		{Label: "c", IPv4: netip.MustParseAddr("10.99.0.4")},
	}
	auto := connLimits(mustConfig(t, "").Conntrack, ms, 262144)
	if auto.Quota != 65536 || auto.Rate != 500 || auto.Burst != 2000 {
		t.Errorf("auto limits %+v, want quota 65536 (3 members: the ceiling), 500/s burst 2000", auto)
	}
	if len(auto.Overrides) != 1 || auto.Overrides[0].Max != 100_000 || auto.Overrides[0].Addrs[0] != ms[1].IPv4 {
		t.Errorf("overrides %+v, want b's 100000", auto.Overrides)
	}
	fixed := connLimits(mustConfig(t, "[conntrack]\nmax_conns_per_member = 9000\nnew_conn_rate = -1\n").Conntrack, ms, 262144)
	if fixed.Quota != 9000 || fixed.Rate != 0 || fixed.Burst != 0 {
		t.Errorf("fixed limits %+v", fixed)
	}
	off := connLimits(mustConfig(t, "[conntrack]\nmax_conns_per_member = -1\n").Conntrack, ms, 262144)
	if off.Quota != 0 || len(off.Overrides) != 1 {
		t.Errorf("quota off %+v: the members' own quotas still apply", off)
	}
	// Every limit the daemon derives is one the ruleset accepts.
	nc := natConfig(mustConfig(t, ""))
	nc.Limits = auto
	if err := nc.Validate(); err != nil {
		t.Error(err)
	}
}

func TestAutoQuota(t *testing.T) {
	for _, tc := range []struct{ ctMax, members, want int }{
		{262144, 0, nat.AutoQuotaCeiling},
		{262144, 10, 19660},
		{262144, 20000, nat.AutoQuotaFloor},
		{1 << 20, 100, 7864},
	} {
		if got := nat.AutoQuota(tc.ctMax, tc.members); got != tc.want {
			t.Errorf("AutoQuota(%d, %d) = %d, want %d", tc.ctMax, tc.members, got, tc.want)
		}
	}
}

func TestReadCTMax(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("131072\n"), 0o600)
	os.WriteFile(bad, []byte("lots\n"), 0o600)
	if v, err := readCTMax(good); err != nil || v != 131072 {
		t.Errorf("readCTMax = %d, %v", v, err)
	}
	if _, err := readCTMax(bad); err == nil {
		t.Error("readCTMax accepted garbage")
	}
	if _, err := readCTMax(filepath.Join(dir, "missing")); err == nil {
		t.Error("readCTMax of a missing file: no error")
	}
}

// Listing members reads no link speed: the auto egress rate is resolved
// for the scheduler and the status, not once per member shown (it cost
// 0.46 s of CPU per 20,000 members added, a sysfs read each).
func TestMemberViewsReadNoLinkSpeed(t *testing.T) {
	n := testNode(t, time.Hour)
	reads := 0
	n.linkSpeed = func(string) (uint64, bool) { reads++; return 1e9, true }
	var reqs []control.AddMemberRequest
	for i := range 50 {
		reqs = append(reqs, control.AddMemberRequest{Label: fmt.Sprintf("m%d", i)})
	}
	if _, err := (backend{n}).AddMembers(context.Background(), control.AddMembersRequest{Members: reqs}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (backend{n}).Members(context.Background(), control.ListQuery{}); err != nil {
		t.Fatal(err)
	}
	if reads != 0 {
		t.Errorf("adding and listing 50 members read the link speed %d times", reads)
	}
}
