package netlab

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// newHandlerServer returns an HTTPServer's handler without listening, for
// tests that need no root.
func newHandlerServer() (*HTTPServer, http.Handler) {
	s := &HTTPServer{ns: &NS{Role: "unit"}}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.handleRoot)
	mux.HandleFunc("/ip", s.handleIP)
	mux.HandleFunc("/bytes", s.handleBytes)
	return s, s.record(mux)
}

func TestHTTPHandlers(t *testing.T) {
	tests := []struct {
		name, target, remote string
		code                 int
		body                 string
		length               int
	}{
		{"root", "/", "192.0.2.1:1000", 200, "netlab unit\n", -1},
		{"ip v4", "/ip", "192.0.2.1:1000", 200, "192.0.2.1\n", -1},
		{"ip mapped", "/ip", "[::ffff:192.0.2.7]:1000", 200, "192.0.2.7\n", -1},
		{"ip v6", "/ip", "[2001:db8::1]:1000", 200, "2001:db8::1\n", -1},
		{"ip garbage", "/ip", "nonsense", 500, "", -1},
		{"bytes", "/bytes?n=12345", "192.0.2.1:1", 200, "", 12345},
		{"bytes zero", "/bytes?n=0", "192.0.2.1:1", 200, "", 0},
		{"bytes missing", "/bytes", "192.0.2.1:1", 400, "", -1},
		{"bytes negative", "/bytes?n=-5", "192.0.2.1:1", 400, "", -1},
		{"bytes huge", "/bytes?n=1099511627777", "192.0.2.1:1", 400, "", -1},
		{"bytes text", "/bytes?n=ten", "192.0.2.1:1", 400, "", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, h := newHandlerServer()
			req := httptest.NewRequest(http.MethodGet, tc.target, nil)
			req.RemoteAddr = tc.remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d (%q)", rec.Code, tc.code, rec.Body.String())
			}
			if tc.body != "" && rec.Body.String() != tc.body {
				t.Fatalf("body %q, want %q", rec.Body.String(), tc.body)
			}
			if tc.length >= 0 {
				if rec.Body.Len() != tc.length || rec.Header().Get("Content-Length") != strconv.Itoa(tc.length) {
					t.Fatalf("got %d bytes, Content-Length %q; want %d", rec.Body.Len(), rec.Header().Get("Content-Length"), tc.length)
				}
				if strings.Trim(rec.Body.String(), "\x00") != "" {
					t.Fatalf("body is not zeros")
				}
			}
		})
	}
}

func TestHTTPRecord(t *testing.T) {
	s, h := newHandlerServer()
	local := &net.TCPAddr{IP: net.ParseIP("::ffff:203.0.113.2"), Port: 80}
	for _, remote := range []string{"[::ffff:203.0.113.1]:4000", "[2001:2:0:1::1]:4001", "bogus"} {
		req := httptest.NewRequest(http.MethodPost, "/ip", nil)
		req.RemoteAddr = remote
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.Addr(local)))
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	got := s.Requests()
	want := []Request{
		{netip.MustParseAddrPort("203.0.113.1:4000"), netip.MustParseAddrPort("203.0.113.2:80"), "POST", "/ip"},
		{netip.MustParseAddrPort("[2001:2:0:1::1]:4001"), netip.MustParseAddrPort("203.0.113.2:80"), "POST", "/ip"},
		{netip.AddrPort{}, netip.MustParseAddrPort("203.0.113.2:80"), "POST", "/ip"},
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	got[0].Path = "changed"
	if s.Requests()[0].Path != "/ip" {
		t.Errorf("Requests returned the internal slice")
	}
}

func TestZeroReader(t *testing.T) {
	b := []byte("xxxx")
	if n, err := (zeroReader{}).Read(b); n != 4 || err != nil || string(b) != "\x00\x00\x00\x00" {
		t.Fatalf("Read = %d, %v, %q", n, err, b)
	}
}

// TestServeHTTPStopsWithContext: a server whose ctx ends stops listening
// and leaves the lab's tracker.
func TestServeHTTPStopsWithContext(t *testing.T) {
	l := newLab(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	srv, err := l.Internet.ServeHTTP(ctx, netip.MustParseAddrPort(Internet4+":0"), netip.MustParseAddrPort("["+Internet6+"]:0"))
	if err != nil {
		t.Fatal(err)
	}
	if len(srv.Addrs) != 2 || srv.Addrs[0].Port() == 0 || srv.Addrs[0].Addr().String() != Internet4 || srv.Addrs[1].Addr().String() != Internet6 {
		t.Fatalf("bound %v", srv.Addrs)
	}
	port := int(srv.Addrs[0].Port())
	if ok, err := l.Internet.listeningTCP(port); !ok || err != nil {
		t.Fatalf("listeningTCP(%d) in the server's namespace = %v, %v", port, ok, err)
	}
	if ok, _ := l.Exit.listeningTCP(port); ok {
		t.Fatalf("port %d listens in the exit too", port)
	}
	if _, body := get(t, l.Exit, "http://"+srv.Addrs[1].String()+"/ip"); body != ExitWAN6+"\n" {
		t.Fatalf("GET over v6 = %q", body)
	}
	cancel()
	if err := WaitFor(t.Context(), 5*time.Second, func() bool {
		ok, _ := l.Internet.listeningTCP(port)
		return !ok
	}); err != nil {
		t.Fatalf("server still listening after its ctx ended")
	}
	l.tr.mu.Lock()
	n := len(l.tr.closers)
	l.tr.mu.Unlock()
	if n != 0 {
		t.Fatalf("tracker still holds %d closers", n)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close after ctx end: %v", err)
	}
}

// TestServeHTTPListenError: a foreign address cannot be bound and nothing
// is left listening.
func TestServeHTTPListenError(t *testing.T) {
	l := newLab(t, Options{})
	_, err := l.Internet.ServeHTTP(t.Context(), netip.MustParseAddrPort(Internet4+":0"), netip.MustParseAddrPort(ExitWAN4+":80"))
	if err == nil || !strings.Contains(err.Error(), "http listen "+ExitWAN4+":80") {
		t.Fatalf("ServeHTTP on a foreign address = %v", err)
	}
}

// TestBytesStream reads a large body through the lab to check streaming.
func TestBytesStream(t *testing.T) {
	l := newLab(t, Options{})
	if _, err := l.Internet.ServeHTTP(t.Context()); err != nil {
		t.Fatal(err)
	}
	resp, err := l.Exit.HTTPClient().Get("http://" + Internet4 + "/bytes?n=50000000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != 50000000 || resp.ContentLength != 50000000 {
		t.Fatalf("read %d bytes (Content-Length %d): %v", n, resp.ContentLength, err)
	}
}
