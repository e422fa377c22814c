package dns

import (
	"sync/atomic"
	"time"
)

// LatencyBuckets returns the upper bounds, in seconds, of the buckets of
// Stats.UpstreamLatency (for exitd_dns_upstream_seconds). The slice is a
// fresh copy.
func LatencyBuckets() []float64 {
	return []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5}
}

// Stats is a snapshot of the resolver's counters. Counters only grow.
type Stats struct {
	Queries         uint64 // every query received, malformed ones included
	CacheHits       uint64 // answered from the cache (NegativeHits included)
	CacheMisses     uint64 // looked up and not found or expired
	NegativeHits    uint64 // cache hits on NXDOMAIN/NODATA entries
	Coalesced       uint64 // misses that waited on an identical in-flight query
	UpstreamQueries uint64 // exchanges with an upstream (a TCP retry counts again)
	UpstreamErrors  uint64 // exchanges that failed or were refused
	Servfails       uint64 // SERVFAIL answers sent, own or passed through
	Blocked         uint64 // NXDOMAIN answers from the blocklist
	RebindRewrites  uint64 // answers emptied by rebinding protection
	RateLimited     uint64 // queries refused by the per-source limit
	Malformed       uint64 // answered FORMERR/NOTIMP/BADVERS, or dropped

	CacheEntries      int // entries held now
	BlocklistEntries  int // names in the current blocklist
	BlocklistBadLines int // lines skipped by the last blocklist load

	// UpstreamLatency is the time of successful upstream exchanges.
	UpstreamLatency Histogram
	// Upstreams is the health of each upstream, in configuration order.
	Upstreams []UpstreamHealth
}

// Histogram is a snapshot of a latency histogram in Prometheus form.
type Histogram struct {
	Bounds []float64 // upper bounds in seconds, as LatencyBuckets
	Counts []uint64  // Counts[i]: observations ≤ Bounds[i] (cumulative)
	Count  uint64    // all observations, including those above the last bound
	Sum    float64   // sum of observations in seconds
}

// UpstreamHealth is the state of one upstream.
type UpstreamHealth struct {
	Upstream    string    // as Upstream.String
	Up          bool      // false while marked down after a failure
	Queries     uint64    // exchanges attempted
	Errors      uint64    // exchanges failed
	LastError   string    // most recent failure; never holds a query name
	LastErrorAt time.Time // zero if none
	RetryAt     time.Time // when a down upstream is next tried first
}

// counters are the resolver's live counters.
type counters struct {
	queries, cacheHits, cacheMisses, negativeHits, coalesced    atomic.Uint64
	upstreamQueries, upstreamErrors, servfails, blocked, rebind atomic.Uint64
	rateLimited, malformed                                      atomic.Uint64

	latency histogram
}

// histogram counts observations per bucket (not cumulative; the last bucket
// is +Inf) with atomics, so observing never blocks.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64
	sumNS  atomic.Int64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(h.bounds) && s > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNS.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: append([]float64(nil), h.bounds...), Counts: make([]uint64, len(h.bounds))}
	for i := range h.counts {
		out.Count += h.counts[i].Load()
		if i < len(out.Counts) {
			out.Counts[i] = out.Count
		}
	}
	out.Sum = time.Duration(h.sumNS.Load()).Seconds()
	return out
}
