package dns

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Options are the resolver's injected dependencies; all are optional.
type Options struct {
	// Logger receives upstream state changes and blocklist reloads, never a
	// query name. Nil discards.
	Logger *slog.Logger
	// Now is the clock for TTLs, rate limits, health and latency; nil means
	// time.Now.
	Now func() time.Time
	// Deny reports the addresses members must not reach (the exit's deny
	// set). With Config.Rebind, an answer holding such an A or AAAA record
	// is replaced by an empty NOERROR answer. Nil denies nothing.
	Deny func(netip.Addr) bool
	// Exchange replaces the network exchange with upstreams (tests, fuzzing).
	// Nil means mdns.Client over UDP, TCP or TLS.
	Exchange ExchangeFunc
	// TLSConfig is the base TLS configuration for DNS over TLS upstreams;
	// nil means the system roots. ServerName is always set per upstream.
	TLSConfig *tls.Config
}

// Resolver is the caching forwarding resolver; it is an mdns.Handler.
type Resolver struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	deny      func(netip.Addr) bool
	cache     *cache
	flights   flights
	limiter   *limiter
	upstreams *upstreamSet
	block     atomic.Pointer[blocklist]
	stats     counters
}

var _ mdns.Handler = (*Resolver)(nil)

// Cache bounds (RFC 2308 recommends one to three hours for negative
// answers; one hour keeps a mistaken NXDOMAIN from sticking too long).
const (
	maxTTL         = 24 * 60 * 60
	maxNegativeTTL = 60 * 60
)

// errFlightPanic is what waiters of a flight get if its resolution panicked.
var errFlightPanic = errors.New("dns: resolution panicked")

// New returns a resolver for cfg. It fails on an unparseable upstream and on
// a blocklist that cannot be read; it opens no socket.
func New(cfg Config, opts Options) (*Resolver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Resolver{
		cfg:     cfg,
		log:     opts.Logger,
		now:     opts.Now,
		deny:    opts.Deny,
		cache:   newCache(cfg.CacheEntries),
		limiter: newLimiter(cfg.MemberQPS, cfg.MemberBurst),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.stats.latency = newHistogram(LatencyBuckets())
	r.upstreams = &upstreamSet{log: r.log, now: r.now, exchange: opts.Exchange, timeout: cfg.UpstreamTimeout, stats: &r.stats}
	if r.upstreams.exchange == nil {
		r.upstreams.exchange = netExchange(opts.TLSConfig, cfg.UpstreamTimeout)
	}
	for _, s := range cfg.Upstreams {
		u, err := ParseUpstream(s)
		if err != nil {
			return nil, err
		}
		r.upstreams.list = append(r.upstreams.list, &upstream{u: u})
	}
	if err := r.ReloadBlocklist(); err != nil {
		return nil, err
	}
	return r, nil
}

// ReloadBlocklist re-reads Config.BlocklistPath and swaps it in atomically;
// on error the previous list stays. Bad lines are skipped and counted in
// Stats.BlocklistBadLines. Without a BlocklistPath it does nothing.
func (r *Resolver) ReloadBlocklist() error {
	if r.cfg.BlocklistPath == "" {
		return nil
	}
	bl, err := loadBlocklist(r.cfg.BlocklistPath)
	if err != nil {
		return err
	}
	r.block.Store(bl)
	r.log.Info("dns: blocklist loaded", "names", len(bl.names), "bad_lines", bl.bad)
	return nil
}

// Stats returns a snapshot of the counters, cache size and upstream health.
func (r *Resolver) Stats() Stats {
	c := &r.stats
	s := Stats{
		Queries: c.queries.Load(), CacheHits: c.cacheHits.Load(), CacheMisses: c.cacheMisses.Load(),
		NegativeHits: c.negativeHits.Load(), Coalesced: c.coalesced.Load(),
		UpstreamQueries: c.upstreamQueries.Load(), UpstreamErrors: c.upstreamErrors.Load(),
		Servfails: c.servfails.Load(), Blocked: c.blocked.Load(), RebindRewrites: c.rebind.Load(),
		RateLimited: c.rateLimited.Load(), Malformed: c.malformed.Load(),
		CacheEntries:    r.cache.len(),
		UpstreamLatency: c.latency.snapshot(),
		Upstreams:       r.upstreams.health(),
	}
	if bl := r.block.Load(); bl != nil {
		s.BlocklistEntries, s.BlocklistBadLines = len(bl.names), bl.bad
	}
	return s
}

// ServeDNS answers one query; see the pipeline in the package comment. It is
// safe for concurrent use.
func (r *Resolver) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	r.stats.queries.Add(1)
	if req.Response {
		r.stats.malformed.Add(1) // a reply sent to us: answering could loop
		return
	}
	if !r.limiter.allow(remoteAddr(w), r.now()) {
		r.stats.rateLimited.Add(1)
		r.writeRcode(w, req, mdns.RcodeRefused)
		return
	}
	if rcode := validate(req); rcode != mdns.RcodeSuccess {
		r.stats.malformed.Add(1)
		r.writeRcode(w, req, rcode)
		return
	}
	q := req.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass}
	do := false
	if opt := req.IsEdns0(); opt != nil && opt.Do() {
		k.flags |= keyDO
		do = true
	}
	if req.CheckingDisabled {
		k.flags |= keyCD
	}

	if r.block.Load().blocked(k.name) {
		r.stats.blocked.Add(1)
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeNameError)
		r.write(w, req, m, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeBlocked, ExtraText: "blocklist"})
		return
	}

	if e, age, ok := r.cache.get(k, r.now()); ok {
		r.stats.cacheHits.Add(1)
		if e.negative {
			r.stats.negativeHits.Add(1)
		}
		r.answer(w, req, e, age)
		return
	}
	r.stats.cacheMisses.Add(1)

	e, joined, err := r.flights.do(k, func() (*entry, error) { return r.resolve(k, do) })
	if joined {
		r.stats.coalesced.Add(1)
	}
	if err != nil {
		r.servfail(w, req, err)
		return
	}
	r.answer(w, req, e, 0)
}

