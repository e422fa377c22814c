package dns

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

func TestUpstreamQueryShape(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}}, Options{})
	q := question("WWW.Example.", mdns.TypeA, 512, false)
	q.Id = 4242
	ask(t, r, q)
	got := up.seen()[0].msg
	opt := got.IsEdns0()
	switch {
	case opt == nil:
		t.Fatal("upstream query has no EDNS")
	case opt.UDPSize() != 1232:
		t.Errorf("upstream UDP size %d, want 1232", opt.UDPSize())
	case !got.RecursionDesired:
		t.Error("RD not set upstream")
	case got.Question[0].Name != "www.example.":
		t.Errorf("upstream qname %q, want it lowercased", got.Question[0].Name)
	case up.seen()[0].tcp:
		t.Error("first exchange should be UDP")
	}
}

// TestPrivacy: no client EDNS option reaches the upstream, IDs are random,
// and each exchange has its own socket.
func TestPrivacy(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}}, Options{})
	const n = 16
	for i := range n {
		q := question(fmt.Sprintf("n%d.example.", i), mdns.TypeA, 1232, i%2 == 0)
		q.Id = 7
		opt := q.IsEdns0()
		opt.Option = append(opt.Option,
			&mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 51, 100, 0).To4()},
			&mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"},
			&mdns.EDNS0_PADDING{Padding: make([]byte, 16)},
		)
		ask(t, r, q)
	}
	ids, ports := map[uint16]bool{}, map[uint16]bool{}
	for _, s := range up.seen() {
		for _, o := range s.msg.IsEdns0().Option {
			t.Errorf("upstream saw EDNS option %d (%T)", o.Option(), o)
		}
		ids[s.msg.Id] = true
		ports[s.remote.Port()] = true
	}
	if len(up.seen()) != n {
		t.Fatalf("upstream saw %d queries, want %d", len(up.seen()), n)
	}
	if len(ids) < n-2 {
		t.Errorf("%d distinct upstream IDs in %d queries: not random", len(ids), n)
	}
	if len(ports) < 2 {
		t.Errorf("all %d exchanges used one source port", n)
	}
}

func TestTruncatedUpstreamRetriesTCP(t *testing.T) {
	clock := newClock()
	full := zone(t, "big.example. 300 IN TXT \"one\"", "big.example. 300 IN TXT \"two\"")
	up := startUpstream(t, func(w mdns.ResponseWriter, req *mdns.Msg) {
		if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
			full(w, req)
			return
		}
		m := new(mdns.Msg)
		m.SetReply(req)
		m.Truncated = true
		_ = w.WriteMsg(m)
	})
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}}, Options{})
	got := ask(t, r, question("big.example.", mdns.TypeTXT, 1232, false))
	if len(got.Answer) != 2 || got.Truncated {
		t.Fatalf("answer %v truncated=%v, want both TXT records", got.Answer, got.Truncated)
	}
	seen := up.seen()
	if len(seen) != 2 || seen[0].tcp || !seen[1].tcp {
		t.Fatalf("upstream exchanges %+v, want UDP then TCP", seen)
	}
	if st := r.Stats(); st.UpstreamQueries != 2 || st.UpstreamErrors != 0 {
		t.Errorf("upstream queries %d errors %d, want 2 and 0", st.UpstreamQueries, st.UpstreamErrors)
	}
}

