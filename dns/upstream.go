package dns

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Upstream health. An upstream that fails an exchange is marked down and
// only used after the up ones; when its retry time comes, routineProbe asks
// it for the root NS set (no member's question) and marks it up on success,
// so no member query waits on a dead upstream to find out. Each failed probe
// doubles the retry interval, up to retryMax.
//
//	up ──exchange fails──▶ down ──retryAt passes──▶ probing
//	 ▲                      ▲                         │
//	 └────probe succeeds────┼─────────────────────────┘
//	                        └──probe fails (backoff ×2)┘
const (
	upstreamUDPSize = 1232 // EDNS buffer size we advertise (DNS flag day 2020)
	retryMin        = time.Second
	retryMax        = time.Minute
)

// ExchangeFunc sends query m to upstream u and returns its reply: over UDP,
// or over TCP when tcp is set. A TLS upstream is always exchanged over TLS.
// It must honour ctx's deadline and must not modify m.
type ExchangeFunc func(ctx context.Context, u Upstream, tcp bool, m *mdns.Msg) (*mdns.Msg, error)

var (
	errUpstreamRcode    = errors.New("refused the query")
	errUpstreamMismatch = errors.New("reply does not match the query")
)

// upstream is one configured upstream and its health.
type upstream struct {
	u               Upstream
	queries, errors atomic.Uint64

	// Guarded by upstreamSet.mu.
	down      bool
	probing   bool
	fails     int // consecutive failures
	retryAt   time.Time
	lastErr   string
	lastErrAt time.Time
}

// upstreamSet tries upstreams in order of health and tracks that health.
type upstreamSet struct {
	log      *slog.Logger
	now      func() time.Time
	exchange ExchangeFunc
	timeout  time.Duration
	stats    *counters
	onProbe  func() // test hook: called when a probe has finished

	mu   sync.Mutex
	list []*upstream
}

// order returns the upstreams to try: the up ones in configuration order,
// then the down ones soonest-retry first. It starts a probe of each down
// upstream whose retry time has passed.
func (s *upstreamSet) order() []*upstream {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*upstream, 0, len(s.list))
	var down []*upstream
	for _, u := range s.list {
		if !u.down {
			out = append(out, u)
			continue
		}
		down = append(down, u)
		if !u.probing && !now.Before(u.retryAt) {
			u.probing = true
			go s.routineProbe(u)
		}
	}
	slices.SortStableFunc(down, func(a, b *upstream) int { return a.retryAt.Compare(b.retryAt) })
	return append(out, down...)
}

// routineProbe checks a down upstream with a query for the root NS set.
func (s *upstreamSet) routineProbe(u *upstream) {
	m := new(mdns.Msg)
	m.SetQuestion(".", mdns.TypeNS)
	m.SetEdns0(upstreamUDPSize, false)
	_, err := s.try(u, m)
	s.mu.Lock()
	u.probing = false
	s.mu.Unlock()
	if s.onProbe != nil {
		s.onProbe()
	}
	_ = err // try recorded it
}

