package dns

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeClock is the injected clock: tests advance it instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testUpstream is an authoritative test server on 127.0.0.1, UDP and TCP on
// one port, run by miekg's own server in the test process.
type testUpstream struct {
	addr string

	mu      sync.Mutex
	handle  mdns.HandlerFunc
	queries []seenQuery
}

// seenQuery is one query as the upstream received it.
type seenQuery struct {
	msg    *mdns.Msg
	tcp    bool
	remote netip.AddrPort
}

func startUpstream(t *testing.T, h mdns.HandlerFunc) *testUpstream {
	t.Helper()
	pc, ln, err := listenPair(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{addr: ln.Addr().String(), handle: h}
	for _, srv := range []*mdns.Server{{PacketConn: pc}, {Listener: ln}} {
		srv.Handler = mdns.HandlerFunc(u.serve)
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			_ = srv.Shutdown()
			<-done
		})
	}
	return u
}

func (u *testUpstream) serve(w mdns.ResponseWriter, m *mdns.Msg) {
	q := seenQuery{msg: m.Copy()}
	switch a := w.RemoteAddr().(type) {
	case *net.TCPAddr:
		q.tcp, q.remote = true, a.AddrPort()
	case *net.UDPAddr:
		q.remote = a.AddrPort()
	}
	u.mu.Lock()
	u.queries = append(u.queries, q)
	h := u.handle
	u.mu.Unlock()
	h(w, m)
}

func (u *testUpstream) setHandler(h mdns.HandlerFunc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.handle = h
}

func (u *testUpstream) seen() []seenQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenQuery(nil), u.queries...)
}

func (u *testUpstream) count() int { return len(u.seen()) }

const testSOA = "example. 3600 IN SOA ns.example. host.example. 1 7200 900 1209600 60"

// zone answers from records in zone-file syntax: the records matching name
// and type, NODATA (with testSOA) if the name has other types, NXDOMAIN
// (with testSOA) otherwise. Queries with DO get an RRSIG along.
func zone(t testing.TB, records ...string) mdns.HandlerFunc {
	var rrs []mdns.RR
	for _, s := range records {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test record %q: %v", s, err)
		}
		rrs = append(rrs, rr)
	}
	soa, _ := mdns.NewRR(testSOA)
	return func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		exists := false
		for _, rr := range rrs {
			if strings.EqualFold(rr.Header().Name, q.Name) {
				exists = true
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, mdns.Copy(rr))
				}
			}
		}
		if len(m.Answer) == 0 {
			m.Ns = []mdns.RR{mdns.Copy(soa)}
			if !exists {
				m.Rcode = mdns.RcodeNameError
			}
		}
		if opt := req.IsEdns0(); opt != nil {
			if opt.Do() && len(m.Answer) > 0 {
				m.Answer = append(m.Answer, &mdns.RRSIG{
					Hdr:         mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeRRSIG, Class: mdns.ClassINET, Ttl: m.Answer[0].Header().Ttl},
					TypeCovered: q.Qtype, Algorithm: mdns.ECDSAP256SHA256, Labels: 2,
					OrigTtl: m.Answer[0].Header().Ttl, Expiration: 2000000000, Inception: 1700000000,
					KeyTag: 1, SignerName: "example.", Signature: "AAAA",
				})
			}
			m.SetEdns0(opt.UDPSize(), opt.Do())
		}
		if _, tcp := w.RemoteAddr().(*net.TCPAddr); !tcp {
			size := mdns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	}
}

// refuse answers REFUSED to everything.
func refuse(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetRcode(req, mdns.RcodeRefused)
	_ = w.WriteMsg(m)
}

// fakeWriter records what the resolver writes, as it would arrive on the
// wire (packed, then unpacked again).
type fakeWriter struct {
	remote net.Addr
	msgs   []*mdns.Msg
	sizes  []int
	err    error // first pack or unpack error
}

func udpFrom(ip string) *fakeWriter {
	return &fakeWriter{remote: net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 40000))}
}

func tcpFrom(ip string) *fakeWriter {
	return &fakeWriter{remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 40000))}
}

func (w *fakeWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr { return w.remote }
func (w *fakeWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err == nil {
		out := new(mdns.Msg)
		if err = out.Unpack(b); err == nil {
			w.msgs = append(w.msgs, out)
			w.sizes = append(w.sizes, len(b))
			return nil
		}
	}
	if w.err == nil {
		w.err = err
	}
	return err
}
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

var _ mdns.ResponseWriter = (*fakeWriter)(nil)

// last returns the one reply written, failing the test otherwise.
func (w *fakeWriter) last(t testing.TB) *mdns.Msg {
	t.Helper()
	if w.err != nil {
		t.Fatalf("reply did not pack: %v", w.err)
	}
	if len(w.msgs) != 1 {
		t.Fatalf("got %d replies, want 1", len(w.msgs))
	}
	return w.msgs[0]
}

// question builds a query; udpSize 0 means no EDNS.
func question(name string, qtype uint16, udpSize uint16, do bool) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if udpSize > 0 {
		m.SetEdns0(udpSize, do)
	}
	return m
}

// testResolver returns a resolver on the given upstream addresses with the
// fake clock, no rate limit unless cfg sets one, and rebinding protection on
// with 10/8 and fd00::/8 denied.
func testResolver(t testing.TB, clock *fakeClock, cfg Config, opts Options) *Resolver {
	t.Helper()
	if cfg.MemberQPS == 0 {
		cfg.MemberQPS = -1
	}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	if opts.Deny == nil {
		opts.Deny = func(a netip.Addr) bool {
			return netip.MustParsePrefix("10.0.0.0/8").Contains(a) || netip.MustParsePrefix("fd00::/8").Contains(a)
		}
	}
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ask sends q through r from a UDP client with the default address.
func ask(t testing.TB, r *Resolver, q *mdns.Msg) *mdns.Msg {
	t.Helper()
	w := udpFrom("10.99.0.2")
	r.ServeDNS(w, q)
	return w.last(t)
}

// ttls returns the TTLs of the answer section.
func ttls(m *mdns.Msg) []uint32 {
	var out []uint32
	for _, rr := range m.Answer {
		out = append(out, rr.Header().Ttl)
	}
	return out
}

// ede returns the extended error codes of m's OPT.
func ede(m *mdns.Msg) []uint16 {
	var out []uint16
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*mdns.EDNS0_EDE); ok {
				out = append(out, e.InfoCode)
			}
		}
	}
	return out
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
