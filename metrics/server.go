package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultListen is where metrics are served when [metrics] listen is empty:
// loopback only (the port of the common WireGuard exporter, so existing
// scrape configs find it).
const DefaultListen = "127.0.0.1:9586"

// Handler serves g in the Prometheus text format. Scrapes are limited to
// two at a time and 10 s each; errors of one collector do not fail the
// others.
func Handler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 2,
		Timeout:             10 * time.Second,
	})
}

// Server serves /metrics until Close.
type Server struct {
	ln   net.Listener
	http *http.Server
	done chan struct{}
}

// Listen serves g on addr (host:port) at /metrics.
func Listen(addr string, g prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(g, log))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "exitd metrics: /metrics")
	})
	s := &Server{ln: ln, done: make(chan struct{}), http: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	go s.routineServe(log)
	return s, nil
}

// Addr is the address actually listened on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) routineServe(log *slog.Logger) {
	defer close(s.done)
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics: serve", "err", err)
	}
}

// Close stops serving and waits for in-flight scrapes up to ctx. It is
// idempotent.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	<-s.done
	return err
}
