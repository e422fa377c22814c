package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeConntrack struct {
	ms    []MemberConns
	quota int
}

func (f fakeConntrack) MemberConns() ([]MemberConns, int) { return f.ms, f.quota }

func TestConntrackCollector(t *testing.T) {
	c := NewConntrackCollector(fakeConntrack{quota: 4096, ms: []MemberConns{
		{Label: "greedy", PublicKey: "k1", Conns: 4096, QuotaDrops: 45904, RateDrops: 3},
		{Label: "light", PublicKey: "k2", Conns: 100},
		{Label: "idle", PublicKey: "k3"},
	}})
	want := `
# HELP exitd_conntrack_member_entries Tracked connections from member addresses.
# TYPE exitd_conntrack_member_entries gauge
exitd_conntrack_member_entries 4196
# HELP exitd_conntrack_member_quota Each member's quota of tracked connections per address family (0: off; members may have their own).
# TYPE exitd_conntrack_member_quota gauge
exitd_conntrack_member_quota 4096
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "exitd_conntrack_member_entries", "exitd_conntrack_member_quota"); err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	// The idle member has no series; the greedy one both drop reasons.
	if series["exitd_member_conntrack_entries"] != 2 || series["exitd_member_conn_dropped_total"] != 2 {
		t.Errorf("series %v", series)
	}
	if n := testutil.CollectAndCount(c, "exitd_member_conn_dropped_total"); n != 2 {
		t.Errorf("%d drop series, want 2", n)
	}
}
