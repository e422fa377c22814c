package harness

import (
	"net"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"

	"exitd/internal/netlab"
)

// Zone is a small authoritative DNS server on the lab's internet host,
// port 53 (UDP and TCP): the upstream exitd's resolver forwards members'
// queries to in the lab (WriteConfig points [dns] upstreams at it).
type Zone struct {
	udp, tcp *mdns.Server
}

// ServeZone answers A and AAAA queries for the names in records (fully
// qualified or not) and NXDOMAIN for everything else.
func ServeZone(lab *netlab.Lab, records map[string][]netip.Addr) (*Zone, error) {
	byName := map[string][]netip.Addr{}
	for name, as := range records {
		byName[mdns.Fqdn(strings.ToLower(name))] = as
	}
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if len(r.Question) != 1 {
			m.Rcode = mdns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := r.Question[0]
		as, ok := byName[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = mdns.RcodeNameError
		}
		for _, a := range as {
			hdr := mdns.RR_Header{Name: q.Name, Class: mdns.ClassINET, Ttl: 300}
			switch {
			case a.Is4() && q.Qtype == mdns.TypeA:
				hdr.Rrtype = mdns.TypeA
				m.Answer = append(m.Answer, &mdns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && q.Qtype == mdns.TypeAAAA:
				hdr.Rrtype = mdns.TypeAAAA
				m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var ln net.Listener
	if err := lab.Internet.Run(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", netlab.Internet4+":53"); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", netlab.Internet4+":53"); err != nil {
			pc.Close()
		}
		return err
	}); err != nil {
		return nil, err
	}
	z := &Zone{udp: &mdns.Server{PacketConn: pc, Handler: handler}, tcp: &mdns.Server{Listener: ln, Handler: handler}}
	for _, s := range []*mdns.Server{z.udp, z.tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
	}
	return z, nil
}

// Close stops the server.
func (z *Zone) Close() error {
	z.udp.Shutdown()
	return z.tcp.Shutdown()
}
