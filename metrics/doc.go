// Package metrics is exitd's Prometheus exposition: collectors that read the
// node's parts through small source interfaces at scrape time, registered on
// a registry the caller injects (never prometheus.DefaultRegisterer), and the
// HTTP server that serves them on a loopback address.
//
// It owns:
//   - Table: the per-member view (rates, session state, monotonic totals)
//     refreshed at most once per MinInterval, shared by the collectors, the
//     control API's top and the load report's sampler;
//   - the collectors (members, scheduler, nftables, host, kernel profile,
//     build info) and their names and help strings;
//   - readers of the host's counters in /proc (UDP errors, link drops,
//     conntrack use, CPU and memory).
//
// Cardinality: per-member series exist for at most MemberOptions.Limit
// members (all of them when no more are configured, else the busiest by
// current rate); everything else is aggregated. See docs/observability.md.
//
// It imports client_golang and the standard library only: never sched, nat,
// tuning, members, tunnel or node. node adapts those parts to the sources.
package metrics
