package dns

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestCacheTTL(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1", "www.example. 60 IN A 192.0.2.2"))
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}}, Options{})
	steps := []struct {
		name      string
		advance   time.Duration
		wantTTL   []uint32
		upstreams int
	}{
		{"miss fetches", 0, []uint32{300, 60}, 1},
		{"hit at once", 0, []uint32{300, 60}, 1},
		{"hit aged 10.9s", 10900 * time.Millisecond, []uint32{290, 50}, 1},
		{"hit aged 59s", 48100 * time.Millisecond, []uint32{241, 1}, 1},
		{"expired at min TTL", time.Second, []uint32{300, 60}, 2},
		{"fresh again", 30 * time.Second, []uint32{270, 30}, 2},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		got := ask(t, r, question("www.example.", mdns.TypeA, 1232, false))
		if !slices.Equal(ttls(got), s.wantTTL) {
			t.Errorf("%s: TTLs %v, want %v", s.name, ttls(got), s.wantTTL)
		}
		if up.count() != s.upstreams {
			t.Errorf("%s: upstream saw %d queries, want %d", s.name, up.count(), s.upstreams)
		}
	}
	st := r.Stats()
	if st.CacheHits != 4 || st.CacheMisses != 2 || st.Queries != 6 || st.CacheEntries != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestCacheClockStepsBack(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1"))
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}}, Options{})
	ask(t, r, question("www.example.", mdns.TypeA, 0, false))
	clock.Advance(-time.Hour)
	if got := ttls(ask(t, r, question("www.example.", mdns.TypeA, 0, false))); !slices.Equal(got, []uint32{300}) {
		t.Errorf("TTL after clock step back: %v", got)
	}
}

func TestCacheKey(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, zone(t, "www.example. 300 IN A 192.0.2.1", "www.example. 300 IN AAAA 2001:db8::1", "www.example. 300 CH TXT \"chaos\""))
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}}, Options{})
	ask(t, r, question("www.example.", mdns.TypeA, 1232, false))
	tests := []struct {
		name string
		q    func() *mdns.Msg
		hit  bool
	}{
		{"same", func() *mdns.Msg { return question("www.example.", mdns.TypeA, 1232, false) }, true},
		{"other case", func() *mdns.Msg { return question("WwW.ExAmPlE.", mdns.TypeA, 1232, false) }, true},
		{"no EDNS", func() *mdns.Msg { return question("www.example.", mdns.TypeA, 0, false) }, true},
		{"other type", func() *mdns.Msg { return question("www.example.", mdns.TypeAAAA, 1232, false) }, false},
		{"other class", func() *mdns.Msg {
			m := question("www.example.", mdns.TypeTXT, 0, false)
			m.Question[0].Qclass = mdns.ClassCHAOS
			return m
		}, false},
		{"DO set", func() *mdns.Msg { return question("www.example.", mdns.TypeA, 1232, true) }, false},
		{"CD set", func() *mdns.Msg {
			m := question("www.example.", mdns.TypeA, 1232, false)
			m.CheckingDisabled = true
			return m
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.Stats().CacheHits
			q := tt.q()
			got := ask(t, r, q)
			if hit := r.Stats().CacheHits > before; hit != tt.hit {
				t.Errorf("hit = %v, want %v", hit, tt.hit)
			}
			if got.Question[0] != q.Question[0] {
				t.Errorf("question %v, want the client's %v", got.Question[0], q.Question[0])
			}
			if got.Id != q.Id {
				t.Errorf("id %d, want %d", got.Id, q.Id)
			}
		})
	}
}

