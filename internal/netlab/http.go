package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
)

// HTTPPort is where ServeHTTP listens when given no addresses.
const HTTPPort = 80

// maxBytes bounds /bytes?n=N (1 TiB: a benchmark stops it long before).
const maxBytes = 1 << 40

// Request is what an HTTPServer recorded about one request.
type Request struct {
	Remote netip.AddrPort // source as the server saw it (IPv4 unmapped)
	Local  netip.AddrPort // server address the request arrived on
	Method string
	Path   string
}

// HTTPServer is a tiny server inside a lab namespace. Routes:
//
//	/          "netlab <role>\n"
//	/ip        the client's address as seen by the server, and "\n"
//	/bytes?n=N N bytes (Content-Length set), streamed
//
// It records every request.
type HTTPServer struct {
	Addrs []netip.AddrPort // bound addresses (port filled in)

	ns  *NS
	srv *http.Server
	wg  sync.WaitGroup // serve loops, all started before Close can run

	mu       sync.Mutex  // guards the fields below
	stopFunc func() bool // stops the ctx watcher
	reqs     []Request
}

// ServeHTTP starts an HTTPServer inside the namespace, listening on addrs
// (port 0 picks one), or on every address of the namespace at HTTPPort
// ([::]:80, dual-stack) when addrs is empty. It stops when ctx ends, on
// Close, or on Lab.Close.
func (n *NS) ServeHTTP(ctx context.Context, addrs ...netip.AddrPort) (*HTTPServer, error) {
	specs := make([]string, 0, len(addrs))
	for _, a := range addrs {
		specs = append(specs, a.String())
	}
	if len(specs) == 0 {
		specs = []string{net.JoinHostPort("::", strconv.Itoa(HTTPPort))}
	}
	s := &HTTPServer{ns: n}
	var lns []net.Listener
	err := n.Run(func() error {
		for _, spec := range specs {
			ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", spec)
			if err != nil {
				return fmt.Errorf("netlab: %s: http listen %s: %w", n.Name, spec, err)
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handleRoot)
	mux.HandleFunc("/ip", s.handleIP)
	mux.HandleFunc("/bytes", s.handleBytes)
	s.srv = &http.Server{Handler: s.record(mux)}
	for _, ln := range lns {
		s.Addrs = append(s.Addrs, addrPort(ln.Addr()))
	}
	for _, ln := range lns {
		s.wg.Go(func() { _ = s.srv.Serve(ln) }) // returns ErrServerClosed on Close
	}
	s.mu.Lock()
	s.stopFunc = context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Unlock()
	if err := n.tr.addCloser(s); err != nil {
		s.Close()
		return nil, err
	}
	n.log.Debug("netlab: http serving", "ns", n.Name, "addrs", s.Addrs)
	return s, nil
}

// Close stops the server and waits for its serve loops. Idempotent.
func (s *HTTPServer) Close() error {
	s.mu.Lock()
	stop := s.stopFunc
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	err := s.srv.Close()
	s.wg.Wait()
	s.ns.tr.removeCloser(s)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("netlab: %s: http close: %w", s.ns.Name, err)
	}
	return nil
}

// Requests returns a copy of the requests recorded so far, in arrival order.
func (s *HTTPServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

func (s *HTTPServer) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{Method: r.Method, Path: r.URL.Path}
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			req.Remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			req.Local = addrPort(la)
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (s *HTTPServer) handleRoot(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintf(w, "netlab %s\n", s.ns.Role)
}

func (s *HTTPServer) handleIP(w http.ResponseWriter, r *http.Request) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%s\n", ap.Addr().Unmap())
}

func (s *HTTPServer) handleBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > maxBytes {
		http.Error(w, "n must be an integer in [0, 2^40]", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	_, _ = io.CopyN(w, zeroReader{}, n) // a client hanging up is not our error
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// addrPort converts a TCP address to netip form (IPv4 unmapped).
func addrPort(a net.Addr) netip.AddrPort {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// DialContext opens a connection from inside the namespace (the socket is
// created there, then used from any goroutine).
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Run(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: dial %s %s: %w", n.Name, network, addr, err)
	}
	return c, nil
}

// HTTPClient returns a client whose connections originate inside the
// namespace. It keeps no idle connections, so nothing outlives a request.
func (n *NS) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       n.DialContext,
		DisableKeepAlives: true,
	}}
}
