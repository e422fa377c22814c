package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeSOCKS struct {
	s  SOCKSStats
	ok bool
}

func (f fakeSOCKS) SOCKSStats() (SOCKSStats, bool) { return f.s, f.ok }

func TestSOCKSCollector(t *testing.T) {
	c := NewSOCKSCollector(fakeSOCKS{ok: true, s: SOCKSStats{SessionsActive: 3, ConnectsOK: 9, ConnectsFailed: 1,
		Refused: map[string]uint64{"ruleset": 2, "nofd": 0}}})
	want := `
# HELP exitd_socks_sessions SOCKS sessions open now, any phase.
# TYPE exitd_socks_sessions gauge
exitd_socks_sessions 3
# HELP exitd_socks_connects_total CONNECT requests by result (ok: relayed; failed: resolution or dial failed).
# TYPE exitd_socks_connects_total counter
exitd_socks_connects_total{result="failed"} 1
exitd_socks_connects_total{result="ok"} 9
# HELP exitd_socks_refused_total Sessions refused, by reason (ruleset, limit, rate, auth, nofd).
# TYPE exitd_socks_refused_total counter
exitd_socks_refused_total{reason="nofd"} 0
exitd_socks_refused_total{reason="ruleset"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "exitd_socks_sessions", "exitd_socks_connects_total", "exitd_socks_refused_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewSOCKSCollector(fakeSOCKS{})); n != 0 {
		t.Fatalf("%d metrics without a proxy", n)
	}
}
