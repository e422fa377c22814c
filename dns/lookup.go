package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// ErrRebind is wrapped by LookupNetIP's error when rebinding protection
// emptied the answer: the name points at a denied address.
var ErrRebind = errors.New("dns: answer points at a denied address")

// LookupNetIP resolves host's addresses for an in-process client (the
// SOCKS proxy) the way a member's query is resolved — blocklist, cache,
// coalescing, upstreams, rebinding protection — without the per-source
// rate limit. network is "ip", "ip4" or "ip6". A literal address is
// returned as it is. ctx is not consulted: UpstreamTimeout bounds the work.
func (r *Resolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	name := mdns.Fqdn(strings.ToLower(host))
	if _, ok := mdns.IsDomainName(name); !ok || len(name) > 255 {
		return nil, &net.DNSError{Err: "invalid domain name", Name: host, IsNotFound: true}
	}
	if r.block.Load().blocked(name) {
		r.stats.blocked.Add(1)
		return nil, &net.DNSError{Err: "blocked by the blocklist", Name: host, IsNotFound: true}
	}
	var qtypes []uint16
	switch network {
	case "ip":
		qtypes = []uint16{mdns.TypeA, mdns.TypeAAAA}
	case "ip4":
		qtypes = []uint16{mdns.TypeA}
	case "ip6":
		qtypes = []uint16{mdns.TypeAAAA}
	default:
		return nil, fmt.Errorf("dns: lookup %s: unknown network %q", host, network)
	}
	var out []netip.Addr
	var errs []error
	for _, qt := range qtypes {
		k := cacheKey{name: name, qtype: qt, qclass: mdns.ClassINET}
		e, _, ok := r.cache.get(k, r.now())
		if !ok {
			var err error
			if e, _, err = r.flights.do(k, func() (*entry, error) { return r.resolve(k, false) }); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if e.rebind {
			errs = append(errs, fmt.Errorf("%w: %s", ErrRebind, host))
			continue
		}
		var m mdns.Msg
		if err := m.Unpack(e.wire); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range m.Answer {
			switch rr := rr.(type) {
			case *mdns.A:
				if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					out = append(out, a)
				}
			case *mdns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
					out = append(out, a)
				}
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, ErrRebind) {
			return nil, err
		}
		return nil, &net.DNSError{Err: err.Error(), Name: host, IsTemporary: true}
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
