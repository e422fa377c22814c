package dns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// probeDone lets a test wait for the resolver's background probes.
func probeDone(r *Resolver) <-chan struct{} {
	c := make(chan struct{}, 16)
	r.upstreams.onProbe = func() { c <- struct{}{} }
	return c
}

func TestFailoverAndRecovery(t *testing.T) {
	clock := newClock()
	a := startUpstream(t, refuse)
	b := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1", "two.example. 300 IN A 192.0.2.2",
		"three.example. 300 IN A 192.0.2.3", "four.example. 300 IN A 192.0.2.4"))
	r := testResolver(t, clock, Config{Upstreams: []string{a.addr, b.addr}}, Options{})
	probed := probeDone(r)

	if got := ask(t, r, question("www.example.", mdns.TypeA, 0, false)); len(got.Answer) != 1 {
		t.Fatalf("first query: %v", got)
	}
	h := r.Stats().Upstreams[0]
	if h.Up || h.Errors != 1 || !strings.Contains(h.LastError, "REFUSED") || !h.RetryAt.Equal(clock.Now().Add(time.Second)) {
		t.Fatalf("upstream A after REFUSED: %+v", h)
	}
	if strings.Contains(h.LastError, "www.example") {
		t.Errorf("last error leaks the query name: %q", h.LastError)
	}

	ask(t, r, question("two.example.", mdns.TypeA, 0, false))
	if a.count() != 1 || b.count() != 2 {
		t.Fatalf("a down upstream was asked first: a=%d b=%d", a.count(), b.count())
	}

	a.setHandler(zone(t, "four.example. 300 IN A 192.0.2.4"))
	clock.Advance(time.Second)
	ask(t, r, question("three.example.", mdns.TypeA, 0, false)) // starts a probe of A; B answers
	<-probed
	if q := a.seen()[1].msg.Question[0]; q.Name != "." || q.Qtype != mdns.TypeNS {
		t.Errorf("probe asked %v, want . NS (no member's question)", q)
	}
	if !r.Stats().Upstreams[0].Up {
		t.Fatalf("A not up after a good probe: %+v", r.Stats().Upstreams[0])
	}
	ask(t, r, question("four.example.", mdns.TypeA, 0, false))
	if a.count() != 3 || b.count() != 3 {
		t.Errorf("after recovery a=%d b=%d queries, want 3 and 3", a.count(), b.count())
	}
}

func TestProbeBackoff(t *testing.T) {
	clock := newClock()
	a := startUpstream(t, refuse)
	b := startUpstream(t, zone(t, "www.example. 0 IN A 192.0.2.1")) // TTL 0: never cached
	r := testResolver(t, clock, Config{Upstreams: []string{a.addr, b.addr}}, Options{})
	probed := probeDone(r)
	start := clock.Now()
	ask(t, r, question("www.example.", mdns.TypeA, 0, false))
	steps := []struct {
		advance time.Duration
		probe   bool
		retryAt time.Duration // since start
	}{
		{500 * time.Millisecond, false, 1 * time.Second},
		{500 * time.Millisecond, true, 3 * time.Second},
		{time.Second, false, 3 * time.Second},
		{time.Second, true, 7 * time.Second},
		{4 * time.Second, true, 15 * time.Second},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		before := a.count()
		ask(t, r, question("www.example.", mdns.TypeA, 0, false))
		if s.probe {
			<-probed
		}
		if got := a.count() - before; got != map[bool]int{true: 1, false: 0}[s.probe] {
			t.Errorf("step %d: A asked %d times, want probe=%v", i, got, s.probe)
		}
		if got := r.Stats().Upstreams[0].RetryAt.Sub(start); got != s.retryAt {
			t.Errorf("step %d: retry at +%v, want +%v", i, got, s.retryAt)
		}
	}
	if b.count() != len(steps)+1 {
		t.Errorf("B answered %d, want every query (%d)", b.count(), len(steps)+1)
	}
}

