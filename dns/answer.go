package dns

import (
	"net"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// newEntry turns an upstream reply (which it may modify) into an entry:
// the upstream's OPT removed (its extended errors kept), rebinding
// protection applied, TTLs clamped, and the cache lifetime decided:
//
//	answer (NOERROR, records)      min TTL of the answer section, ≤ 1 day
//	NXDOMAIN, NODATA with a SOA    min(SOA TTL, SOA MINIMUM), ≤ 1 hour (RFC 2308 §5)
//	NXDOMAIN, NODATA without SOA   not cached (RFC 2308 §5)
//	rebinding rewrite              as the answer it replaced
//	SERVFAIL, anything else        not cached
func (r *Resolver) newEntry(k cacheKey, m *mdns.Msg) (*entry, error) {
	e := &entry{key: k, stored: r.now()}
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		opt, ok := rr.(*mdns.OPT)
		if !ok {
			extra = append(extra, rr)
			continue
		}
		for _, o := range opt.Option {
			if ede, ok := o.(*mdns.EDNS0_EDE); ok {
				e.ede = append(e.ede, ede)
			}
		}
	}
	m.Extra = extra
	m.Id = 0
	m.Question[0].Name = k.name
	m.Compress = true

	if r.cfg.Rebind && r.deny != nil && r.denied(m.Answer) {
		e.rebind = true
		e.ttl = min(minTTL(m.Answer), maxTTL)
		m.Answer, m.Ns, m.Extra, e.ede = nil, nil, nil, nil
		m.Rcode = mdns.RcodeSuccess
	}
	switch {
	case e.rebind:
	case m.Rcode == mdns.RcodeSuccess && len(m.Answer) > 0:
		e.ttl = min(minTTL(m.Answer), maxTTL)
	case m.Rcode == mdns.RcodeNameError || m.Rcode == mdns.RcodeSuccess:
		e.negative = true
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				e.ttl = min(soa.Hdr.Ttl, soa.Minttl, maxNegativeTTL)
				break
			}
		}
	}
	clamp := uint32(maxTTL)
	if e.negative {
		clamp = e.ttl // the SOA's TTL in a negative answer is its lifetime
	}
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			h.Ttl = min(h.Ttl, clamp)
		}
	}
	var err error
	e.wire, err = m.Pack()
	return e, err
}

// denied reports whether an A or AAAA record points into the deny set.
func (r *Resolver) denied(answer []mdns.RR) bool {
	for _, rr := range answer {
		var ip net.IP
		switch rr := rr.(type) {
		case *mdns.A:
			ip = rr.A
		case *mdns.AAAA:
			ip = rr.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok && (r.deny(a) || r.deny(a.Unmap())) {
			return true
		}
	}
	return false
}

// minTTL returns the smallest TTL in rrs (OPT excluded), or maxTTL for none.
func minTTL(rrs []mdns.RR) uint32 {
	ttl := uint32(maxTTL)
	for _, rr := range rrs {
		if h := rr.Header(); h.Rrtype != mdns.TypeOPT {
			ttl = min(ttl, h.Ttl)
		}
	}
	return ttl
}

// answer writes entry e, aged age seconds, as the reply to req.
func (r *Resolver) answer(w mdns.ResponseWriter, req *mdns.Msg, e *entry, age uint32) {
	m := new(mdns.Msg)
	if err := m.Unpack(e.wire); err != nil || len(m.Question) != 1 {
		r.servfail(w, req, err) // we packed it ourselves; cannot happen
		return
	}
	do := e.key.flags&keyDO != 0
	m.Id = req.Id
	m.Question[0] = req.Question[0] // the client's spelling of the name
	m.RecursionDesired = req.RecursionDesired
	m.RecursionAvailable = true
	m.CheckingDisabled = req.CheckingDisabled
	m.AuthenticatedData = m.AuthenticatedData && (req.AuthenticatedData || do) // RFC 6840 §5.8
	m.Authoritative = false
	if age > 0 {
		for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sec {
				h := rr.Header()
				h.Ttl -= min(h.Ttl, age)
			}
		}
	}
	ede := e.ede
	if e.rebind {
		r.stats.rebind.Add(1)
		ede = []*mdns.EDNS0_EDE{{InfoCode: mdns.ExtendedErrorCodeBlocked, ExtraText: "rebinding protection"}}
	}
	if m.Rcode == mdns.RcodeServerFailure {
		r.stats.servfails.Add(1)
	}
	r.write(w, req, m, ede...)
}

// write sends m as the reply to req. When req has EDNS, m gets our OPT (the
// client's DO echoed, the extended errors ede). A UDP reply is truncated,
// with TC set, to the client's buffer: 512 bytes without EDNS, otherwise its
// advertised size up to 1232 so it is not fragmented inside the tunnel.
func (r *Resolver) write(w mdns.ResponseWriter, req, m *mdns.Msg, ede ...*mdns.EDNS0_EDE) {
	size := mdns.MinMsgSize
	if ropt := req.IsEdns0(); ropt != nil {
		opt := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		opt.SetUDPSize(upstreamUDPSize)
		opt.SetDo(ropt.Do())
		for _, o := range ede {
			opt.Option = append(opt.Option, o)
		}
		m.Extra = append(m.Extra, opt)
		size = min(max(int(ropt.UDPSize()), mdns.MinMsgSize), upstreamUDPSize)
	}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		size = mdns.MaxMsgSize
	}
	m.Truncate(size)
	_ = w.WriteMsg(m) // the client has gone; nothing to do
}

// remoteAddr returns the client's IP, or the zero Addr if it has none.
func remoteAddr(w mdns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