// resolve sends m to the upstreams in order until one answers.
func (s *upstreamSet) resolve(m *mdns.Msg) (*mdns.Msg, error) {
	var errs []error
	for _, u := range s.order() {
		r, err := s.try(u, m)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// try exchanges m with one upstream, over TCP again when the UDP reply is
// truncated, and records the outcome in the upstream's health.
func (s *upstreamSet) try(u *upstream, q *mdns.Msg) (*mdns.Msg, error) {
	m := q.Copy()
	r, err := s.exchangeOnce(u, false, m)
	if err == nil && r.Truncated && !u.u.TLS {
		r, err = s.exchangeOnce(u, true, m)
		if err == nil && r.Truncated {
			err = errors.New("truncated reply over TCP")
		}
	}
	if err != nil {
		err = fmt.Errorf("dns: upstream %s: %w", u.u, err)
		s.failed(u, err)
		return nil, err
	}
	s.succeeded(u)
	return r, nil
}

// exchangeOnce does one exchange with a fresh random ID and checks that the
// reply answers the question.
func (s *upstreamSet) exchangeOnce(u *upstream, tcp bool, m *mdns.Msg) (*mdns.Msg, error) {
	m.Id = mdns.Id()
	u.queries.Add(1)
	s.stats.upstreamQueries.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	start := s.now()
	r, err := s.exchange(ctx, u.u, tcp, m)
	if err == nil {
		err = checkReply(m, r)
	}
	if err != nil {
		u.errors.Add(1)
		s.stats.upstreamErrors.Add(1)
		return nil, err
	}
	s.stats.latency.observe(s.now().Sub(start))
	return r, nil
}

// checkReply rejects replies that do not belong to query m, and rcodes that
// say this upstream will not serve us (so the next one should be asked).
func checkReply(m, r *mdns.Msg) error {
	if r == nil || !r.Response || r.Id != m.Id || len(r.Question) != 1 {
		return errUpstreamMismatch
	}
	q, rq := m.Question[0], r.Question[0]
	if rq.Qtype != q.Qtype || rq.Qclass != q.Qclass || !strings.EqualFold(rq.Name, q.Name) {
		return errUpstreamMismatch
	}
	switch {
	case r.Rcode > 0xF: // extended rcodes answer EDNS trouble; we sent plain EDNS 0
		return fmt.Errorf("%w: extended rcode %d", errUpstreamRcode, r.Rcode)
	case r.Rcode == mdns.RcodeRefused || r.Rcode == mdns.RcodeNotImplemented || r.Rcode == mdns.RcodeFormatError:
		return fmt.Errorf("%w: %s", errUpstreamRcode, mdns.RcodeToString[r.Rcode])
	}
	return nil
}

func (s *upstreamSet) failed(u *upstream, err error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	u.fails++
	u.lastErr, u.lastErrAt = err.Error(), now
	u.retryAt = now.Add(min(retryMin<<min(u.fails-1, 16), retryMax))
	if !u.down {
		u.down = true
		s.log.Warn("dns: upstream down", "upstream", u.u.String(), "err", err)
	}
}

func (s *upstreamSet) succeeded(u *upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.fails = 0
	if u.down {
		u.down = false
		s.log.Info("dns: upstream up", "upstream", u.u.String())
	}
}

// health returns each upstream's state, in configuration order.
func (s *upstreamSet) health() []UpstreamHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]UpstreamHealth, len(s.list))
	for i, u := range s.list {
		out[i] = UpstreamHealth{
			Upstream: u.u.String(), Up: !u.down,
			Queries: u.queries.Load(), Errors: u.errors.Load(),
			LastError: u.lastErr, LastErrorAt: u.lastErrAt,
		}
		if u.down {
			out[i].RetryAt = u.retryAt
		}
	}
	return out
}

// netExchange returns the ExchangeFunc that talks to real upstreams with
// mdns.Client: a fresh socket, so a fresh random source port, per exchange.
// base, if not nil, is cloned for DNS over TLS (tests add a root CA).
func netExchange(base *tls.Config, timeout time.Duration) ExchangeFunc {
	return func(ctx context.Context, u Upstream, tcp bool, m *mdns.Msg) (*mdns.Msg, error) {
		c := mdns.Client{Net: "udp", UDPSize: upstreamUDPSize, Timeout: timeout}
		switch {
		case u.TLS:
			c.Net = "tcp-tls"
			c.TLSConfig = tlsConfig(base, u)
		case tcp:
			c.Net = "tcp"
		}
		r, _, err := c.ExchangeContext(ctx, m, u.Addr.String())
		return r, err
	}
}

func tlsConfig(base *tls.Config, u Upstream) *tls.Config {
	c := &tls.Config{}
	if base != nil {
		c = base.Clone()
	}
	c.ServerName = u.ServerName
	if c.ServerName == "" {
		c.ServerName = u.Addr.Addr().WithZone("").String() // verified against the IP SANs
	}
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	return c
}

// isTimeout reports whether err is (or wraps) a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
