package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeDNS struct {
	s  DNSStats
	ok bool
}

func (f fakeDNS) DNSStats() (DNSStats, bool) { return f.s, f.ok }

func TestDNSCollector(t *testing.T) {
	c := NewDNSCollector(fakeDNS{ok: true, s: DNSStats{Queries: 10, CacheHits: 7, CacheMisses: 3, Blocked: 2,
		CacheEntries: 5, LatencyBounds: []float64{0.001, 0.01}, LatencyCounts: []uint64{1, 3}, LatencyCount: 3, LatencySum: 0.012,
		UpstreamUp: map[string]bool{"192.0.2.53:53": true, "tls://1.1.1.1:853": false}}})
	want := `
# HELP exitd_dns_queries_total DNS queries received from members, malformed ones included.
# TYPE exitd_dns_queries_total counter
exitd_dns_queries_total 10
# HELP exitd_dns_blocked_total Queries answered NXDOMAIN by the blocklist.
# TYPE exitd_dns_blocked_total counter
exitd_dns_blocked_total 2
# HELP exitd_dns_upstream_seconds Time of successful upstream exchanges.
# TYPE exitd_dns_upstream_seconds histogram
exitd_dns_upstream_seconds_bucket{le="0.001"} 1
exitd_dns_upstream_seconds_bucket{le="0.01"} 3
exitd_dns_upstream_seconds_bucket{le="+Inf"} 3
exitd_dns_upstream_seconds_sum 0.012
exitd_dns_upstream_seconds_count 3
# HELP exitd_dns_upstream_up 1 while the upstream answers, 0 while it is marked down.
# TYPE exitd_dns_upstream_up gauge
exitd_dns_upstream_up{upstream="192.0.2.53:53"} 1
exitd_dns_upstream_up{upstream="tls://1.1.1.1:853"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "exitd_dns_queries_total", "exitd_dns_blocked_total",
		"exitd_dns_upstream_seconds", "exitd_dns_upstream_up"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewDNSCollector(fakeDNS{})); n != 0 {
		t.Fatalf("%d metrics without a resolver", n)
	}
}
