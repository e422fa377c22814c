package node

import (
	"fmt"
	"net/netip"

	"exitd/config"
	"exitd/control"
	"exitd/dns"
	"exitd/metrics"
)

// DNS inside the tunnel (docs/dns.md): a caching resolver on the gateway
// addresses, port 53, so members' names never go to their ISP's resolver.
// It runs after the data plane (the gateway addresses are on the TUN),
// answers only inside the tunnel, and checks answers against the same deny
// set as forwarded traffic (rebinding protection).

// dnsPort is where members' resolvers point (the DNS line of their configs).
const dnsPort = 53

// gateways are the node's addresses inside the member prefixes.
func gateways(c *config.Config) []netip.Addr {
	var out []netip.Addr
	for _, a := range []netip.Addr{c.Tunnel.Gateway4(), c.Tunnel.Gateway6()} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// dnsConfig maps the daemon config onto the resolver's; resolv names the
// node's resolv.conf, read when no upstream is configured.
func dnsConfig(c *config.Config, resolv string) (dns.Config, error) {
	ups := c.DNS.Upstreams
	if len(ups) == 0 {
		var err error
		if ups, err = dns.DefaultUpstreams(resolv); err != nil {
			return dns.Config{}, fmt.Errorf("dns: no [dns] upstreams and %w; set [dns] upstreams or enabled = false", err)
		}
	}
	return dns.Config{
		Upstreams: ups, CacheEntries: c.DNS.CacheEntries,
		MemberQPS: c.DNS.MemberQPS, MemberBurst: c.DNS.MemberBurst,
		Rebind: c.DNS.Rebind(), BlocklistPath: c.DNS.Blocklist,
	}, nil
}

// startDNS serves DNS on the gateway addresses.
func (n *Node) startDNS() (func(), error) {
	c := n.config()
	if !c.DNS.On() {
		return nil, nil
	}
	dc, err := dnsConfig(c, config.DefaultResolvConf)
	if err != nil {
		return nil, err
	}
	r, err := dns.New(dc, dns.Options{Logger: n.log, Now: n.now, Deny: n.denied})
	if err != nil {
		return nil, err
	}
	var addrs []netip.AddrPort
	for _, a := range gateways(c) {
		addrs = append(addrs, netip.AddrPortFrom(a, dnsPort))
	}
	srv, err := r.Listen(addrs)
	if err != nil {
		return nil, fmt.Errorf("dns: %w (set [dns] enabled = false to run without the resolver)", err)
	}
	n.dns = r
	n.log.Info("serving DNS to members", "addrs", addrs, "upstreams", dc.Upstreams, "capture", c.DNS.Captured())
	return func() { srv.Close() }, nil
}

// dnsSource adapts the resolver to its collector.
type dnsSource struct{ n *Node }

var _ metrics.DNSSource = dnsSource{}

func (s dnsSource) DNSStats() (metrics.DNSStats, bool) {
	r := s.n.dns
	if r == nil {
		return metrics.DNSStats{}, false
	}
	st := r.Stats()
	out := metrics.DNSStats{
		Queries: st.Queries, CacheHits: st.CacheHits, CacheMisses: st.CacheMisses, NegativeHits: st.NegativeHits,
		Coalesced: st.Coalesced, UpstreamQueries: st.UpstreamQueries, UpstreamErrors: st.UpstreamErrors,
		Servfails: st.Servfails, Blocked: st.Blocked, RebindRewrites: st.RebindRewrites,
		RateLimited: st.RateLimited, Malformed: st.Malformed, CacheEntries: st.CacheEntries,
		LatencyBounds: st.UpstreamLatency.Bounds, LatencyCounts: st.UpstreamLatency.Counts,
		LatencyCount: st.UpstreamLatency.Count, LatencySum: st.UpstreamLatency.Sum,
		UpstreamUp: map[string]bool{},
	}
	for _, u := range st.Upstreams {
		out.UpstreamUp[u.Upstream] = u.Up
	}
	return out, true
}

// dnsStatus is the resolver's line in `exitctl status`; nil when off.
func (n *Node) dnsStatus() *control.ServiceStatus {
	if n.dns == nil {
		return nil
	}
	st := n.dns.Stats()
	ss := &control.ServiceStatus{}
	for _, a := range gateways(n.config()) {
		ss.Listen = append(ss.Listen, netip.AddrPortFrom(a, dnsPort).String())
	}
	hit := 0.0
	if st.CacheHits+st.CacheMisses > 0 {
		hit = float64(st.CacheHits) * 100 / float64(st.CacheHits+st.CacheMisses)
	}
	up := 0
	for _, u := range st.Upstreams {
		if u.Up {
			up++
		}
	}
	ss.Summary = fmt.Sprintf("%d queries, %.0f%% cache hits, %d SERVFAIL, %d blocked, upstreams %d/%d up",
		st.Queries, hit, st.Servfails, st.Blocked, up, len(st.Upstreams))
	return ss
}
