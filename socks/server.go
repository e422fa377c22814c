package socks

// Goroutines: one accept loop per listener (Serve, or routineAccept started
// by Start); one RoutineSession per client connection, which does the
// handshake and then relays one direction itself and starts one more
// goroutine for the other direction (TCP) or for the datagram loop (UDP).
// So a session costs at most two goroutines. Close closes the listeners,
// then every session's sockets, then waits for all of them.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Resolver resolves destination names on the node.
type Resolver interface {
	// LookupNetIP returns the addresses of host for network "ip"; an error
	// (any) makes the CONNECT fail with 0x04, host unreachable.
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens the outbound TCP connections.
type Dialer interface {
	// DialContext connects to addr ("ip:port") on network "tcp". Returning a
	// *net.TCPConn lets the relay splice; other conns are copied.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

var (
	_ Resolver = net.DefaultResolver
	_ Dialer   = (*net.Dialer)(nil)
)

// Defaults for zero Options fields.
const (
	DefaultMaxSessions      = 1024
	DefaultConnectRate      = 100 // per second
	DefaultConnectBurst     = 200
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultUDPIdleTimeout   = 2 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultConnectTimeout   = 10 * time.Second
)

// Options configures a Server. Zero fields take the defaults above.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Now is the clock of the connect-rate limiter. Socket deadlines and
	// upload pacing use the real clock, as the kernel does.
	Now      func() time.Time
	Resolver Resolver // nil: net.DefaultResolver
	Dialer   Dialer   // nil: a net.Dialer without TCP keep-alive (see Listen)

	// Deny reports destinations members must not reach (the deny set nat
	// uses). It is checked after name resolution: a name with any denied
	// address is refused with 0x02. nil denies nothing but the unspecified
	// addresses; the daemon always sets it (it must cover loopback and the
	// node's own addresses).
	Deny func(netip.Addr) bool
	// Identify maps a tunnel source address to its member; required for
	// tunnel listeners. Sources it rejects are refused with 0x02.
	Identify func(src netip.Addr) (member string, ok bool)
	// UploadLimit returns a member's upload rate in bit/s, 0 for unlimited;
	// asked once per session with the member (on extra listeners: the
	// source address). nil: unlimited.
	UploadLimit func(member string) (bitsPerSecond uint64)

	MaxSessions    int     // concurrent sessions per member or source
	ConnectRate    float64 // sessions per second per member or source
	ConnectBurst   int
	IdleTimeout    time.Duration // TCP relay with no data either way
	UDPIdleTimeout time.Duration // UDP association with no datagram
	// UDPPorts is the range UDP ASSOCIATE relay sockets bind in (so a
	// firewall can open exactly it to clients); zero means any port.
	UDPPorts         [2]uint16
	HandshakeTimeout time.Duration // greeting, auth and request
	ConnectTimeout   time.Duration // resolution plus dial
}

// Rule admits clients of an extra listener, like a Dante client rule: the
// first rule whose Allow holds the source decides.
type Rule struct {
	Allow []netip.Prefix    // sources; at least one (Serve checks)
	Users map[string]string // user → password (RFC 1929); empty: no auth
}

// ListenerConfig is one SOCKS listener.
type ListenerConfig struct {
	Addr   netip.AddrPort // used by Start; Serve takes a listener
	Tunnel bool           // members inside the tunnel, identified by Options.Identify
	Rules  []Rule         // non-tunnel listeners: at least one
}

// Stats are cumulative counters unless noted.
type Stats struct {
	SessionsActive   int64  // client connections open now, any phase
	SessionsTotal    uint64 // client connections accepted
	ConnectsOK       uint64 // CONNECTs relayed
	ConnectsFailed   uint64 // CONNECTs whose resolution or dial failed
	UDPAssociations  uint64 // UDP ASSOCIATEs granted
	HandshakeErrors  uint64 // malformed, timed out, or unsupported command/address
	RefusedRuleset   uint64 // source not identified, no rule, denied destination, port 0
	RefusedLimit     uint64 // concurrent sessions at MaxSessions
	RefusedRate      uint64 // connect rate exceeded
	RefusedAuth      uint64 // no acceptable method or bad username/password
	RefusedNoFD      uint64 // accept failed for lack of file descriptors or memory
	BytesUp          uint64 // client → destination, TCP and UDP payload
	BytesDown        uint64 // destination → client
	UDPDatagramsUp   uint64
	UDPDatagramsDown uint64
	UDPDropped       uint64 // FRAG ≠ 0, bad header, denied, foreign source, over limit
}

type counters struct {
	sessionsActive   atomic.Int64
	sessionsTotal    atomic.Uint64
	connectsOK       atomic.Uint64
	connectsFailed   atomic.Uint64
	udpAssociations  atomic.Uint64
	handshakeErrors  atomic.Uint64
	refused          [refusedAuth + 1]atomic.Uint64
	refusedNoFD      atomic.Uint64
	bytesUp          atomic.Uint64
	bytesDown        atomic.Uint64
	udpDatagramsUp   atomic.Uint64
	udpDatagramsDown atomic.Uint64
	udpDropped       atomic.Uint64
}

// Server is a SOCKS5 server; its methods are safe for concurrent use.
type Server struct {
	opts   Options
	log    *slog.Logger
	limits *limiter
	ctx    context.Context // cancelled by Close; bounds resolution and dials
	cancel context.CancelFunc
	stats  counters

	// Accept back-off after EMFILE/ENFILE; tests shorten it.
	backoffMin, backoffMax time.Duration

	wg sync.WaitGroup

	mu        sync.Mutex
	closed    bool                      // guarded by mu
	listeners map[net.Listener]struct{} // guarded by mu
	sessions  map[*session]struct{}     // guarded by mu
}

// New checks opts and returns a Server with no listeners.
func New(opts Options) (*Server, error) {
	if opts.MaxSessions < 0 || opts.ConnectRate < 0 || opts.ConnectBurst < 0 ||
		opts.IdleTimeout < 0 || opts.UDPIdleTimeout < 0 ||
		opts.HandshakeTimeout < 0 || opts.ConnectTimeout < 0 {
		return nil, errors.New("socks: negative limit or timeout")
	}
	if r := opts.UDPPorts; r != [2]uint16{} && (r[0] == 0 || r[1] < r[0]) {
		return nil, fmt.Errorf("socks: UDP port range %d-%d is empty", r[0], r[1])
	}
	setDefault(&opts.MaxSessions, DefaultMaxSessions)
	setDefault(&opts.ConnectRate, DefaultConnectRate)
	setDefault(&opts.ConnectBurst, DefaultConnectBurst)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.UDPIdleTimeout, DefaultUDPIdleTimeout)
	setDefault(&opts.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&opts.ConnectTimeout, DefaultConnectTimeout)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: -1}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:       opts,
		log:        log,
		limits:     newLimiter(opts.MaxSessions, opts.ConnectRate, opts.ConnectBurst, opts.Now),
		ctx:        ctx,
		cancel:     cancel,
		backoffMin: 5 * time.Millisecond,
		backoffMax: time.Second,
		listeners:  make(map[net.Listener]struct{}),
		sessions:   make(map[*session]struct{}),
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (c *ListenerConfig) check() error {
	switch {
	case c.Tunnel && len(c.Rules) > 0:
		return errors.New("tunnel listener takes no rules")
	case !c.Tunnel && len(c.Rules) == 0:
		return errors.New("listener needs at least one rule")
	}
	for i, r := range c.Rules {
		if len(r.Allow) == 0 {
			return fmt.Errorf("rule %d: no allow prefixes", i)
		}
		for u, p := range r.Users {
			if len(u) == 0 || len(u) > 255 || len(p) == 0 || len(p) > 255 {
				return fmt.Errorf("rule %d: username and password must be 1–255 bytes", i)
			}
		}
	}
	return nil
}