// validate returns the rcode for a query we will not forward, or success.
func validate(req *mdns.Msg) int {
	if req.Opcode != mdns.OpcodeQuery {
		return mdns.RcodeNotImplemented
	}
	if len(req.Question) != 1 || len(req.Answer) != 0 || len(req.Ns) != 0 {
		return mdns.RcodeFormatError
	}
	opts := 0
	for _, rr := range req.Extra {
		if opt, ok := rr.(*mdns.OPT); ok {
			opts++
			if opt.Version() != 0 {
				return mdns.RcodeBadVers
			}
		}
	}
	if opts > 1 {
		return mdns.RcodeFormatError // RFC 6891 §6.1.1
	}
	switch req.Question[0].Qtype {
	case mdns.TypeAXFR, mdns.TypeIXFR, mdns.TypeMAILA, mdns.TypeMAILB:
		return mdns.RcodeNotImplemented
	}
	return mdns.RcodeSuccess
}

// resolve asks the upstreams for k and turns the reply into an entry, which
// it caches when the reply is cacheable.
func (r *Resolver) resolve(k cacheKey, do bool) (*entry, error) {
	m := new(mdns.Msg)
	m.RecursionDesired = true
	m.AuthenticatedData = true // RFC 6840 §5.7: tell us whether it validated
	m.CheckingDisabled = k.flags&keyCD != 0
	m.Question = []mdns.Question{{Name: k.name, Qtype: k.qtype, Qclass: k.qclass}}
	m.SetEdns0(upstreamUDPSize, do) // a fresh OPT: no client option (ECS…) is forwarded
	reply, err := r.upstreams.resolve(m)
	if err != nil {
		return nil, err
	}
	e, err := r.newEntry(k, reply)
	if err != nil {
		return nil, fmt.Errorf("dns: pack reply: %w", err)
	}
	r.cache.put(e)
	return e, nil
}

// servfail answers SERVFAIL with an RFC 8914 extended error saying why.
func (r *Resolver) servfail(w mdns.ResponseWriter, req *mdns.Msg, err error) {
	r.stats.servfails.Add(1)
	ede := &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeNetworkError, ExtraText: "upstreams unreachable"}
	if isTimeout(err) {
		ede = &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeNoReachableAuthority, ExtraText: "upstreams timed out"}
	}
	m := new(mdns.Msg)
	m.SetRcode(req, mdns.RcodeServerFailure)
	r.write(w, req, m, ede)
}

// writeRcode answers req with an empty message carrying rcode.
func (r *Resolver) writeRcode(w mdns.ResponseWriter, req *mdns.Msg, rcode int) {
	m := new(mdns.Msg)
	m.SetRcode(req, rcode)
	if rcode == mdns.RcodeNotImplemented {
		m.Opcode = req.Opcode
	}
	r.write(w, req, m)
}