func TestClientTruncation(t *testing.T) {
	var recs []string
	for i := range 100 {
		recs = append(recs, fmt.Sprintf("big.example. 300 IN A 192.0.2.%d", i))
	}
	up := startUpstream(t, zone(t, recs...)) // ~1.6 KB: the upstream answers over TCP
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}}, Options{})
	tests := []struct {
		name    string
		w       *fakeWriter
		udpSize uint16
		max     int
		tc      bool
	}{
		{"udp no edns", udpFrom("10.99.0.2"), 0, 512, true},
		{"udp edns below minimum", udpFrom("10.99.0.2"), 100, 512, true},
		{"udp edns 1232", udpFrom("10.99.0.2"), 1232, 1232, true},
		{"udp edns 4096 capped", udpFrom("10.99.0.2"), 4096, 1232, true},
		{"tcp no edns", tcpFrom("10.99.0.2"), 0, 65535, false},
		{"tcp edns 512", tcpFrom("10.99.0.2"), 512, 65535, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.ServeDNS(tt.w, question("big.example.", mdns.TypeA, tt.udpSize, false))
			got := tt.w.last(t)
			if got.Truncated != tt.tc || tt.w.sizes[0] > tt.max {
				t.Errorf("%d bytes TC=%v, want ≤ %d TC=%v", tt.w.sizes[0], got.Truncated, tt.max, tt.tc)
			}
			if !tt.tc && len(got.Answer) != 100 {
				t.Errorf("%d records over TCP, want 100", len(got.Answer))
			}
			if (got.IsEdns0() != nil) != (tt.udpSize > 0) {
				t.Errorf("reply EDNS %v for a query with udp size %d", got.IsEdns0(), tt.udpSize)
			}
		})
	}
}

func TestDNSSECPassThrough(t *testing.T) {
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}}, Options{})
	tests := []struct {
		name  string
		do    bool
		rrsig bool
	}{
		{"DO set", true, true},
		{"DO clear", false, false},
		{"DO set from cache", true, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ask(t, r, question("www.example.", mdns.TypeA, 1232, tt.do))
			hasSig := false
			for _, rr := range got.Answer {
				hasSig = hasSig || rr.Header().Rrtype == mdns.TypeRRSIG
			}
			if hasSig != tt.rrsig {
				t.Errorf("RRSIG in answer = %v, want %v", hasSig, tt.rrsig)
			}
			if got.IsEdns0().Do() != tt.do {
				t.Error("reply DO bit does not echo the query's")
			}
			if i < 2 {
				if sent := up.seen()[i].msg.IsEdns0().Do(); sent != tt.do {
					t.Errorf("upstream DO = %v, want %v", sent, tt.do)
				}
			}
		})
	}
	if up.count() != 2 {
		t.Errorf("upstream saw %d queries, want 2 (DO and non-DO cached apart)", up.count())
	}
}

func TestCoalescing(t *testing.T) {
	const n = 8
	release := make(chan struct{})
	answer := zone(t, "slow.example. 300 IN A 192.0.2.1")
	up := startUpstream(t, func(w mdns.ResponseWriter, req *mdns.Msg) {
		<-release
		answer(w, req)
	})
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}}, Options{})
	joined := make(chan struct{}, n)
	r.flights.onJoin = func() { joined <- struct{}{} }

	var wg sync.WaitGroup
	replies := make([]*fakeWriter, n)
	for i := range n {
		replies[i] = udpFrom(fmt.Sprintf("10.99.0.%d", i+2))
		wg.Go(func() {
			q := question("slow.example.", mdns.TypeA, 1232, false)
			q.Id = uint16(i)
			r.ServeDNS(replies[i], q)
		})
	}
	for range n - 1 {
		<-joined
	}
	close(release)
	wg.Wait()
	for i, w := range replies {
		got := w.last(t)
		if got.Id != uint16(i) || len(got.Answer) != 1 {
			t.Errorf("client %d: id %d answer %v", i, got.Id, got.Answer)
		}
	}
	if up.count() != 1 {
		t.Errorf("upstream saw %d queries, want 1", up.count())
	}
	if st := r.Stats(); st.Coalesced != n-1 || st.CacheMisses != n {
		t.Errorf("coalesced %d misses %d, want %d and %d", st.Coalesced, st.CacheMisses, n-1, n)
	}
}