// Listen opens a TCP listener set up as Start sets up its own, for Serve.
// Accepted connections get no TCP keep-alive probes (Go's default sends one
// every 15 s and costs four setsockopt(2) calls per connection, one tenth
// of a CONNECT's system calls): the relay's IdleTimeout already ends a
// session whose peer went silent, and members on mobile links are better
// off without a probe waking them every 15 s. The default Dialer leaves
// them off on the outbound side for the same reasons.
func Listen(ctx context.Context, addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("socks: listen: %w", err)
	}
	return l, nil
}

// Serve accepts SOCKS clients on l until Close (then it returns
// ErrServerClosed) or a fatal accept error. Running out of file descriptors
// is not fatal: it is counted and accepting resumes after a back-off. Serve
// takes ownership of l; Listen makes a listener configured as Start's.
func (s *Server) Serve(l net.Listener, cfg ListenerConfig) error {
	if err := cfg.check(); err != nil {
		l.Close()
		return fmt.Errorf("socks: listener %v: %w", l.Addr(), err)
	}
	if cfg.Tunnel && s.opts.Identify == nil {
		l.Close()
		return fmt.Errorf("socks: listener %v: tunnel listener needs Options.Identify", l.Addr())
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	return s.acceptLoop(l, &cfg)
}

// Start listens on every configured address, then serves them in the
// background. It returns the first configuration or listen error, having
// closed whatever it opened.
func (s *Server) Start(cfgs []ListenerConfig) error {
	ls := make([]net.Listener, 0, len(cfgs))
	fail := func(err error) error {
		for _, l := range ls {
			l.Close()
		}
		return err
	}
	for i := range cfgs {
		if err := cfgs[i].check(); err != nil {
			return fail(fmt.Errorf("socks: listener %v: %w", cfgs[i].Addr, err))
		}
		l, err := Listen(s.ctx, cfgs[i].Addr)
		if err != nil {
			return fail(err)
		}
		ls = append(ls, l)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fail(ErrServerClosed)
	}
	s.wg.Add(len(ls))
	s.mu.Unlock()
	for i, l := range ls {
		go s.routineAccept(l, cfgs[i])
	}
	return nil
}

// routineAccept serves one of Start's listeners; errors are logged.
func (s *Server) routineAccept(l net.Listener, cfg ListenerConfig) {
	defer s.wg.Done()
	if err := s.Serve(l, cfg); err != nil && !errors.Is(err, ErrServerClosed) {
		s.log.Error("listener stopped", "addr", l.Addr(), "err", err)
	}
}

func (s *Server) acceptLoop(l net.Listener, cfg *ListenerConfig) error {
	var (
		delay time.Duration
		timer *time.Timer
	)
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if errors.Is(err, syscall.ECONNABORTED) {
				continue
			}
			if !isNoFD(err) {
				return fmt.Errorf("socks: accept on %v: %w", l.Addr(), err)
			}
			s.stats.refusedNoFD.Add(1)
			if delay == 0 {
				delay = s.backoffMin
				s.log.Warn("accept failing, backing off", "addr", l.Addr(), "err", err)
			} else {
				delay = min(2*delay, s.backoffMax)
			}
			if timer == nil {
				timer = time.NewTimer(delay)
			} else {
				timer.Reset(delay)
			}
			select {
			case <-timer.C:
			case <-s.ctx.Done():
				timer.Stop()
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		s.startSession(c, cfg)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) startSession(c net.Conn, cfg *ListenerConfig) {
	ss := &session{srv: s, client: c, cfg: cfg, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.sessionsTotal.Add(1)
	s.stats.sessionsActive.Add(1)
	go ss.RoutineSession()
}

func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.stats.sessionsActive.Add(-1)
}

// Close stops the listeners, ends every session and waits for all the
// server's goroutines. It is idempotent; later calls wait the same way.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	ls := s.listeners
	ss := s.sessions
	s.listeners, s.sessions = nil, make(map[*session]struct{})
	s.mu.Unlock()

	s.cancel()
	for l := range ls {
		l.Close()
	}
	for x := range ss {
		x.close()
	}
	s.wg.Wait()
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		SessionsActive:   c.sessionsActive.Load(),
		SessionsTotal:    c.sessionsTotal.Load(),
		ConnectsOK:       c.connectsOK.Load(),
		ConnectsFailed:   c.connectsFailed.Load(),
		UDPAssociations:  c.udpAssociations.Load(),
		HandshakeErrors:  c.handshakeErrors.Load(),
		RefusedRuleset:   c.refused[refusedRuleset].Load(),
		RefusedLimit:     c.refused[refusedLimit].Load(),
		RefusedRate:      c.refused[refusedRate].Load(),
		RefusedAuth:      c.refused[refusedAuth].Load(),
		RefusedNoFD:      c.refusedNoFD.Load(),
		BytesUp:          c.bytesUp.Load(),
		BytesDown:        c.bytesDown.Load(),
		UDPDatagramsUp:   c.udpDatagramsUp.Load(),
		UDPDatagramsDown: c.udpDatagramsDown.Load(),
		UDPDropped:       c.udpDropped.Load(),
	}
}
