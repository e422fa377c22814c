package metrics

import "github.com/prometheus/client_golang/prometheus"

// DNSStats are the resolver's counters as the collector exports them.
type DNSStats struct {
	Queries, CacheHits, CacheMisses, NegativeHits, Coalesced uint64
	UpstreamQueries, UpstreamErrors, Servfails               uint64
	Blocked, RebindRewrites, RateLimited, Malformed          uint64
	CacheEntries                                             int
	// Latency of successful upstream exchanges, Prometheus form: Bounds
	// in seconds, Counts cumulative.
	LatencyBounds []float64
	LatencyCounts []uint64
	LatencyCount  uint64
	LatencySum    float64
	// UpstreamUp is 1 or 0 by upstream.
	UpstreamUp map[string]bool
}

// DNSSource reads the resolver; ok is false when it does not run.
type DNSSource interface {
	DNSStats() (s DNSStats, ok bool)
}

type dnsCollector struct {
	src                                                   DNSSource
	queries, hits, misses, upstream, upErrors, servfails  *prometheus.Desc
	blocked, rebind, limited, malformed, entries, latency *prometheus.Desc
	up                                                    *prometheus.Desc
}

// NewDNSCollector exports the resolver's exitd_dns_* metrics.
func NewDNSCollector(src DNSSource) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("exitd_dns_"+name, help, labels, nil)
	}
	return &dnsCollector{src: src,
		queries:   d("queries_total", "DNS queries received from members, malformed ones included."),
		hits:      d("cache_hits_total", "Queries answered from the cache (negative answers included)."),
		misses:    d("cache_misses_total", "Queries not in the cache (or expired)."),
		upstream:  d("upstream_queries_total", "Exchanges with upstream resolvers."),
		upErrors:  d("upstream_errors_total", "Upstream exchanges that failed."),
		servfails: d("servfail_total", "SERVFAIL answers sent."),
		blocked:   d("blocked_total", "Queries answered NXDOMAIN by the blocklist."),
		rebind:    d("rebind_rewrites_total", "Answers emptied because a public name pointed at a denied (private or special) address."),
		limited:   d("ratelimited_total", "Queries refused by the per-member rate limit."),
		malformed: d("malformed_total", "Malformed queries (FORMERR, NOTIMP, BADVERS or dropped)."),
		entries:   d("cache_entries", "Entries in the cache now."),
		latency:   d("upstream_seconds", "Time of successful upstream exchanges."),
		up:        d("upstream_up", "1 while the upstream answers, 0 while it is marked down.", "upstream"),
	}
}

func (c *dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queries, c.hits, c.misses, c.upstream, c.upErrors, c.servfails,
		c.blocked, c.rebind, c.limited, c.malformed, c.entries, c.latency, c.up} {
		ch <- d
	}
}

func (c *dnsCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.src.DNSStats()
	if !ok {
		return
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.queries, s.Queries)
	counter(c.hits, s.CacheHits)
	counter(c.misses, s.CacheMisses)
	counter(c.upstream, s.UpstreamQueries)
	counter(c.upErrors, s.UpstreamErrors)
	counter(c.servfails, s.Servfails)
	counter(c.blocked, s.Blocked)
	counter(c.rebind, s.RebindRewrites)
	counter(c.limited, s.RateLimited)
	counter(c.malformed, s.Malformed)
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(s.CacheEntries))
	buckets := make(map[float64]uint64, len(s.LatencyBounds))
	for i, b := range s.LatencyBounds {
		if i < len(s.LatencyCounts) {
			buckets[b] = s.LatencyCounts[i]
		}
	}
	ch <- prometheus.MustNewConstHistogram(c.latency, s.LatencyCount, s.LatencySum, buckets)
	for u, up := range s.UpstreamUp {
		v := 0.0
		if up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, v, u)
	}
}