func TestRebindProtection(t *testing.T) {
	tests := []struct {
		name    string
		rebind  bool
		records []string
		qtype   uint16
		rewrite bool
	}{
		{"private A", true, []string{"x.example. 60 IN A 10.1.2.3"}, mdns.TypeA, true},
		{"private AAAA", true, []string{"x.example. 60 IN AAAA fd00::1"}, mdns.TypeAAAA, true},
		{"mapped AAAA", true, []string{"x.example. 60 IN AAAA ::ffff:10.1.2.3"}, mdns.TypeAAAA, true},
		{"one of several", true, []string{"x.example. 60 IN A 192.0.2.1", "x.example. 60 IN A 10.0.0.1"}, mdns.TypeA, true},
		{"public A", true, []string{"x.example. 60 IN A 192.0.2.1"}, mdns.TypeA, false},
		{"TXT untouched", true, []string{"x.example. 60 IN TXT \"10.0.0.1\""}, mdns.TypeTXT, false},
		{"protection off", false, []string{"x.example. 60 IN A 10.1.2.3"}, mdns.TypeA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			up := startUpstream(t, zone(t, tt.records...))
			r := testResolver(t, clock, Config{Upstreams: []string{up.addr}, Rebind: tt.rebind}, Options{})
			for round := 1; round <= 2; round++ { // the second answer comes from the cache
				got := ask(t, r, question("x.example.", tt.qtype, 1232, false))
				if got.Rcode != mdns.RcodeSuccess {
					t.Fatalf("rcode %s", mdns.RcodeToString[got.Rcode])
				}
				if tt.rewrite {
					if len(got.Answer) != 0 || len(got.Ns) != 0 {
						t.Errorf("round %d: rewritten answer still holds %v %v", round, got.Answer, got.Ns)
					}
					if codes := ede(got); len(codes) != 1 || codes[0] != mdns.ExtendedErrorCodeBlocked {
						t.Errorf("round %d: EDE %v, want Blocked", round, codes)
					}
				} else if len(got.Answer) != len(tt.records) {
					t.Errorf("round %d: answer %v, want the records untouched", round, got.Answer)
				}
				want := uint64(0)
				if tt.rewrite {
					want = uint64(round)
				}
				if st := r.Stats(); st.RebindRewrites != want {
					t.Errorf("round %d: rewrites %d, want %d", round, st.RebindRewrites, want)
				}
			}
			if up.count() != 1 {
				t.Errorf("upstream saw %d queries, want 1", up.count())
			}
		})
	}
}

