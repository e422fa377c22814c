package e2e

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// authority serves a small zone on the internet host, port 53 (UDP and
// TCP): the upstream the lab's exitd forwards members' queries to.
type authority struct {
	queries atomic.Int64
}

func (a *authority) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	a.queries.Add(1)
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	switch {
	case q.Qtype == mdns.TypeA && q.Name == "www.exit.test.":
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
			A: net.ParseIP(netlab.Internet4)})
	case q.Qtype == mdns.TypeAAAA && q.Name == "www.exit.test.":
		m.Answer = append(m.Answer, &mdns.AAAA{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: 300},
			AAAA: net.ParseIP(netlab.Internet6)})
	case q.Qtype == mdns.TypeA && q.Name == "rebind.exit.test.":
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
			A: net.ParseIP("192.168.1.1")})
	default:
		m.Rcode = mdns.RcodeNameError
	}
	w.WriteMsg(m)
}

// serveAuthority starts the zone on the internet host.
func serveAuthority(t *testing.T, l *netlab.Lab) *authority {
	t.Helper()
	a := &authority{}
	var pc net.PacketConn
	var ln net.Listener
	if err := l.Internet.Run(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", netlab.Internet4+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", netlab.Internet4+":53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	udp := &mdns.Server{PacketConn: pc, Handler: a}
	tcp := &mdns.Server{Listener: ln, Handler: a}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return a
}

// dig runs dig in the member's namespace and returns its short answer.
func dig(ctx context.Context, ns *netlab.NS, args ...string) (string, error) {
	out, err := ns.Exec(ctx, "dig", append([]string{"+short", "+time=2", "+tries=1"}, args...)...)
	return strings.TrimSpace(string(out)), err
}

func TestDNSInsideTheTunnel(t *testing.T) {
	testenv.RequireTools(t, "dig")
	l := newLab(t, 1, "")
	auth := serveAuthority(t, l.Lab)
	ctx := context.Background()
	m, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Config, "DNS = 10.99.0.1, fd00:99::1") {
		t.Fatalf("client config has no DNS line pointing inside the tunnel:\n%s", m.Config)
	}
	t.Run("names resolve at the gateway over v4 and v6, UDP and TCP", func(t *testing.T) {
		for _, tc := range []struct{ server, qtype, want string }{
			{"10.99.0.1", "A", netlab.Internet4},
			{"fd00:99::1", "AAAA", netlab.Internet6},
		} {
			for _, proto := range []string{"+notcp", "+tcp"} {
				got, err := dig(ctx, m.NS, "@"+tc.server, proto, "www.exit.test", tc.qtype)
				if err != nil || got != tc.want {
					t.Errorf("dig @%s %s %s: %q %v, want %s", tc.server, proto, tc.qtype, got, err, tc.want)
				}
			}
		}
	})
	t.Run("answers are cached", func(t *testing.T) {
		before := auth.queries.Load()
		for range 5 {
			if got, err := dig(ctx, m.NS, "@10.99.0.1", "www.exit.test", "A"); err != nil || got != netlab.Internet4 {
				t.Fatalf("%q %v", got, err)
			}
		}
		if after := auth.queries.Load(); after != before {
			t.Fatalf("cached name reached the authority %d more times", after-before)
		}
	})
	t.Run("a public name pointing at a private address is emptied", func(t *testing.T) {
		got, err := dig(ctx, m.NS, "@10.99.0.1", "rebind.exit.test", "A")
		if err != nil || got != "" {
			t.Fatalf("rebinding answer %q %v, want empty", got, err)
		}
	})
	t.Run("the resolver answers only inside the tunnel", func(t *testing.T) {
		// From the internet side, the gateway address is not even routed;
		// the WAN address has no resolver.
		if got, err := dig(ctx, l.Internet, "@"+netlab.ExitWAN4, "www.exit.test", "A"); err == nil && got != "" {
			t.Fatalf("exitd answered on its WAN address: %q", got)
		}
	})
	t.Run("plain DNS to any other resolver is captured", func(t *testing.T) {
		// 192.0.2.53 is nobody in the lab: only exitd's capture can answer.
		got, err := dig(ctx, m.NS, "@192.0.2.53", "www.exit.test", "A")
		if err != nil || got != netlab.Internet4 {
			t.Fatalf("dig @192.0.2.53: %q %v, want the answer from exitd's resolver", got, err)
		}
		if got, err := dig(ctx, m.NS, "@192.0.2.53", "+tcp", "www.exit.test", "A"); err != nil || got != netlab.Internet4 {
			t.Fatalf("dig +tcp @192.0.2.53: %q %v", got, err)
		}
	})
	t.Run("status and metrics count the queries", func(t *testing.T) {
		out, err := l.node.Exitctl(ctx, "status")
		if err != nil || !strings.Contains(string(out), "on 10.99.0.1:53") {
			t.Fatalf("status: %s %v", out, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(string(out), "upstreams 1/1 up") && time.Now().Before(deadline) {
			out, _ = l.node.Exitctl(ctx, "status")
		}
		if !strings.Contains(string(out), "upstreams 1/1 up") {
			t.Fatalf("status: %s", out)
		}
	})
}

// TestDNSCaptureOff: without capture a member's query to another resolver
// is forwarded like any traffic (here to a lab address nobody answers), so
// the capture test above can fail.
func TestDNSCaptureOff(t *testing.T) {
	testenv.RequireTools(t, "dig")
	l := newLab(t, 1, "[dns]\nupstreams = [\""+netlab.Internet4+":53\"]\ncapture = false\n")
	serveAuthority(t, l.Lab)
	ctx := context.Background()
	m, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dig(ctx, m.NS, "@10.99.0.1", "www.exit.test", "A"); err != nil || got != netlab.Internet4 {
		t.Fatalf("the resolver itself: %q %v", got, err)
	}
	if got, err := dig(ctx, m.NS, "@192.0.2.53", "www.exit.test", "A"); err == nil && got == netlab.Internet4 {
		t.Fatal("capture = false still answered a query to another resolver")
	}
}
