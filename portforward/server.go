package portforward

// Goroutines: Start runs one routineServe per socket — read a datagram,
// identify the source, parse, ask the Table, write the answer from the same
// socket, repeat — and one routineExpire, whose ticker calls Table.Expire.
// Close closes the sockets (which ends every read), stops the ticker,
// waits for all of them, then saves pending renewals.

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by Start after Close.
var ErrServerClosed = errors.New("portforward: server closed")

// DefaultExpiryInterval is how often the server expires mappings.
const DefaultExpiryInterval = 5 * time.Second

// ServerOptions configures a Server.
type ServerOptions struct {
	// Identify maps a request's source (a member's inner IPv4 address) to
	// its member; required. Requests from sources it rejects are dropped
	// unanswered and counted in Stats.DroppedForeign.
	Identify func(src netip.Addr) (member string, ok bool)
	// PublicAddr returns the exit's WAN IPv4 address, for opcode 0 and the
	// mapping log. An invalid or IPv6 address answers opcode 0 with result
	// 3 (network failure). nil: always invalid.
	PublicAddr func() netip.Addr
	Logger     *slog.Logger     // nil: discard
	Now        func() time.Time // epoch clock; nil: time.Now
	// ExpiryInterval is the period of the expiry ticker; 0: the default.
	ExpiryInterval time.Duration
}

// Stats is a snapshot of the server's counters; counters only grow.
type Stats struct {
	RequestsPublicAddr uint64 // opcode 0 requests from members
	RequestsMapUDP     uint64 // opcode 1
	RequestsMapTCP     uint64 // opcode 2
	RequestsOther      uint64 // unsupported version or opcode (answered 1 or 5)
	// Answered counts responses by result code (index: ResultCode).
	Answered [numResults]uint64
	// DroppedForeign counts datagrams from sources Identify rejected (or
	// not IPv4); they are never answered.
	DroppedForeign uint64
	// Malformed counts member datagrams dropped unanswered: shorter than 2
	// bytes, a response, a mapping request shorter than 12 bytes.
	Malformed uint64
	IOErrors  uint64 // failed reads and writes

	Mappings    int    // mappings now
	Expired     uint64 // mappings removed by expiry
	ApplyErrors uint64 // failed Installer.Apply calls
	SaveErrors  uint64 // failed Store.Save calls
}

// counters are the server's live counters.
type counters struct {
	requests                  [OpMapTCP + 1]atomic.Uint64
	requestsOther             atomic.Uint64
	answered                  [numResults]atomic.Uint64
	foreign, malformed, ioErr atomic.Uint64
}

// Server answers NAT-PMP on the sockets given to Start. Its methods are
// safe for concurrent use.
type Server struct {
	t     *Table
	opts  ServerOptions
	log   *slog.Logger
	start time.Time // start of epoch
	stats counters

	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	started bool             // guarded by mu
	closed  bool             // guarded by mu
	conns   []net.PacketConn // guarded by mu
}

// NewServer returns a server for t; the epoch starts now.
func NewServer(t *Table, opts ServerOptions) (*Server, error) {
	if t == nil || opts.Identify == nil {
		return nil, errors.New("portforward: NewServer needs a Table and Options.Identify")
	}
	if opts.ExpiryInterval < 0 {
		return nil, errors.New("portforward: negative expiry interval")
	}
	setDefault(&opts.ExpiryInterval, DefaultExpiryInterval)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PublicAddr == nil {
		opts.PublicAddr = func() netip.Addr { return netip.Addr{} }
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{t: t, opts: opts, log: log, start: opts.Now(), done: make(chan struct{})}, nil
}

// Start serves NAT-PMP on conns in the background and starts the expiry
// ticker; it may be called once. Each conn must be bound to one address
// (the gateway address, port 5351), since answers leave from the socket
// the request came in on; a wildcard-bound UDP socket is refused. The
// server owns conns from now on (even when Start fails): Close closes them.
func (s *Server) Start(conns ...net.PacketConn) error {
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for _, c := range conns {
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.IsUnspecified() {
			closeAll()
			return fmt.Errorf("portforward: socket %v is not bound to an address", a)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		closeAll()
		return ErrServerClosed
	case s.started:
		closeAll()
		return errors.New("portforward: server already started")
	}
	s.started = true
	s.conns = append(s.conns, conns...)
	s.wg.Add(len(conns) + 1)
	for _, c := range conns {
		go s.routineServe(c)
	}
	go s.routineExpire()
	return nil
}

// Close stops the server: it closes the sockets, stops the expiry ticker,
// waits for the goroutines and saves renewals not yet saved (the error is
// that of the save). It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := s.conns
		s.mu.Unlock()
		close(s.done)
		for _, c := range conns {
			c.Close()
		}
		s.wg.Wait()
		s.closeErr = s.t.flush()
	})
	return s.closeErr
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		RequestsPublicAddr: s.stats.requests[OpPublicAddress].Load(),
		RequestsMapUDP:     s.stats.requests[OpMapUDP].Load(),
		RequestsMapTCP:     s.stats.requests[OpMapTCP].Load(),
		RequestsOther:      s.stats.requestsOther.Load(),
		DroppedForeign:     s.stats.foreign.Load(),
		Malformed:          s.stats.malformed.Load(),
		IOErrors:           s.stats.ioErr.Load(),
		Mappings:           s.t.Len(),
		Expired:            s.t.expired.Load(),
		ApplyErrors:        s.t.applyErrors.Load(),
		SaveErrors:         s.t.saveErrors.Load(),
	}
	for i := range st.Answered {
		st.Answered[i] = s.stats.answered[i].Load()
	}
	return st
}

