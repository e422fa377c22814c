package dns

import (
	"fmt"
	"net"
	"testing"

	mdns "github.com/miekg/dns"
)

// packWriter packs each reply into a reused buffer, as miekg's server does
// before writing it, and drops it.
type packWriter struct {
	fakeWriter
	buf []byte
}

func (w *packWriter) WriteMsg(m *mdns.Msg) error {
	_, err := m.PackBuffer(w.buf)
	return err
}

func benchResolver(b *testing.B) (*Resolver, *mdns.Msg) {
	r := testResolver(b, newClock(), Config{Upstreams: []string{"192.0.2.53"}}, Options{Exchange: fakeExchange})
	q := question("www.example.com.", mdns.TypeA, 1232, false) // len 16: an answer
	w := udpFrom("10.99.0.2")
	r.ServeDNS(w, q)
	if got := w.last(b); len(got.Answer) != 1 {
		b.Fatalf("priming query: %v", got)
	}
	return r, q
}

// BenchmarkCacheHit is a whole cached query through ServeDNS: lookup, reply
// built from the cached message, TTLs aged, OPT added, packed.
func BenchmarkCacheHit(b *testing.B) {
	r, q := benchResolver(b)
	w := &packWriter{fakeWriter: fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2), Port: 40000}}, buf: make([]byte, 2048)}
	b.ReportAllocs()
	for b.Loop() {
		r.ServeDNS(w, q)
	}
	if st := r.Stats(); st.CacheMisses != 1 {
		b.Fatalf("%d misses", st.CacheMisses)
	}
}

// BenchmarkCacheHitParallel is BenchmarkCacheHit from all CPUs at once.
func BenchmarkCacheHitParallel(b *testing.B) {
	r, q := benchResolver(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &packWriter{fakeWriter: fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2), Port: 40000}}, buf: make([]byte, 2048)}
		for pb.Next() {
			r.ServeDNS(w, q)
		}
	})
}

// BenchmarkCacheLookup is the cache lookup alone (no allocation).
func BenchmarkCacheLookup(b *testing.B) {
	c := newCache(1000)
	c.put(testEntry("www.example.com.", 60, 100))
	k := cacheKey{name: "www.example.com.", qtype: mdns.TypeA, qclass: mdns.ClassINET}
	now := newClock().Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := c.get(k, now); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkBlocklistMiss walks a five-label name through a 100k-name list.
func BenchmarkBlocklistMiss(b *testing.B) {
	bl := &blocklist{names: make(map[string]struct{})}
	for i := range 100000 {
		bl.names[fmt.Sprint("n", i)+".example."] = struct{}{}
	}
	b.ReportAllocs()
	for b.Loop() {
		if bl.blocked("a.b.c.www.example.com.") {
			b.Fatal("blocked")
		}
	}
}