func deadPort(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestAllUpstreamsFail(t *testing.T) {
	tests := []struct {
		name     string
		upstream func(t *testing.T) ([]string, ExchangeFunc)
		udpSize  uint16
		wantEDE  []uint16
	}{
		{"refused", func(t *testing.T) ([]string, ExchangeFunc) {
			return []string{startUpstream(t, refuse).addr, startUpstream(t, refuse).addr}, nil
		}, 1232, []uint16{mdns.ExtendedErrorCodeNetworkError}},
		{"port closed", func(t *testing.T) ([]string, ExchangeFunc) {
			return []string{deadPort(t)}, nil
		}, 1232, []uint16{mdns.ExtendedErrorCodeNetworkError}},
		{"timeout", func(t *testing.T) ([]string, ExchangeFunc) {
			return []string{"192.0.2.53", "192.0.2.54"}, func(ctx context.Context, u Upstream, tcp bool, m *mdns.Msg) (*mdns.Msg, error) {
				return nil, context.DeadlineExceeded
			}
		}, 1232, []uint16{mdns.ExtendedErrorCodeNoReachableAuthority}},
		{"client without EDNS", func(t *testing.T) ([]string, ExchangeFunc) {
			return []string{startUpstream(t, refuse).addr}, nil
		}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups, ex := tt.upstream(t)
			r := testResolver(t, newClock(), Config{Upstreams: ups}, Options{Exchange: ex})
			for round := 1; round <= 2; round++ {
				got := ask(t, r, question("www.example.", mdns.TypeA, tt.udpSize, false))
				if got.Rcode != mdns.RcodeServerFailure {
					t.Fatalf("rcode %s, want SERVFAIL", mdns.RcodeToString[got.Rcode])
				}
				if codes := ede(got); !slices.Equal(codes, tt.wantEDE) {
					t.Errorf("EDE %v, want %v", codes, tt.wantEDE)
				}
			}
			st := r.Stats()
			if st.Servfails != 2 || st.UpstreamQueries != uint64(2*len(ups)) || st.UpstreamErrors != st.UpstreamQueries || st.CacheEntries != 0 {
				t.Errorf("stats %+v: want 2 servfails, every upstream asked each time, nothing cached", st)
			}
			for _, h := range st.Upstreams {
				if h.Up || h.LastError == "" {
					t.Errorf("upstream %+v should be down with an error", h)
				}
			}
		})
	}
}

func TestServfailPassThrough(t *testing.T) {
	up := startUpstream(t, func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeServerFailure)
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeDNSBogus})
		_ = w.WriteMsg(m)
	})
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}}, Options{})
	for range 2 {
		got := ask(t, r, question("bogus.example.", mdns.TypeA, 1232, false))
		if got.Rcode != mdns.RcodeServerFailure || !slices.Equal(ede(got), []uint16{mdns.ExtendedErrorCodeDNSBogus}) {
			t.Fatalf("rcode %s EDE %v, want SERVFAIL with the upstream's DNSSEC Bogus", mdns.RcodeToString[got.Rcode], ede(got))
		}
	}
	st := r.Stats()
	if st.Servfails != 2 || up.count() != 2 || !st.Upstreams[0].Up {
		t.Errorf("servfails %d upstream queries %d up %v: want 2, 2 (not cached), up", st.Servfails, up.count(), st.Upstreams[0].Up)
	}
}