// udpConn is the allocation-free side of *net.UDPConn.
type udpConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

var _ udpConn = (*net.UDPConn)(nil)

// routineServe answers the requests arriving on c until c is closed.
func (s *Server) routineServe(c net.PacketConn) {
	defer s.wg.Done()
	in := make([]byte, maxPacket)
	out := make([]byte, 0, maxPacket+4)
	fast, _ := c.(udpConn)
	failures := 0
	for {
		var (
			n   int
			src netip.AddrPort
			err error
		)
		if fast != nil {
			n, src, err = fast.ReadFromUDPAddrPort(in)
		} else {
			var a net.Addr
			n, a, err = c.ReadFrom(in)
			if ua, ok := a.(*net.UDPAddr); ok {
				src = ua.AddrPort()
			}
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.closing() {
				return
			}
			s.stats.ioErr.Add(1)
			if failures++; failures == 1 {
				s.log.Warn("portforward: read failed", "socket", c.LocalAddr(), "err", err)
			}
			if !s.pause(failures) {
				return
			}
			continue
		}
		failures = 0
		resp := s.handle(in[:n], src, out[:0])
		if resp == nil {
			continue
		}
		if fast != nil {
			_, err = fast.WriteToUDPAddrPort(resp, src)
		} else {
			_, err = c.WriteTo(resp, net.UDPAddrFromAddrPort(src))
		}
		if err != nil {
			s.stats.ioErr.Add(1)
		}
	}
}

// pause waits before the next read after failures consecutive read errors
// (1 ms doubling to 1 s), so a persistent error does not spin; it reports
// false if the server closed meanwhile.
func (s *Server) pause(failures int) bool {
	d := time.Millisecond << min(failures-1, 10)
	tm := time.NewTimer(min(d, time.Second))
	defer tm.Stop()
	select {
	case <-s.done:
		return false
	case <-tm.C:
		return true
	}
}

func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// routineExpire expires mappings every ExpiryInterval until Close. The
// Table logs Apply and Save failures itself.
func (s *Server) routineExpire() {
	defer s.wg.Done()
	tk := time.NewTicker(s.opts.ExpiryInterval)
	defer tk.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-tk.C:
			s.t.Expire()
		}
	}
}

// epoch returns the seconds since the start of epoch (0 if the clock went
// back).
func (s *Server) epoch() uint32 {
	d := s.opts.Now().Sub(s.start) / time.Second
	return uint32(max(0, min(d, math.MaxUint32)))
}

// handle answers one datagram req from src, appending the answer to out;
// nil means no answer. Requests that change no mapping do not allocate.
func (s *Server) handle(req []byte, src netip.AddrPort, out []byte) []byte {
	ip := src.Addr().Unmap()
	member, ok := "", false
	if ip.Is4() {
		member, ok = s.opts.Identify(ip)
	}
	if !ok {
		s.stats.foreign.Add(1)
		return nil
	}
	r, err := ParseRequest(req)
	if err != nil {
		switch err.(*ParseError).Result {
		case ResultUnsupportedVersion:
			s.stats.requestsOther.Add(1)
			s.stats.answered[ResultUnsupportedVersion].Add(1)
			return AppendVersionError(out, s.epoch())
		case ResultUnsupportedOpcode:
			s.stats.requestsOther.Add(1)
			s.stats.answered[ResultUnsupportedOpcode].Add(1)
			return AppendOpcodeError(out, req)
		}
		s.stats.malformed.Add(1)
		return nil
	}
	s.stats.requests[r.Op].Add(1)
	resp := Response{Op: r.Op, Epoch: s.epoch()}
	if r.Op == OpPublicAddress {
		resp.PublicAddr = s.opts.PublicAddr().Unmap()
		if !resp.PublicAddr.Is4() {
			resp.Result = ResultNetworkFailure
		}
	} else {
		internal := netip.AddrPortFrom(ip, r.InternalPort)
		var changed bool
		resp.InternalPort = r.InternalPort
		resp.ExternalPort, resp.Lifetime, resp.Result, changed = s.t.request(member, Proto(r.Op), internal, r.SuggestedPort, r.Lifetime)
		if changed {
			s.logChange(member, Proto(r.Op), internal, resp)
		}
	}
	s.stats.answered[resp.Result].Add(1)
	return AppendResponse(out, resp)
}

// logChange logs a mapping created, re-pointed or deleted; creation is
// rate limited per member by the Table.
func (s *Server) logChange(member string, proto Proto, internal netip.AddrPort, resp Response) {
	if resp.Lifetime == 0 {
		s.log.Info("portforward: unmapped", "member", member, "proto", proto, "internal", internal)
		return
	}
	s.log.Info("portforward: mapped", "member", member, "proto", proto, "internal", internal,
		"public", netip.AddrPortFrom(s.opts.PublicAddr(), resp.ExternalPort), "lifetime", resp.Lifetime)
}
