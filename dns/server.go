package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// serverUDPSize is the read buffer for queries; queries are small, but a
// client may send large EDNS options.
const serverUDPSize = 4096

// Server is the set of UDP and TCP listeners that Listen started.
type Server struct {
	log   *slog.Logger
	addrs []netip.AddrPort
	wg    sync.WaitGroup

	mu      sync.Mutex
	servers []*mdns.Server // started ones; nil once closed
	closed  bool
}

// Listen serves r on UDP and TCP on each address (port 0 picks one port for
// both). The sockets are bound before it returns; on any error the ones
// already started are closed.
func (r *Resolver) Listen(addrs []netip.AddrPort) (*Server, error) {
	s := &Server{log: r.log}
	for _, a := range addrs {
		pc, ln, err := listenPair(a)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("dns: listen %s: %w", a, err)
		}
		bound := netip.AddrPortFrom(a.Addr(), uint16(ln.Addr().(*net.TCPAddr).Port))
		s.addrs = append(s.addrs, bound)
		servers := []*mdns.Server{{PacketConn: pc}, {Listener: ln}}
		// More UDP sockets on the same address (SO_REUSEPORT), one reader
		// each: the kernel spreads queries over them, and one socket's
		// reader and its sendmsg per reply no longer bound the rate.
		for range udpSockets() - 1 {
			extra, err := listenUDP(bound)
			if err != nil {
				break // one socket still serves
			}
			servers = append(servers, &mdns.Server{PacketConn: extra})
		}
		for i, srv := range servers {
			srv.Handler = r
			srv.UDPSize = serverUDPSize
			srv.MsgAcceptFunc = r.accept
			srv.MsgInvalidFunc = r.invalid
			if err := s.start(srv); err != nil {
				for _, rest := range servers[i:] {
					if rest.PacketConn != nil {
						rest.PacketConn.Close()
					}
					if rest.Listener != nil {
						rest.Listener.Close()
					}
				}
				s.Close()
				return nil, fmt.Errorf("dns: serve %s: %w", a, err)
			}
		}
	}
	return s, nil
}

// udpSockets is how many UDP sockets serve each address: one per CPU the
// process may use, at most 8.
func udpSockets() int { return min(max(runtime.GOMAXPROCS(0), 1), 8) }

// reusePort sets SO_REUSEPORT, so several sockets share one address.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// listenUDP binds a UDP socket on a with SO_REUSEPORT.
func listenUDP(a netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(context.Background(), "udp", a.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// listenPair binds UDP and TCP on a; for port 0 it retries until both get
// the same port.
func listenPair(a netip.AddrPort) (*net.UDPConn, *net.TCPListener, error) {
	for try := 0; ; try++ {
		pc, err := listenUDP(a)
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.Addr(), uint16(port))))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if a.Port() != 0 || try == 9 {
			return nil, nil, err
		}
	}
}

// start runs srv in routineServe and waits until it is serving.
func (s *Server) start(srv *mdns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	s.wg.Add(1)
	go s.routineServe(srv, errc)
	select {
	case <-started:
		s.mu.Lock()
		defer s.mu.Unlock()
		s.servers = append(s.servers, srv)
		return nil
	case err := <-errc:
		return err
	}
}

func (s *Server) routineServe(srv *mdns.Server, errc chan<- error) {
	defer s.wg.Done()
	err := srv.ActivateAndServe()
	errc <- err
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if err != nil && !closed && !errors.Is(err, net.ErrClosed) {
		s.log.Error("dns: server stopped", "err", err)
	}
}

// Addrs returns the bound addresses, one per address given to Listen.
func (s *Server) Addrs() []netip.AddrPort {
	return append([]netip.AddrPort(nil), s.addrs...)
}

// Close stops every listener and waits for the queries being answered. It
// is idempotent; later calls return nil.
func (s *Server) Close() error {
	s.mu.Lock()
	servers := s.servers
	done := s.closed
	s.servers, s.closed = nil, true
	s.mu.Unlock()
	if done {
		return nil
	}
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dns: close: %w", err)
	}
	return nil
}

// accept lets every query through to ServeDNS, which counts and answers the
// malformed ones; replies sent to us are dropped (answering could loop).
func (r *Resolver) accept(h mdns.Header) mdns.MsgAcceptAction {
	if h.Bits&(1<<15) != 0 { // QR
		r.stats.queries.Add(1)
		r.stats.malformed.Add(1)
		return mdns.MsgIgnore
	}
	return mdns.MsgAccept
}

// invalid counts a message that did not unpack (the server answers FORMERR
// when the header was readable).
func (r *Resolver) invalid([]byte, error) {
	r.stats.queries.Add(1)
	r.stats.malformed.Add(1)
}
