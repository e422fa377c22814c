package dns

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// fakeExchange answers in-process, with a behaviour picked by the query
// name's length: an answer, a denied address, NXDOMAIN, REFUSED, a UDP
// truncation, an error.
func fakeExchange(ctx context.Context, u Upstream, tcp bool, m *mdns.Msg) (*mdns.Msg, error) {
	q := m.Question[0]
	r := new(mdns.Msg)
	r.SetReply(m)
	hdr := mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: q.Qclass, Ttl: uint32(len(q.Name))}
	soa := &mdns.SOA{Hdr: mdns.RR_Header{Name: "example.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 60},
		Ns: "ns.example.", Mbox: "host.example.", Minttl: 30}
	switch len(q.Name) % 6 {
	case 0:
		r.Answer = []mdns.RR{&mdns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 1)}}
	case 1:
		r.Answer = []mdns.RR{&mdns.A{Hdr: hdr, A: net.IPv4(10, 0, 0, 1)}}
	case 2:
		r.Rcode = mdns.RcodeNameError
		r.Ns = []mdns.RR{soa}
	case 3:
		r.Rcode = mdns.RcodeRefused
	case 4:
		if !tcp {
			r.Truncated = true
		} else {
			r.Answer = []mdns.RR{&mdns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 2)}}
		}
	case 5:
		return nil, errors.New("network is down")
	}
	if opt := m.IsEdns0(); opt != nil {
		r.SetEdns0(upstreamUDPSize, opt.Do())
	}
	return r, nil
}

func fuzzSeeds(f *testing.F) {
	add := func(m *mdns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	add(question("www.example.", mdns.TypeA, 0, false))
	add(question("blocked.example.", mdns.TypeA, 1232, true))
	add(question("Deny.Example.", mdns.TypeAAAA, 4096, false))
	ecs := question("x.example.", mdns.TypeA, 1232, false)
	ecs.IsEdns0().Option = []mdns.EDNS0{&mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 51, 100, 0).To4()}}
	add(ecs)
	two := question("a.example.", mdns.TypeA, 0, false)
	two.Question = append(two.Question, two.Question[0])
	add(two)
	notify := question("example.", mdns.TypeSOA, 0, false)
	notify.Opcode = mdns.OpcodeNotify
	add(notify)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
}

func FuzzServeDNS(f *testing.F) {
	fuzzSeeds(f)
	path := filepath.Join(f.TempDir(), "block.txt")
	if err := os.WriteFile(path, []byte("blocked.example\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	clock := newClock()
	r := testResolver(f, clock, Config{Upstreams: []string{"192.0.2.53", "tls://192.0.2.54"}, Rebind: true, BlocklistPath: path, CacheEntries: 64, MemberQPS: 1000, MemberBurst: 1000}, Options{Exchange: fakeExchange})
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(mdns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		w := udpFrom("10.99.0.2")
		if req.Id%2 == 1 {
			w = tcpFrom("fd00:99::2")
		}
		r.ServeDNS(w, req)
		clock.Advance(secs(0.25))
		if w.err != nil {
			t.Fatalf("reply does not pack: %v", w.err)
		}
		if len(w.msgs) > 1 {
			t.Fatalf("%d replies to one query", len(w.msgs))
		}
		if len(w.msgs) == 0 {
			if !req.Response {
				t.Fatal("a query went unanswered")
			}
			return
		}
		if got := w.msgs[0]; got.Id != req.Id || !got.Response {
			t.Fatalf("reply id %d response %v to query id %d", got.Id, got.Response, req.Id)
		}
		if _, tcp := w.remote.(*net.TCPAddr); !tcp && w.sizes[0] > upstreamUDPSize {
			t.Fatalf("UDP reply of %d bytes", w.sizes[0])
		}
	})
}

func FuzzBlocklist(f *testing.F) {
	f.Add("ads.example\n0.0.0.0 a.example b.example # c\n")
	f.Add("127.0.0.1 localhost\n::1 ip6-localhost\n# x\n\n")
	f.Add("||ads.example^\n*.x.example\nbad..name\n")
	f.Add(strings.Repeat("a.", 3000))
	f.Fuzz(func(t *testing.T, s string) {
		bl, err := parseBlocklist(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		if bl.bad < 0 || bl.bad > strings.Count(s, "\n")+1 {
			t.Fatalf("%d bad lines in %d lines", bl.bad, strings.Count(s, "\n")+1)
		}
		for name := range bl.names {
			if name != strings.ToLower(name) || !strings.HasSuffix(name, ".") || name == "." {
				t.Fatalf("stored name %q is not a lowercase FQDN", name)
			}
			if !bl.blocked(name) || !bl.blocked("sub."+name) {
				t.Fatalf("%q or its subdomain is not blocked", name)
			}
		}
	})
}

func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{"1.1.1.1", "[2606:4700::1111]:53", "tls://1.1.1.1#cloudflare-dns.com", "https://x", "fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUpstream(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dns: upstream") {
				t.Fatalf("error %q lacks the prefix", err)
			}
			return
		}
		again, err := ParseUpstream(u.String())
		if err != nil || again != u {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, u, u.String(), again, err)
		}
	})
}