func TestNegativeCache(t *testing.T) {
	tests := []struct {
		name    string
		soa     string // "" for no SOA in the reply
		rcode   int
		wantTTL uint32 // 0: not cached
	}{
		{"NXDOMAIN SOA minimum", "example. 3600 IN SOA ns. host. 1 7200 900 1209600 60", mdns.RcodeNameError, 60},
		{"NXDOMAIN SOA TTL", "example. 30 IN SOA ns. host. 1 7200 900 1209600 900", mdns.RcodeNameError, 30},
		{"NODATA SOA minimum", "example. 3600 IN SOA ns. host. 1 7200 900 1209600 120", mdns.RcodeSuccess, 120},
		{"capped at an hour", "example. 86400 IN SOA ns. host. 1 7200 900 1209600 86400", mdns.RcodeNameError, 3600},
		{"NXDOMAIN without SOA", "", mdns.RcodeNameError, 0},
		{"NODATA without SOA", "", mdns.RcodeSuccess, 0},
		{"SOA TTL zero", "example. 0 IN SOA ns. host. 1 7200 900 1209600 60", mdns.RcodeNameError, 0},
		{"SERVFAIL", "example. 3600 IN SOA ns. host. 1 7200 900 1209600 60", mdns.RcodeServerFailure, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			up := startUpstream(t, func(w mdns.ResponseWriter, req *mdns.Msg) {
				m := new(mdns.Msg)
				m.SetRcode(req, tt.rcode)
				if tt.soa != "" {
					soa, _ := mdns.NewRR(tt.soa)
					m.Ns = []mdns.RR{soa}
				}
				_ = w.WriteMsg(m)
			})
			r := testResolver(t, clock, Config{Upstreams: []string{up.addr}}, Options{})
			q := func() *mdns.Msg { return question("nothing.example.", mdns.TypeA, 1232, false) }
			first := ask(t, r, q())
			if first.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[first.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if tt.soa != "" && tt.wantTTL > 0 && first.Ns[0].Header().Ttl != tt.wantTTL {
				t.Errorf("SOA TTL served %d, want the negative TTL %d", first.Ns[0].Header().Ttl, tt.wantTTL)
			}
			clock.Advance(time.Duration(max(tt.wantTTL, 1)-1) * time.Second)
			second := ask(t, r, q())
			wantQueries := 1
			if tt.wantTTL == 0 {
				wantQueries = 2
			} else {
				if got := second.Ns[0].Header().Ttl; got != 1 {
					t.Errorf("SOA TTL after %ds: %d, want 1", tt.wantTTL-1, got)
				}
				if r.Stats().NegativeHits != 1 {
					t.Errorf("negative hits %d, want 1", r.Stats().NegativeHits)
				}
			}
			if up.count() != wantQueries {
				t.Fatalf("upstream saw %d queries, want %d", up.count(), wantQueries)
			}
			clock.Advance(time.Second)
			ask(t, r, q())
			if up.count() != wantQueries+1 {
				t.Errorf("after expiry upstream saw %d queries, want %d", up.count(), wantQueries+1)
			}
		})
	}
}

func TestCacheEvictsThroughResolver(t *testing.T) {
	clock := newClock()
	up := startUpstream(t, zone(t, "a.example. 300 IN A 192.0.2.1", "b.example. 300 IN A 192.0.2.2", "c.example. 300 IN A 192.0.2.3"))
	r := testResolver(t, clock, Config{Upstreams: []string{up.addr}, CacheEntries: 2}, Options{})
	for _, n := range []string{"a", "b", "a", "c", "a", "b"} { // c evicts b (a was used); b again misses
		ask(t, r, question(n+".example.", mdns.TypeA, 0, false))
	}
	if got := up.count(); got != 4 {
		t.Errorf("upstream saw %d queries, want 4 (a, b, c, b)", got)
	}
	if n := r.Stats().CacheEntries; n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
}

func testEntry(name string, ttl uint32, size int) *entry {
	return &entry{key: cacheKey{name: name, qtype: mdns.TypeA, qclass: mdns.ClassINET}, ttl: ttl, wire: make([]byte, size), stored: newClock().Now()}
}

