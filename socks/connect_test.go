package socks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

func TestConnect(t *testing.T) {
	echo4 := echoServer(t, lo4)
	echo6 := echoServer(t, lo6)
	tests := []struct {
		name string
		on6  bool // proxy listens on ::1
		dst  addr
	}{
		{"ipv4", false, ipAddr(echo4)},
		{"ipv6", false, ipAddr(echo6)},
		{"name to ipv4", false, addr{name: "echo.test", port: echo4.Port()}},
		{"name to ipv6", false, addr{name: "echo6.test", port: echo6.Port()}},
		{"proxy on ipv6, ipv4 destination", true, ipAddr(echo4)},
		{"proxy on ipv6, ipv6 destination", true, ipAddr(echo6)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, px := startServer(t, testOptions(), tunnelCfg, tt.on6)
			c := mustConnect(t, px, tt.dst)
			roundTrip(t, c, "hello through socks")
			c.Close()
			waitFor(t, "session end", func() bool { return s.Stats().SessionsActive == 0 })
			st := s.Stats()
			if st.ConnectsOK != 1 || st.BytesUp != 19 || st.BytesDown != 19 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestConnectBoundAddress checks BND.ADDR/PORT is the outbound socket.
func TestConnectBoundAddress(t *testing.T) {
	echo := echoServer(t, lo4)
	_, px := startServer(t, testOptions(), tunnelCfg, false)
	c := dialClient(t, px)
	if m, err := c.greet(methodNoAuth); err != nil || m != methodNoAuth {
		t.Fatal(m, err)
	}
	rep, bnd, err := c.request(cmdConnect, ipAddr(echo))
	if err != nil || rep != replySucceeded {
		t.Fatal(rep, err)
	}
	if bnd.ip != lo4 || bnd.port == 0 {
		t.Errorf("bound address %v, want 127.0.0.1 and a port", bnd)
	}
}

// TestConnectPipelined sends greeting, request and data in one write, as
// some clients do: the data must reach the destination.
func TestConnectPipelined(t *testing.T) {
	echo := echoServer(t, lo4)
	_, px := startServer(t, testOptions(), tunnelCfg, false)
	c := dialClient(t, px)
	msg := appendGreeting(nil, methodNoAuth)
	msg = appendRequest(msg, cmdConnect, ipAddr(echo))
	msg = append(msg, "early data"...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c.br, m[:]); err != nil || m[1] != methodNoAuth {
		t.Fatal(m, err)
	}
	if rep, _, err := readReply(c.br); err != nil || rep != replySucceeded {
		t.Fatal(rep, err)
	}
	got := make([]byte, len("early data"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "early data" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestHalfClose: the client shuts its write side, the destination sees EOF,
// answers and closes; the client reads the whole answer.
func TestHalfClose(t *testing.T) {
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan error, 1)
	go func() {
		c, err := l.AcceptTCP()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c) // until the client's half-close
		if err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte("got " + string(b)))
		served <- err
	}()
	s, px := startServer(t, testOptions(), tunnelCfg, false)
	c := mustConnect(t, px, ipAddr(l.Addr().(*net.TCPAddr).AddrPort()))
	io.WriteString(c, "question")
	c.Conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got question" {
		t.Fatalf("got %q, %v", got, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "session end", func() bool { return s.Stats().SessionsActive == 0 })
}

// TestLargeTransfer moves a few MiB both ways at once through the splice
// path and checks the bytes.
func TestLargeTransfer(t *testing.T) {
	echo := echoServer(t, lo4)
	s, px := startServer(t, testOptions(), tunnelCfg, false)
	c := mustConnect(t, px, ipAddr(echo))
	const size = 8 << 20
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(i * 7 / 3)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(src)
		c.Conn.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if len(got) != size || string(got) != string(src) {
		t.Fatalf("echoed %d bytes, want %d identical", len(got), size)
	}
	waitFor(t, "session end", func() bool { return s.Stats().SessionsActive == 0 })
	if st := s.Stats(); st.BytesUp != size || st.BytesDown != size {
		t.Errorf("bytes up %d down %d, want %d", st.BytesUp, st.BytesDown, size)
	}
}

// TestXNetProxyHTTP drives an HTTP request through the server with an
// independent client (golang.org/x/net/proxy), by address and by name.
func TestXNetProxyHTTP(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Host)
	}))
	defer web.Close()
	webAddr := netip.MustParseAddrPort(web.Listener.Addr().String())
	opts := testOptions()
	opts.Resolver = testResolver{"web.test": {lo4}}
	_, px := startServer(t, opts, ListenerConfig{Rules: []Rule{{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Users: map[string]string{"alice": "secret"},
	}}}, false)
	d, err := proxy.SOCKS5("tcp", px.String(), &proxy.Auth{User: "alice", Password: "secret"}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, host := range []string{webAddr.String(), fmt.Sprintf("web.test:%d", webAddr.Port())} {
		resp, err := hc.Get("http://" + host + "/")
		if err != nil {
			t.Fatalf("GET via %s: %v", host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello "+host {
			t.Errorf("GET via %s: %q", host, body)
		}
	}
}

// TestReplyCodes checks one CONNECT per reply code.
func TestReplyCodes(t *testing.T) {
	echo := echoServer(t, lo4)
	failing := func(err error) Dialer {
		return dialFunc(func(ctx context.Context, network, a string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		})
	}
	blocking := dialFunc(func(ctx context.Context, network, a string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	tests := []struct {
		name   string
		dialer Dialer
		cmd    byte
		dst    addr
		raw    []byte // sent instead of a built request
		want   reply
	}{
		{"0x00 succeeded", nil, cmdConnect, ipAddr(echo), nil, replySucceeded},
		{"0x01 general failure", failing(errors.New("something odd")), cmdConnect, ipAddr(echo), nil, replyGeneralFailure},
		{"0x02 denied address", nil, cmdConnect, ipAddr(netip.AddrPortFrom(private, echo.Port())), nil, replyNotAllowed},
		{"0x02 denied mapped address", nil, cmdConnect, addr{ip: netip.MustParseAddr("::ffff:127.0.0.2"), port: 80}, nil, replyNotAllowed},
		{"0x02 name resolving to denied", nil, cmdConnect, addr{name: "private.test", port: echo.Port()}, nil, replyNotAllowed},
		{"0x02 name with one denied address", nil, cmdConnect, addr{name: "mixed.test", port: echo.Port()}, nil, replyNotAllowed},
		{"0x02 unspecified address", nil, cmdConnect, addr{ip: netip.IPv4Unspecified(), port: echo.Port()}, nil, replyNotAllowed},
		{"0x02 port 0", nil, cmdConnect, addr{ip: lo4, port: 0}, nil, replyNotAllowed},
		{"0x03 network unreachable", failing(os.NewSyscallError("connect", syscall.ENETUNREACH)), cmdConnect, ipAddr(echo), nil, replyNetworkUnreachable},
		{"0x04 host unreachable", failing(os.NewSyscallError("connect", syscall.EHOSTUNREACH)), cmdConnect, ipAddr(echo), nil, replyHostUnreachable},
		{"0x04 name not found", nil, cmdConnect, addr{name: "nx.test", port: 80}, nil, replyHostUnreachable},
		{"0x05 connection refused", nil, cmdConnect, ipAddr(closedPort(t)), nil, replyConnectionRefused},
		{"0x06 ETIMEDOUT", failing(os.NewSyscallError("connect", syscall.ETIMEDOUT)), cmdConnect, ipAddr(echo), nil, replyTTLExpired},
		{"0x06 connect timeout", blocking, cmdConnect, ipAddr(echo), nil, replyTTLExpired},
		{"0x07 bind", nil, cmdBind, ipAddr(echo), nil, replyCommandNotSupported},
		{"0x07 unknown command", nil, 0x09, ipAddr(echo), nil, replyCommandNotSupported},
		{"0x08 atyp 5", nil, 0, addr{}, []byte{5, 1, 0, 5, 1, 2, 3, 4, 0, 80}, replyAddrNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.Dialer = tt.dialer
			opts.ConnectTimeout = time.Second
			if strings.HasSuffix(tt.name, "connect timeout") {
				opts.ConnectTimeout = 20 * time.Millisecond
			}
			s, px := startServer(t, opts, tunnelCfg, false)
			c := dialClient(t, px)
			if m, err := c.greet(methodNoAuth); err != nil || m != methodNoAuth {
				t.Fatal(m, err)
			}
			var rep reply
			var err error
			if tt.raw != nil {
				c.Write(tt.raw)
				rep, _, err = readReply(c.br)
			} else {
				rep, _, err = c.request(tt.cmd, tt.dst)
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep != tt.want {
				t.Fatalf("reply %v (%#02x), want %v (%#02x)", rep, byte(rep), tt.want, byte(tt.want))
			}
			if rep != replySucceeded {
				// A refusal ends the session.
				if n, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("after refusal read %d, %v; want EOF", n, err)
				}
			}
			st := s.Stats()
			switch {
			case rep == replyNotAllowed && st.RefusedRuleset != 1:
				t.Errorf("RefusedRuleset %d, want 1", st.RefusedRuleset)
			case rep >= replyCommandNotSupported && st.HandshakeErrors != 1:
				t.Errorf("HandshakeErrors %d, want 1", st.HandshakeErrors)
			case rep != replySucceeded && rep != replyNotAllowed && rep < replyCommandNotSupported && st.ConnectsFailed != 1:
				t.Errorf("ConnectsFailed %d, want 1", st.ConnectsFailed)
			}
		})
	}
}

func TestReplyFor(t *testing.T) {
	op := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	tests := []struct {
		err  error
		want reply
	}{
		{nil, replySucceeded},
		{errors.New("x"), replyGeneralFailure},
		{ErrDenied, replyNotAllowed},
		{errors.Join(errResolve, &net.DNSError{IsTimeout: true}), replyHostUnreachable},
		{op(os.NewSyscallError("connect", syscall.ENETUNREACH)), replyNetworkUnreachable},
		{op(os.NewSyscallError("connect", syscall.EHOSTUNREACH)), replyHostUnreachable},
		{op(os.NewSyscallError("connect", syscall.ECONNREFUSED)), replyConnectionRefused},
		{op(os.NewSyscallError("connect", syscall.ETIMEDOUT)), replyTTLExpired},
		{op(context.DeadlineExceeded), replyTTLExpired},
		{op(os.ErrDeadlineExceeded), replyTTLExpired},
		{op(context.Canceled), replyGeneralFailure},
	}
	for _, tt := range tests {
		if got := replyFor(tt.err); got != tt.want {
			t.Errorf("replyFor(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestRealDialTimeout: a real net.Dialer timing out maps to 0x06 as well.
func TestRealDialTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:1")
	if err == nil {
		t.Skip("dial did not fail")
	}
	if got := replyFor(err); got != replyTTLExpired {
		t.Errorf("replyFor(%v) = %v, want TTL expired", err, got)
	}
}

func TestAuth(t *testing.T) {
	echo := echoServer(t, lo4)
	cfg := ListenerConfig{Rules: []Rule{
		{Allow: []netip.Prefix{netip.MustParsePrefix("::1/128")}}, // no auth for ::1
		{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Users: map[string]string{"alice": "secret"}},
	}}
	tests := []struct {
		name       string
		methods    []byte
		user, pass string
		wantMethod byte
		wantStatus byte
		wantReply  reply
	}{
		{"good password", []byte{methodNoAuth, methodUserPass}, "alice", "secret", methodUserPass, 0, replySucceeded},
		{"bad password", []byte{methodUserPass}, "alice", "wrong", methodUserPass, 1, 0},
		{"unknown user", []byte{methodUserPass}, "bob", "secret", methodUserPass, 1, 0},
		{"password prefix", []byte{methodUserPass}, "alice", "secre", methodUserPass, 1, 0},
		{"no acceptable method", []byte{methodNoAuth, methodGSSAPI}, "", "", methodNoAcceptable, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, px := startServer(t, testOptions(), cfg, false)
			c := dialClient(t, px)
			m, err := c.greet(tt.methods...)
			if err != nil || m != tt.wantMethod {
				t.Fatalf("method %#x, %v; want %#x", m, err, tt.wantMethod)
			}
			if m == methodNoAcceptable {
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("after 0xFF: %v, want EOF", err)
				}
				if s.Stats().RefusedAuth != 1 {
					t.Errorf("RefusedAuth = %d", s.Stats().RefusedAuth)
				}
				return
			}
			st, err := c.auth(tt.user, tt.pass)
			if err != nil || st != tt.wantStatus {
				t.Fatalf("auth status %d, %v; want %d", st, err, tt.wantStatus)
			}
			if st != 0 {
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("after failed auth: %v, want EOF", err)
				}
				if s.Stats().RefusedAuth != 1 {
					t.Errorf("RefusedAuth = %d", s.Stats().RefusedAuth)
				}
				return
			}
			rep, _, err := c.request(cmdConnect, ipAddr(echo))
			if err != nil || rep != tt.wantReply {
				t.Fatalf("reply %v, %v", rep, err)
			}
			roundTrip(t, c, "authenticated")
		})
	}
	t.Run("first matching rule without users", func(t *testing.T) {
		_, px := startServer(t, testOptions(), cfg, true)
		c := mustConnect(t, px, ipAddr(echo))
		roundTrip(t, c, "no auth from ::1")
	})
}

// TestNotAdmitted: a source no rule allows, and a tunnel source Identify
// rejects, are answered 0x02 after the request.
func TestNotAdmitted(t *testing.T) {
	echo := echoServer(t, lo4)
	t.Run("no rule", func(t *testing.T) {
		cfg := ListenerConfig{Rules: []Rule{{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}
		s, px := startServer(t, testOptions(), cfg, false)
		if _, rep := connect(t, px, ipAddr(echo)); rep != replyNotAllowed {
			t.Fatalf("reply %v", rep)
		}
		if st := s.Stats(); st.RefusedRuleset != 1 || st.ConnectsOK != 0 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("unidentified tunnel source", func(t *testing.T) {
		opts := testOptions()
		opts.Identify = func(netip.Addr) (string, bool) { return "", false }
		s, px := startServer(t, opts, tunnelCfg, false)
		if _, rep := connect(t, px, ipAddr(echo)); rep != replyNotAllowed {
			t.Fatalf("reply %v", rep)
		}
		if st := s.Stats(); st.RefusedRuleset != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestListenerConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		cfg  ListenerConfig
		want string
	}{
		{"tunnel with rules", testOptions(), ListenerConfig{Tunnel: true, Rules: []Rule{{}}}, "tunnel listener takes no rules"},
		{"no rules", testOptions(), ListenerConfig{}, "at least one rule"},
		{"rule without prefixes", testOptions(), ListenerConfig{Rules: []Rule{{}}}, "no allow prefixes"},
		{"empty password", testOptions(), ListenerConfig{Rules: []Rule{{
			Allow: []netip.Prefix{netip.MustParsePrefix("::/0")}, Users: map[string]string{"u": ""}}}}, "1–255 bytes"},
		{"tunnel without Identify", Options{}, tunnelCfg, "needs Options.Identify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			l, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			err = s.Serve(l, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Serve: %v, want %q", err, tt.want)
			}
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("listener not closed: %v", err)
			}
		})
	}
	if _, err := New(Options{IdleTimeout: -1}); err == nil {
		t.Error("New accepted a negative timeout")
	}
}

func TestHandshakeTimeout(t *testing.T) {
	opts := testOptions()
	opts.HandshakeTimeout = 50 * time.Millisecond
	s, px := startServer(t, opts, tunnelCfg, false)
	c := dialClient(t, px)
	c.Write([]byte{5}) // half a greeting
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("closed after %v, before the handshake timeout", d)
	}
	if st := s.Stats(); st.HandshakeErrors != 1 {
		t.Errorf("HandshakeErrors = %d", st.HandshakeErrors)
	}
}

func TestStart(t *testing.T) {
	echo := echoServer(t, lo4)
	s, err := New(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	port := closedPort(t).Port()
	cfgs := []ListenerConfig{
		{Addr: netip.AddrPortFrom(lo4, port), Tunnel: true},
		{Addr: netip.AddrPortFrom(lo6, port), Tunnel: true},
	}
	if err := s.Start(cfgs); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range cfgs {
		c := mustConnect(t, cfg.Addr, ipAddr(echo))
		roundTrip(t, c, "via "+cfg.Addr.String())
	}
	// A second Start on the same addresses fails and leaves nothing open.
	if err := s.Start(cfgs[1:]); err == nil {
		t.Error("Start on a busy address succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(nil); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	checkNoGoroutines(t)
}

// TestDialerLocalAddr: a *net.Dialer's LocalAddr is honoured (DialTCP, the
// fast path for *net.Dialer, would not see it).
func TestDialerLocalAddr(t *testing.T) {
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	src := closedPort(t) // a free local port to dial from
	opts := testOptions()
	opts.Dialer = &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(src)}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.dialAddr(t.Context(), l.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if got := in.RemoteAddr().(*net.TCPAddr).AddrPort(); got != src {
		t.Errorf("dialed from %v, want LocalAddr %v", got, src)
	}
}