func TestCheckReply(t *testing.T) {
	q := question("www.example.", mdns.TypeA, 1232, false)
	q.Id = 99
	reply := func(edit func(m *mdns.Msg)) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetReply(q)
		edit(m)
		return m
	}
	tests := []struct {
		name string
		r    *mdns.Msg
		want error
	}{
		{"good", reply(func(*mdns.Msg) {}), nil},
		{"name case differs", reply(func(m *mdns.Msg) { m.Question[0].Name = "WWW.example." }), nil},
		{"nxdomain", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeNameError }), nil},
		{"nil", nil, errUpstreamMismatch},
		{"not a response", reply(func(m *mdns.Msg) { m.Response = false }), errUpstreamMismatch},
		{"other id", reply(func(m *mdns.Msg) { m.Id = 100 }), errUpstreamMismatch},
		{"other name", reply(func(m *mdns.Msg) { m.Question[0].Name = "evil.example." }), errUpstreamMismatch},
		{"other type", reply(func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeAAAA }), errUpstreamMismatch},
		{"no question", reply(func(m *mdns.Msg) { m.Question = nil }), errUpstreamMismatch},
		{"refused", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeRefused }), errUpstreamRcode},
		{"notimp", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeNotImplemented }), errUpstreamRcode},
		{"formerr", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeFormatError }), errUpstreamRcode},
		{"badvers", reply(func(m *mdns.Msg) { m.Rcode = mdns.RcodeBadVers }), errUpstreamRcode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkReply(q, tt.r); !errors.Is(err, tt.want) {
				t.Errorf("checkReply = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLatencyHistogram(t *testing.T) {
	clock := newClock()
	answer := func(ctx context.Context, u Upstream, tcp bool, m *mdns.Msg) (*mdns.Msg, error) {
		clock.Advance(30 * time.Millisecond)
		r := new(mdns.Msg)
		r.SetReply(m)
		return r, nil
	}
	r := testResolver(t, clock, Config{Upstreams: []string{"192.0.2.53"}}, Options{Exchange: answer})
	ask(t, r, question("a.example.", mdns.TypeA, 0, false))
	ask(t, r, question("b.example.", mdns.TypeA, 0, false))
	h := r.Stats().UpstreamLatency
	bounds := LatencyBuckets()
	if len(h.Bounds) != len(bounds) || len(h.Counts) != len(bounds) {
		t.Fatalf("histogram shape %+v", h)
	}
	for i, b := range bounds {
		want := uint64(0)
		if b >= 0.03 {
			want = 2
		}
		if h.Counts[i] != want {
			t.Errorf("bucket ≤%v: %d, want %d", b, h.Counts[i], want)
		}
	}
	if h.Count != 2 || h.Sum < 0.0599 || h.Sum > 0.0601 {
		t.Errorf("count %d sum %v, want 2 and 0.06", h.Count, h.Sum)
	}
	h.Bounds[0] = 42
	if LatencyBuckets()[0] == 42 {
		t.Error("LatencyBuckets shares its slice")
	}
}

// tlsUpstream starts a DNS-over-TLS server on 127.0.0.1 with a self-signed
// certificate for 127.0.0.1 and dns.test, and returns its address and a
// pool that trusts it.
func tlsUpstream(t *testing.T, h mdns.HandlerFunc) (string, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dns.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"dns.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	started, done := make(chan struct{}), make(chan struct{})
	srv := &mdns.Server{Listener: ln, Net: "tcp-tls", Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String(), pool
}

func TestDNSOverTLS(t *testing.T) {
	addr, pool := tlsUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	tests := []struct {
		name, upstream string
		roots          *x509.CertPool
		ok             bool
		errText        string
	}{
		{"verified by IP", "tls://" + addr, pool, true, ""},
		{"verified by name", "tls://" + addr + "#dns.test", pool, true, ""},
		{"wrong name", "tls://" + addr + "#other.test", pool, false, "certificate"},
		{"untrusted", "tls://" + addr, x509.NewCertPool(), false, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testResolver(t, newClock(), Config{Upstreams: []string{tt.upstream}}, Options{TLSConfig: &tls.Config{RootCAs: tt.roots}})
			got := ask(t, r, question("www.example.", mdns.TypeA, 1232, false))
			if ok := got.Rcode == mdns.RcodeSuccess && len(got.Answer) == 1; ok != tt.ok {
				t.Fatalf("answer %v rcode %s, want success=%v", got.Answer, mdns.RcodeToString[got.Rcode], tt.ok)
			}
			if h := r.Stats().Upstreams[0]; !strings.Contains(h.LastError, tt.errText) || (tt.errText == "") != (h.LastError == "") {
				t.Errorf("last error %q, want one mentioning %q", h.LastError, tt.errText)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	base := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: "ignored"}
	tests := []struct {
		name string
		u    Upstream
		base *tls.Config
		sni  string
		min  uint16
	}{
		{"ip", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:853"), TLS: true}, nil, "1.1.1.1", tls.VersionTLS12},
		{"name", Upstream{Addr: netip.MustParseAddrPort("1.1.1.1:853"), TLS: true, ServerName: "one.one.one.one"}, nil, "one.one.one.one", tls.VersionTLS12},
		{"base kept", Upstream{Addr: netip.MustParseAddrPort("[2606:4700::1111]:853"), TLS: true}, base, "2606:4700::1111", tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tlsConfig(tt.base, tt.u)
			if c.ServerName != tt.sni || c.MinVersion != tt.min {
				t.Errorf("server name %q min %x, want %q %x", c.ServerName, c.MinVersion, tt.sni, tt.min)
			}
		})
	}
	if base.ServerName != "ignored" {
		t.Error("the base config was modified")
	}
}
