package socks

// A session is one client connection:
//
//	accepted → greeting → [RFC 1929 auth] → request → admitted → relaying → closed
//	    any step may end in closed, with a reply when the protocol allows one.
//
// The handshake is bounded by HandshakeTimeout. Admission (rules, identity,
// limits, deny set) happens after the request is read so that every refusal
// can be answered with a reply code.

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

type session struct {
	srv    *Server
	client net.Conn
	cfg    *ListenerConfig
	done   chan struct{}    // closed by close
	wbuf   [4 + 16 + 2]byte // RoutineSession's replies, without an allocation each

	mu     sync.Mutex
	peer   io.Closer // guarded by mu; the outbound conn or UDP socket
	closed bool      // guarded by mu
}

// close ends the session from any goroutine; safe to call more than once.
func (ss *session) close() {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	peer := ss.peer
	ss.mu.Unlock()
	close(ss.done)
	ss.client.Close()
	if peer != nil {
		peer.Close()
	}
}

// setPeer registers the outbound socket so close reaches it; false (and the
// socket closed) if the session already ended.
func (ss *session) setPeer(c io.Closer) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		c.Close()
		return false
	}
	ss.peer = c
	return true
}

// identity is who a session is, decided from its source before the greeting.
type identity struct {
	key   string            // limits and UploadLimit key: member or source address
	users map[string]string // non-empty: RFC 1929 required
	ok    bool              // false: answered 0x02 after the request
}

func (ss *session) identify(src netip.Addr) identity {
	if ss.cfg.Tunnel {
		m, ok := ss.srv.opts.Identify(src)
		return identity{key: m, ok: ok}
	}
	for _, r := range ss.cfg.Rules {
		for _, p := range r.Allow {
			if p.Contains(src) {
				return identity{key: src.String(), users: r.Users, ok: true}
			}
		}
	}
	return identity{}
}

func remoteAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func localAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// RoutineSession runs one client connection to its end.
func (ss *session) RoutineSession() {
	s := ss.srv
	defer s.wg.Done()
	defer s.endSession(ss)
	defer ss.close()

	c := ss.client
	// A read deadline is enough: the replies are a few bytes, which the
	// socket buffer takes. It stays set through the dial (nothing reads the
	// client meanwhile) until the relay or associate replace it, which
	// saves two timer updates per CONNECT.
	c.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	// Clients may send the request right behind the greeting; bytes read
	// past the request are forwarded before relaying (see connect).
	br := bufio.NewReaderSize(c, 512)
	src := remoteAddr(c)
	id := ss.identify(src.Addr())

	req, err := ss.handshake(br, id)
	if err != nil {
		return
	}

	if !id.ok {
		ss.refuse(refusedRuleset, replyNotAllowed)
		return
	}
	switch req.cmd {
	case cmdConnect, cmdUDPAssociate:
	default: // BIND and unknown commands
		s.stats.handshakeErrors.Add(1)
		ss.reply(replyCommandNotSupported, netip.AddrPort{})
		return
	}
	if req.dst.port == 0 && req.cmd == cmdConnect {
		ss.refuse(refusedRuleset, replyNotAllowed)
		return
	}
	if r := s.limits.acquire(id.key); r != admitted {
		ss.refuse(r, replyNotAllowed)
		return
	}
	defer s.limits.release(id.key)

	var limit uint64
	if s.opts.UploadLimit != nil {
		limit = s.opts.UploadLimit(id.key)
	}
	if req.cmd == cmdConnect {
		ss.connect(br, req.dst, limit)
	} else {
		ss.associate(src, req.dst, limit)
	}
}

// handshake runs greeting, authentication and request. On a malformed
// message it answers where RFC 1928 has an answer and returns an error.
func (ss *session) handshake(br *bufio.Reader, id identity) (request, error) {
	s := ss.srv
	var buf [255]byte
	methods, err := readGreeting(br, buf[:])
	if err != nil {
		s.stats.handshakeErrors.Add(1)
		return request{}, err
	}
	want := byte(methodNoAuth)
	if len(id.users) > 0 {
		want = methodUserPass
	}
	chosen := byte(methodNoAcceptable)
	for _, m := range methods {
		if m == want {
			chosen = want
		}
	}
	if _, err := ss.client.Write(append(ss.wbuf[:0], socksVersion, chosen)); err != nil {
		return request{}, err
	}
	if chosen == methodNoAcceptable {
		s.stats.refused[refusedAuth].Add(1)
		return request{}, errors.New("socks: no acceptable method")
	}
	if chosen == methodUserPass {
		user, pass, err := readUserPass(br)
		if err != nil {
			s.stats.handshakeErrors.Add(1)
			return request{}, err
		}
		ok := checkPassword(id.users, user, pass)
		status := byte(0)
		if !ok {
			status = 1
		}
		if _, err := ss.client.Write(append(ss.wbuf[:0], userPassVersion, status)); err != nil {
			return request{}, err
		}
		if !ok {
			s.stats.refused[refusedAuth].Add(1)
			return request{}, errors.New("socks: bad username or password")
		}
	}
	req, err := readRequest(br)
	if err != nil {
		s.stats.handshakeErrors.Add(1)
		if errors.Is(err, errAddrType) {
			ss.reply(replyAddrNotSupported, netip.AddrPort{})
		}
		return request{}, err
	}
	return req, nil
}

