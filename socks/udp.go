package socks

// UDP ASSOCIATE (RFC 1928 §7):
//
//	client ──[hdr|data]──▶ socket ──data──▶ destination   RoutineUDP
//	client ◀──[hdr|data]── socket ◀──data── destination   RoutineUDP
//	client ═══ TCP control ═══ RoutineSession: read until EOF, then end
//
// One unconnected UDP socket per association, on the wildcard address and
// an ephemeral port, carries both directions, so an association costs one
// socket, one goroutine besides the session's and one 64 KiB buffer. The
// client is the control connection's source address (its port taken from
// the request or else from its first datagram); datagrams from that
// address are requests, any other source must be a destination the client
// has sent to (address-and-port filtering, like a strict NAT). FRAG ≠ 0 is
// dropped. The association ends with the control connection, on Close, or
// after UDPIdleTimeout without a relayed datagram.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"
)

const (
	maxDatagram = 64 << 10
	maxPeers    = 4096 // remembered destinations per association
	maxNames    = 64   // cached name resolutions per association
	nameTTL     = time.Minute
)

type udpAssoc struct {
	ss     *session
	pc     *net.UDPConn
	client netip.AddrPort // port 0 until the first datagram
	pace   *pacer
	peers  map[netip.AddrPort]struct{}
	names  map[string]nameEntry
}

type nameEntry struct {
	ip      netip.Addr
	expires time.Time
}

func (ss *session) associate(src netip.AddrPort, hint addr, uploadLimit uint64) {
	s := ss.srv
	pc, err := s.listenUDP()
	if err != nil {
		s.log.Warn("udp associate: listen", "err", err)
		ss.reply(replyGeneralFailure, netip.AddrPort{})
		return
	}
	if !ss.setPeer(pc) {
		return
	}
	port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	if err := ss.reply(replySucceeded, netip.AddrPortFrom(localAddr(ss.client).Addr(), port)); err != nil {
		return
	}
	s.stats.udpAssociations.Add(1)
	a := &udpAssoc{
		ss:     ss,
		pc:     pc,
		client: netip.AddrPortFrom(src.Addr(), hint.port),
		peers:  make(map[netip.AddrPort]struct{}),
	}
	if uploadLimit > 0 {
		a.pace = newPacer(uploadLimit)
	}
	s.wg.Add(1) // RoutineSession is counted, so Close cannot be waiting at zero
	go a.RoutineUDP()

	// The client sends nothing more on the control connection; its end
	// (or Close) ends the association, not the handshake's read deadline.
	ss.client.SetReadDeadline(time.Time{})
	var b [64]byte
	for {
		if _, err := ss.client.Read(b[:]); err != nil {
			return // the deferred ss.close ends RoutineUDP
		}
	}
}

// RoutineUDP relays datagrams both ways until the socket is closed or idle.
func (a *udpAssoc) RoutineUDP() {
	s := a.ss.srv
	defer s.wg.Done()
	defer a.ss.close()

	buf := make([]byte, maxUDPHeader+maxDatagram)
	idle := s.opts.UDPIdleTimeout
	last := time.Now()
	a.pc.SetReadDeadline(last.Add(idle))
	for {
		n, from, err := a.pc.ReadFromUDPAddrPort(buf[maxUDPHeader:])
		if err != nil {
			if isTimeout(err) && time.Since(last) < idle {
				a.pc.SetReadDeadline(last.Add(idle))
				continue
			}
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		var ok bool
		if a.fromClient(from) {
			ok = a.up(buf[maxUDPHeader : maxUDPHeader+n])
		} else {
			ok = a.down(buf, n, from)
		}
		if ok {
			last = time.Now()
		} else {
			s.stats.udpDropped.Add(1)
		}
	}
}

func (a *udpAssoc) fromClient(from netip.AddrPort) bool {
	if from.Addr() != a.client.Addr() {
		return false
	}
	if a.client.Port() == 0 {
		a.client = from // the first datagram from the client's address fixes its port
		return true
	}
	return from.Port() == a.client.Port()
}

// up sends a client datagram on to its destination.
func (a *udpAssoc) up(pkt []byte) bool {
	s := a.ss.srv
	dst, frag, data, err := parseUDPHeader(pkt)
	if err != nil || frag != 0 || dst.port == 0 {
		return false
	}
	ip := dst.ip
	if dst.name != "" {
		if ip = a.resolve(dst.name); !ip.IsValid() {
			return false
		}
	}
	if s.denied(ip) {
		return false
	}
	if a.pace != nil && !a.pace.allow(len(data)) {
		return false
	}
	to := netip.AddrPortFrom(ip, dst.port)
	if _, ok := a.peers[to]; !ok {
		if len(a.peers) >= maxPeers {
			clear(a.peers)
		}
		a.peers[to] = struct{}{}
	}
	if _, err := a.pc.WriteToUDPAddrPort(data, to); err != nil {
		return false
	}
	s.stats.udpDatagramsUp.Add(1)
	s.stats.bytesUp.Add(uint64(len(data)))
	return true
}

// down sends a destination's datagram (at buf[maxUDPHeader:][:n]) to the
// client, writing the header into the room left before it.
func (a *udpAssoc) down(buf []byte, n int, from netip.AddrPort) bool {
	s := a.ss.srv
	if _, ok := a.peers[from]; !ok || a.client.Port() == 0 {
		return false
	}
	start := maxUDPHeader - udpHeaderLen(from)
	appendUDPHeader(buf[start:start], from)
	if _, err := a.pc.WriteToUDPAddrPort(buf[start:maxUDPHeader+n], a.client); err != nil {
		return false
	}
	s.stats.udpDatagramsDown.Add(1)
	s.stats.bytesDown.Add(uint64(n))
	return true
}

// resolve looks a name up through a small per-association cache; an
// invalid address when it does not resolve or any address is denied.
func (a *udpAssoc) resolve(name string) netip.Addr {
	s := a.ss.srv
	now := time.Now()
	if e, ok := a.names[name]; ok && now.Before(e.expires) {
		return e.ip
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.ConnectTimeout)
	ips, err := s.resolve(ctx, addr{name: name})
	cancel()
	var ip netip.Addr
	if err == nil {
		ip = ips[0].Unmap()
	}
	if a.names == nil || len(a.names) >= maxNames {
		a.names = make(map[string]nameEntry)
	}
	a.names[name] = nameEntry{ip: ip, expires: now.Add(nameTTL)}
	return ip
}

// listenUDP opens a relay socket: any port, or one in Options.UDPPorts,
// starting at a random one.
func (s *Server) listenUDP() (*net.UDPConn, error) {
	r := s.opts.UDPPorts
	if r == [2]uint16{} {
		return net.ListenUDP("udp", nil)
	}
	n := int(r[1]-r[0]) + 1
	start := rand.IntN(n)
	var err error
	for i := range n {
		port := int(r[0]) + (start+i)%n
		var pc *net.UDPConn
		if pc, err = net.ListenUDP("udp", &net.UDPAddr{Port: port}); err == nil {
			return pc, nil
		}
	}
	return nil, fmt.Errorf("socks: no free UDP port in %d-%d: %w", r[0], r[1], err)
}
