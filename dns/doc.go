// Package dns owns exitd's resolver for members: a caching, forwarding DNS
// server that listens on the gateway addresses inside the tunnel (UDP and TCP
// port 53) and forwards to the node's upstream resolvers over plain DNS or
// DNS over TLS.
//
// The query pipeline of ServeDNS, in order:
//
//	count → rate limit (per source address) → validate (opcode, one question,
//	EDNS version) → blocklist → cache (positive and RFC 2308 negative) →
//	coalesce identical in-flight questions → upstreams in order of health
//	(UDP, TCP on truncation) → rebinding filter → cache store → reply sized
//	for the client's buffer
//
// Privacy: queries are rebuilt for the upstream, so no client EDNS option
// (EDNS Client Subnet, cookies, padding) leaves the node; each upstream query
// has a random ID and a fresh socket (random source port); query names are
// never logged, only counted.
//
// Concurrency: ServeDNS is safe for concurrent use. The cache, the flight
// table, the rate limiter and the upstream health each sit behind their own
// mutex; the blocklist is an immutable snapshot swapped through an
// atomic.Pointer; counters are atomics.
//
// dns imports only github.com/miekg/dns (aliased mdns), golang.org/x/sys/unix
// (SO_REUSEPORT) and the standard
// library; it must not import any other exitd package. The daemon wires it up
// (config, nftables capture of port 53, metrics) from outside.
package dns