func TestCacheLRU(t *testing.T) {
	c := newCache(3)
	now := newClock().Now()
	for _, n := range []string{"a.", "b.", "c."} {
		c.put(testEntry(n, 60, 10))
	}
	c.get(cacheKey{name: "a.", qtype: mdns.TypeA, qclass: mdns.ClassINET}, now) // a is now the most recent
	c.put(testEntry("d.", 60, 10))                                              // evicts b
	for n, want := range map[string]bool{"a.": true, "b.": false, "c.": true, "d.": true} {
		if _, _, ok := c.get(cacheKey{name: n, qtype: mdns.TypeA, qclass: mdns.ClassINET}, now); ok != want {
			t.Errorf("%s cached = %v, want %v", n, ok, want)
		}
	}
	c.put(testEntry("a.", 60, 20)) // replace: count and bytes stay right
	if c.len() != 3 || c.bytes != 40 {
		t.Errorf("len %d bytes %d, want 3 and 40", c.len(), c.bytes)
	}
	c.put(testEntry("zero.", 0, 10))
	if c.len() != 3 {
		t.Error("a TTL 0 entry was cached")
	}
}

func TestCacheByteBound(t *testing.T) {
	c := newCache(4) // 4 KiB
	c.put(testEntry("big.", 60, 5000))
	if c.len() != 0 {
		t.Fatal("an entry larger than the whole budget was cached")
	}
	for i := range 4 {
		c.put(testEntry(fmt.Sprintf("e%d.", i), 60, 1000))
	}
	c.put(testEntry("f.", 60, 1500)) // 5500 bytes: two oldest go
	if c.len() != 3 || c.bytes != 3500 {
		t.Errorf("len %d bytes %d, want 3 and 3500", c.len(), c.bytes)
	}
}

// lruModel is the slow reference model: a slice, most recent first.
type lruModel struct {
	max  int
	keys []string
	exp  map[string]time.Time
}

func (m *lruModel) get(k string, now time.Time) bool {
	i := slices.Index(m.keys, k)
	if i < 0 {
		return false
	}
	m.keys = slices.Delete(m.keys, i, i+1)
	if !now.Before(m.exp[k]) {
		return false
	}
	m.keys = slices.Insert(m.keys, 0, k)
	return true
}

func (m *lruModel) put(k string, ttl uint32, now time.Time) {
	if ttl == 0 {
		return
	}
	if i := slices.Index(m.keys, k); i >= 0 {
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	m.keys = slices.Insert(m.keys, 0, k)
	m.exp[k] = now.Add(time.Duration(ttl) * time.Second)
	if len(m.keys) > m.max {
		m.keys = m.keys[:m.max]
	}
}

func TestCacheMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	clock := newClock()
	c := newCache(8)
	model := &lruModel{max: 8, exp: map[string]time.Time{}}
	for i := range 20000 {
		k := fmt.Sprintf("n%d.", rng.IntN(16))
		key := cacheKey{name: k, qtype: mdns.TypeA, qclass: mdns.ClassINET}
		switch rng.IntN(3) {
		case 0:
			ttl := uint32(rng.IntN(5))
			e := testEntry(k, ttl, 10)
			e.stored = clock.Now()
			c.put(e)
			model.put(k, ttl, clock.Now())
		case 1:
			_, _, got := c.get(key, clock.Now())
			if want := model.get(k, clock.Now()); got != want {
				t.Fatalf("step %d: get(%s) = %v, model says %v", i, k, got, want)
			}
		case 2:
			clock.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
		}
		if c.len() != len(model.keys) {
			t.Fatalf("step %d: cache holds %d, model %d", i, c.len(), len(model.keys))
		}
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	c := newCache(10)
	c.put(testEntry("www.example.", 60, 10))
	now := newClock().Now()
	k := cacheKey{name: "www.example.", qtype: mdns.TypeA, qclass: mdns.ClassINET}
	bl, _ := parseBlocklist(stringsReader("ads.example\n"))
	l := newLimiter(1e9, 1e9)
	a := mustAddr("10.99.0.2")
	tests := []struct {
		name string
		fn   func()
	}{
		{"cache get", func() { c.get(k, now) }},
		{"blocklist walk", func() { bl.blocked("a.b.c.www.example.") }},
		{"rate limit", func() { l.allow(a, now) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
			t.Errorf("%s: %v allocations, want 0", tt.name, n)
		}
	}
}
