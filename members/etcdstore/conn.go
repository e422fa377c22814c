package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"exitd/members"
)

// tlsConfig loads the client certificate and the CA; nil when TLS is off.
func tlsConfig(o Options) (*tls.Config, error) {
	if o.CertFile == "" && o.KeyFile == "" && o.CAFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("TLS client certificate and key go together: give both or neither")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s / key %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// hostPort is an endpoint's address, with or without a scheme.
func hostPort(ep string) (string, error) {
	if !strings.Contains(ep, "://") {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return "", fmt.Errorf("endpoint %q: want host:port or a URL: %w", ep, err)
		}
		return ep, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", ep, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Port() == "" {
		return "", fmt.Errorf("endpoint %q: want http(s)://host:port", ep)
	}
	return u.Host, nil
}

// probeTLS tells why TLS fails with the endpoints when it does: the gRPC
// client only says that it timed out. nil when every handshake succeeds
// or no endpoint answers at all (then the store is merely unreachable).
func probeTLS(ctx context.Context, eps []string, cfg *tls.Config, timeout time.Duration) error {
	for _, ep := range eps {
		hp, err := hostPort(ep)
		if err != nil {
			return err
		}
		host, _, _ := net.SplitHostPort(hp)
		c := cfg.Clone()
		c.ServerName = host
		c.NextProtos = []string{"h2"}
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: c}
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := d.DialContext(dctx, "tcp", hp)
		cancel()
		if err != nil {
			var ne net.Error
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Op == "dial" || errors.As(err, &ne) && ne.Timeout() {
				continue // unreachable, not a TLS problem
			}
			return fmt.Errorf("TLS handshake with %s: %w", hp, err)
		}
		// Under TLS 1.3 the server judges the client certificate after the
		// handshake: its alert arrives with the first read.
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if err != nil && strings.Contains(err.Error(), "tls: ") {
			return fmt.Errorf("TLS with %s: the server refused this node's certificate: %w", hp, err)
		}
	}
	return nil
}

// isUnavailable tells errors of an unreachable or leaderless etcd apart
// from answers.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable || ee.Code() == codes.DeadlineExceeded
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// slogCore hands the etcd client's zap records to the store's logger, at
// debug level: the store itself reports what matters (unreachable,
// resync), the client's retries would only repeat it.
type slogCore struct {
	log   *slog.Logger
	attrs []any
}

func newZap(log *slog.Logger) *zap.Logger {
	return zap.New(slogCore{log: log.With("component", "etcd-client")})
}

func (c slogCore) Enabled(zapcore.Level) bool {
	return c.log.Enabled(context.Background(), slog.LevelDebug)
}

func (c slogCore) With(fs []zapcore.Field) zapcore.Core {
	return slogCore{log: c.log, attrs: append(append([]any(nil), c.attrs...), fields(fs)...)}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	c.log.Debug(e.Message, append(append([]any{"level", e.Level.String()}, c.attrs...), fields(fs)...)...)
	return nil
}

func (slogCore) Sync() error { return nil }

func fields(fs []zapcore.Field) []any {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fs {
		f.AddTo(enc)
	}
	out := make([]any, 0, 2*len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, k, v)
	}
	return out
}

// unavailable wraps err of an unreachable etcd.
func (s *Store) unavailable(op string, err error) error {
	return fmt.Errorf("etcdstore: %s: etcd at %s unreachable: %v: %w",
		op, strings.Join(s.opts.Endpoints, ","), err, members.ErrStoreUnavailable)
}