// checkPassword compares in constant time for a known user.
func checkPassword(users map[string]string, user, pass string) bool {
	want, ok := users[user]
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(pass)) == 1
}

func (ss *session) reply(rep reply, bnd netip.AddrPort) error {
	_, err := ss.client.Write(appendReply(ss.wbuf[:0], rep, bnd))
	return err
}

func (ss *session) refuse(r refusal, rep reply) {
	ss.srv.stats.refused[r].Add(1)
	ss.reply(rep, netip.AddrPort{})
}

// denied reports destinations refused whatever Deny says: the unspecified
// addresses reach the node itself.
func (s *Server) denied(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return true
	}
	return s.opts.Deny != nil && s.opts.Deny(a)
}

// resolve returns the addresses of the name dst.name, refusing (ErrDenied)
// when any is denied so that a name cannot lead to a private address.
func (s *Server) resolve(ctx context.Context, dst addr) ([]netip.Addr, error) {
	ips, err := s.opts.Resolver.LookupNetIP(ctx, "ip", dst.name)
	if err != nil {
		return nil, errors.Join(errResolve, err)
	}
	if len(ips) == 0 {
		return nil, errResolve
	}
	for _, ip := range ips {
		if s.denied(ip) {
			return nil, ErrDenied
		}
	}
	return ips, nil
}

// maxDialAddrs bounds the addresses of one name tried in turn.
const maxDialAddrs = 4

func (ss *session) connect(br *bufio.Reader, dst addr, uploadLimit uint64) {
	s := ss.srv
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.ConnectTimeout)
	remote, err := ss.dial(ctx, dst)
	cancel()
	if err != nil {
		if errors.Is(err, ErrDenied) {
			ss.refuse(refusedRuleset, replyNotAllowed)
			return
		}
		s.stats.connectsFailed.Add(1)
		rep := replyFor(err)
		if s.ctx.Err() != nil {
			rep = replyGeneralFailure // shutting down
		}
		s.log.Debug("connect failed", "dst", dst, "reply", rep, "err", err)
		ss.reply(rep, netip.AddrPort{})
		return
	}
	if !ss.setPeer(remote) {
		return
	}
	if err := ss.reply(replySucceeded, localAddr(remote)); err != nil {
		return
	}
	s.stats.connectsOK.Add(1)
	// Forward what the client sent behind its request.
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := remote.Write(b); err != nil {
			return
		}
		s.stats.bytesUp.Add(uint64(n))
	}
	var p *pacer
	if uploadLimit > 0 {
		p = newPacer(uploadLimit)
	}
	ss.relay(remote, p)
}

func (ss *session) dial(ctx context.Context, dst addr) (net.Conn, error) {
	s := ss.srv
	if dst.name == "" {
		if s.denied(dst.ip) {
			return nil, ErrDenied
		}
		return s.dialAddr(ctx, netip.AddrPortFrom(dst.ip, dst.port))
	}
	ips, err := s.resolve(ctx, dst)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips[:min(len(ips), maxDialAddrs)] {
		var c net.Conn
		c, err = s.dialAddr(ctx, netip.AddrPortFrom(ip, dst.port))
		if err == nil || ctx.Err() != nil {
			return c, err
		}
	}
	return nil, err
}

// dialAddr connects to one address. (Not through net.Dialer.DialTCP,
// which takes the address as a netip.AddrPort but binds the socket to the
// zero local address it is given: a bind(2) per dial, and an ephemeral
// port reserved per connection instead of per destination.)
func (s *Server) dialAddr(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	c, err := s.opts.Dialer.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return nil, err
	}
	return c, nil
}