func TestMalformedQueries(t *testing.T) {
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	r := testResolver(t, newClock(), Config{Upstreams: []string{up.addr}}, Options{})
	base := func() *mdns.Msg { return question("www.example.", mdns.TypeA, 0, false) }
	tests := []struct {
		name  string
		q     func() *mdns.Msg
		rcode int // -1: no reply at all
	}{
		{"no question", func() *mdns.Msg { m := base(); m.Question = nil; return m }, mdns.RcodeFormatError},
		{"two questions", func() *mdns.Msg {
			m := base()
			m.Question = append(m.Question, mdns.Question{Name: "b.example.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET})
			return m
		}, mdns.RcodeFormatError},
		{"answer in query", func() *mdns.Msg {
			m := base()
			rr, _ := mdns.NewRR("www.example. 1 IN A 192.0.2.9")
			m.Answer = []mdns.RR{rr}
			return m
		}, mdns.RcodeFormatError},
		{"notify", func() *mdns.Msg { m := base(); m.Opcode = mdns.OpcodeNotify; return m }, mdns.RcodeNotImplemented},
		{"update", func() *mdns.Msg { m := base(); m.Opcode = mdns.OpcodeUpdate; return m }, mdns.RcodeNotImplemented},
		{"status", func() *mdns.Msg { m := base(); m.Opcode = mdns.OpcodeStatus; return m }, mdns.RcodeNotImplemented},
		{"zone transfer", func() *mdns.Msg { return question("example.", mdns.TypeAXFR, 0, false) }, mdns.RcodeNotImplemented},
		{"edns version 1", func() *mdns.Msg {
			m := question("www.example.", mdns.TypeA, 1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, mdns.RcodeBadVers},
		{"two OPT records", func() *mdns.Msg {
			m := question("www.example.", mdns.TypeA, 1232, false)
			m.Extra = append(m.Extra, mdns.Copy(m.Extra[0]))
			return m
		}, mdns.RcodeFormatError},
		{"a response", func() *mdns.Msg { m := base(); m.Response = true; return m }, -1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := udpFrom("10.99.0.2")
			q := tt.q()
			r.ServeDNS(w, q)
			if tt.rcode < 0 {
				if len(w.msgs) != 0 {
					t.Fatalf("answered a response: %v", w.msgs[0])
				}
			} else {
				got := w.last(t)
				if got.Rcode != tt.rcode || got.Id != q.Id || !got.Response {
					t.Errorf("rcode %s id %d, want %s id %d", mdns.RcodeToString[got.Rcode], got.Id, mdns.RcodeToString[tt.rcode], q.Id)
				}
				if got.Opcode != q.Opcode {
					t.Errorf("opcode %d, want the query's %d", got.Opcode, q.Opcode)
				}
			}
			if st := r.Stats(); st.Malformed != uint64(i+1) {
				t.Errorf("malformed %d, want %d", st.Malformed, i+1)
			}
		})
	}
	if up.count() != 0 {
		t.Errorf("malformed queries reached the upstream %d times", up.count())
	}
}

func TestRateLimit(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}, MemberQPS: 2, MemberBurst: 3}, Options{})
	rcode := func(from string) int {
		w := udpFrom(from)
		r.ServeDNS(w, question("www.example.", mdns.TypeA, 0, false))
		return w.last(t).Rcode
	}
	steps := []struct {
		name    string
		from    string
		advance float64 // seconds before the query
		want    int
	}{
		{"burst 1", "10.99.0.2", 0, mdns.RcodeSuccess},
		{"burst 2", "10.99.0.2", 0, mdns.RcodeSuccess},
		{"burst 3", "10.99.0.2", 0, mdns.RcodeSuccess},
		{"over", "10.99.0.2", 0, mdns.RcodeRefused},
		{"other member", "10.99.0.3", 0, mdns.RcodeSuccess},
		{"ipv6 member", "fd00:99::2", 0, mdns.RcodeSuccess},
		{"still empty", "10.99.0.2", 0.4, mdns.RcodeRefused},
		{"refilled one", "10.99.0.2", 0.1, mdns.RcodeSuccess},
		{"empty again", "10.99.0.2", 0, mdns.RcodeRefused},
	}
	for _, s := range steps {
		clock.Advance(secs(s.advance))
		if got := rcode(s.from); got != s.want {
			t.Errorf("%s: %s, want %s", s.name, mdns.RcodeToString[got], mdns.RcodeToString[s.want])
		}
	}
	if st := r.Stats(); st.RateLimited != 3 {
		t.Errorf("rate limited %d, want 3", st.RateLimited)
	}
}

func TestLimiterBounded(t *testing.T) {
	clock := newClock()
	l := newLimiter(10, 10)
	l.max = 4
	for i := range 10 {
		l.allow(netip.AddrFrom4([4]byte{10, 99, 0, byte(i)}), clock.Now())
		if l.len() > 4 {
			t.Fatalf("limiter holds %d buckets, bound 4", l.len())
		}
	}
	// When the table is full, buckets that have refilled are swept, not a
	// busy one.
	l = newLimiter(10, 10)
	l.max = 4
	busy := mustAddr("10.99.1.1")
	for _, a := range []string{"10.99.1.1", "10.99.2.1", "10.99.2.2", "10.99.2.3"} {
		l.allow(mustAddr(a), clock.Now())
	}
	clock.Advance(secs(1.5)) // one second refills a bucket: all four have
	l.allow(busy, clock.Now())
	l.allow(mustAddr("10.99.3.1"), clock.Now())
	if l.len() != 2 || l.buckets[busy] == nil {
		t.Errorf("after sweep %d buckets (busy kept: %v), want 2", l.len(), l.buckets[busy] != nil)
	}
	if !(*limiter)(nil).allow(busy, clock.Now()) {
		t.Error("a nil limiter must allow")
	}
}
