package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseListQueryValues(t *testing.T) {
	type tc struct {
		name, raw string
		want      ListQuery
		err       string
	}
	var tests []tc
	for _, k := range SortKeys {
		tests = append(tests,
			tc{"sort " + k, "sort=" + k, ListQuery{Sort: k}, ""},
			tc{"sort -" + k, "sort=-" + k, ListQuery{Sort: "-" + k}, ""})
	}
	for _, s := range States {
		tests = append(tests, tc{"state " + s, "state=" + s, ListQuery{State: s}, ""})
	}
	tests = append(tests, []tc{
		{"stats false", "stats=false", ListQuery{NoStats: true}, ""},
		{"stats true", "stats=true", ListQuery{}, ""},
		{"stats empty", "stats=", ListQuery{}, `want 0 or 1, got ""`},
		{"offset max", "offset=" + strconv.Itoa(MaxPage), ListQuery{Offset: MaxPage}, ""},
		{"offset over", "offset=" + strconv.Itoa(MaxPage+1), ListQuery{}, "query parameter offset: want a number 0-4194304"},
		{"limit zero", "limit=0", ListQuery{}, ""},
		{"limit text", "limit=ten", ListQuery{}, `query parameter limit: want a number 0-4194304, got "ten"`},
		{"limit empty", "limit=", ListQuery{}, "query parameter limit"},
		{"limit plus", "limit=%2B5", ListQuery{Limit: 5}, ""},
		{"match 256", "match=" + strings.Repeat("m", 256), ListQuery{Match: strings.Repeat("m", 256)}, ""},
		{"match empty", "match=", ListQuery{}, ""},
		{"match escaped", "match=a%20b%26c", ListQuery{Match: "a b&c"}, ""},
		{"state case", "state=Idle", ListQuery{}, `"Idle" is not one of enabled, disabled, connected, idle`},
		{"state empty", "state=", ListQuery{}, "query parameter state"},
		{"sort double dash", "sort=--id", ListQuery{}, `"--id" is not one of`},
		{"sort plus", "sort=+id", ListQuery{}, "prefix - for descending"},
		{"param case", "Match=a", ListQuery{}, `unknown query parameter "Match"`},
		{"empty name", "=a", ListQuery{}, `unknown query parameter ""`},
		{"repeated empty", "match=&match=", ListQuery{}, `"match" given 2 times`},
		{"repeated limit", "limit=1&limit=1", ListQuery{}, `"limit" given 2 times`},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := url.ParseQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			q, err := ParseListQuery(v)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || q != (ListQuery{}) {
					t.Fatalf("got %+v, %v; want error %q", q, err, tc.err)
				}
				return
			}
			if err != nil || q != tc.want {
				t.Fatalf("got %+v %v, want %+v", q, err, tc.want)
			}
		})
	}
}

func TestListQueryValuesEncoding(t *testing.T) {
	if v := (ListQuery{}).Values(); len(v) != 0 {
		t.Fatalf("zero query encodes to %v", v)
	}
	q := ListQuery{Match: "a b", State: "idle", Sort: "-rx", Offset: 3, Limit: 4, NoStats: true}
	if got, want := q.Values().Encode(), "limit=4&match=a+b&offset=3&sort=-rx&state=idle&stats=0"; got != want {
		t.Fatalf("Encode = %q, want %q", got, want)
	}
}

func TestListQueryApplyEdges(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := []Member{
		{ID: 1, Label: "a", Weight: 0, LastHandshake: now.Add(-ConnectedWithin)},
		{ID: 2, Label: "b", Weight: 1, LastHandshake: now.Add(-ConnectedWithin + time.Second)},
		{ID: 3, Label: "c", Weight: 2, Disabled: true, LastHandshake: now},
	}
	labels := func(ms []Member) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Label)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name  string
		q     ListQuery
		want  string
		total int
	}{
		{"handshake exactly at the edge is idle", ListQuery{State: "idle"}, "a", 1},
		{"just inside is connected", ListQuery{State: "connected"}, "b", 1},
		{"disabled is never connected", ListQuery{State: "connected", Match: "c"}, "", 0},
		{"weight 0 ties with 1 by id", ListQuery{Sort: "-weight"}, "c,b,a", 3},
		{"limit past the end", ListQuery{Offset: 2, Limit: 5}, "c", 3},
		{"offset at the end", ListQuery{Offset: 3, Limit: 1}, "", 3},
		{"no match", ListQuery{Match: "zz"}, "", 0},
		{"match is case-insensitive", ListQuery{Match: "B"}, "b", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, total := tc.q.Apply(ms, now)
			if labels(page) != tc.want || total != tc.total {
				t.Fatalf("got %q (%d), want %q (%d)", labels(page), total, tc.want, tc.total)
			}
		})
	}
	if page, total := (ListQuery{}).Apply(nil, now); len(page) != 0 || total != 0 {
		t.Fatalf("nil input: %v %d", page, total)
	}
}

func batchOf(n int, item string) string {
	return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
}

func TestBatchLimits(t *testing.T) {
	tests := []struct {
		name, body string
		fn         func(string) error
		err        string
	}{
		{"add MaxBatch", `{"members":[` + batchOf(MaxBatch, `{"label":"a"}`) + `]}`, decAdds, ""},
		{"add MaxBatch+1", `{"members":[` + batchOf(MaxBatch+1, `{}`) + `]}`, decAdds, "batch of 5001 members: want 1-5000"},
		{"add null members", `{"members":null}`, decAdds, "batch of 0 members"},
		{"add missing members", `{"configs":true}`, decAdds, "batch of 0 members"},
		{"add over body limit", `{"members":[{"label":"` + strings.Repeat("a", maxBatchBody) + `"}]}`, decAdds, "larger than 8388608 bytes"},
		{"add bad member type", `{"members":[1]}`, decAdds, "bad JSON"},
		{"remove MaxBatch", `{"refs":[` + batchOf(MaxBatch, `"r"`) + `]}`, decRemove, ""},
		{"remove MaxBatch+1", `{"refs":[` + batchOf(MaxBatch+1, `"r"`) + `]}`, decRemove, "batch of 5001 refs: want 1-5000"},
		{"remove null", `null`, decRemove, "batch of 0 refs"},
		{"remove number ref", `{"refs":[1]}`, decRemove, "bad JSON"},
		{"remove array body", `["a"]`, decRemove, "bad JSON"},
		{"remove trailing", `{"refs":["a"]}]`, decRemove, "trailing data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fn(tc.body)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestBodyLimitBoundary(t *testing.T) {
	obj := `{"label":"a"}`
	exact := obj + strings.Repeat(" ", maxBody-len(obj))
	if _, err := DecodeAddMember(strings.NewReader(exact)); err != nil {
		t.Fatalf("body of exactly %d bytes: %v", maxBody, err)
	}
	if _, err := DecodeAddMember(strings.NewReader(exact + " ")); err == nil || !strings.Contains(err.Error(), "larger than 65536") {
		t.Fatalf("body of %d bytes: %v", maxBody+1, err)
	}
	if _, err := DecodeAddMember(iotestErr{}); err == nil || !strings.Contains(err.Error(), "read body: broken pipe") {
		t.Fatalf("read error: %v", err)
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestDecodeUpdateMember(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name, body string
		check      func(UpdateMemberRequest) bool
		err        string
	}{
		{"weight", `{"weight":5}`, func(r UpdateMemberRequest) bool { return *r.Weight == 5 && r.Disabled == nil }, ""},
		{"weight negative passes to backend", `{"weight":-1}`, func(r UpdateMemberRequest) bool { return *r.Weight == -1 }, ""},
		{"egress zero clears", `{"egress_limit":0}`, func(r UpdateMemberRequest) bool { return *r.EgressLimit == 0 }, ""},
		{"ingress max", `{"ingress_limit":18446744073709551615}`, func(r UpdateMemberRequest) bool { return *r.IngressLimit == *u(1<<64 - 1) }, ""},
		{"all", `{"weight":1,"egress_limit":2,"ingress_limit":3,"disabled":false}`, func(r UpdateMemberRequest) bool {
			return *r.Weight == 1 && *r.EgressLimit == 2 && *r.IngressLimit == 3 && !*r.Disabled
		}, ""},
		{"ingress overflow", `{"ingress_limit":18446744073709551616}`, nil, "bad JSON"},
		{"weight float", `{"weight":1.5}`, nil, "bad JSON"},
		{"disabled string", `{"disabled":"yes"}`, nil, "bad JSON"},
		{"empty body", ``, nil, "bad JSON: EOF"},
		{"null", `null`, nil, "nothing to change"},
		{"array", `[]`, nil, "bad JSON"},
		{"unknown", `{"weight":1,"id":3}`, nil, `unknown field "id"`},
		{"trailing", `{"weight":1}{"weight":2}`, nil, "trailing data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeUpdateMember(strings.NewReader(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || r != (UpdateMemberRequest{}) {
					t.Fatalf("got %+v, %v; want error %q", r, err, tc.err)
				}
				return
			}
			if err != nil || !tc.check(r) {
				t.Fatalf("got %+v, %v", r, err)
			}
		})
	}
}

// rawServer serves h on a fresh unix socket and returns a client for it.
func rawServer(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "r.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return NewClient(path)
}

func TestClientResponseErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		err    string
		code   string
	}{
		{"plain 500", 500, "oops", "control: GET /v1/status: HTTP 500", ""},
		{"json without code", 502, `{"error":{"message":"m"}}`, "HTTP 502", ""},
		{"coded", 409, `{"error":{"code":"conflict","message":"no"}}`, "no (conflict)", CodeConflict},
		{"redirect", 307, "", "HTTP 307", ""},
		{"bad json 200", 200, "{", "control: bad response to GET /v1/status", ""},
		{"wrong shape 200", 200, `[1]`, "bad response", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			})
			_, err := c.Status(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.err) || code(err) != tc.code {
				t.Fatalf("err = %v (code %q), want %q code %q", err, code(err), tc.err, tc.code)
			}
		})
	}
}

func TestClientRequests(t *testing.T) {
	var got *http.Request
	var body string
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 512)
		n, _ := r.Body.Read(b)
		got, body = r, string(b[:n])
		w.Header().Set(TotalHeader, "not a number")
		switch {
		case r.URL.Path == "/v1/members" && r.Method == "GET":
			fmt.Fprint(w, `[{"id":1},{"id":2}]`)
		default:
			fmt.Fprint(w, `{}`)
		}
	})
	ctx := context.Background()
	ms, total, err := c.ListMembers(ctx, ListQuery{Match: "a&b", Limit: 2})
	if err != nil || len(ms) != 2 || total != 2 {
		t.Fatalf("bad total header falls back to the page size: %d %d %v", len(ms), total, err)
	}
	if got.URL.RawQuery != "limit=2&match=a%26b" {
		t.Fatalf("query %q", got.URL.RawQuery)
	}
	if _, err := c.UpdateMember(ctx, "a/b c", UpdateMemberRequest{}); err != nil {
		t.Fatal(err)
	}
	if got.Method != "PATCH" || got.URL.EscapedPath() != "/v1/members/a%2Fb%20c" || got.Header.Get("Content-Type") != "application/json" || body != "{}" {
		t.Fatalf("update sent %s %s %q %q", got.Method, got.URL.EscapedPath(), got.Header.Get("Content-Type"), body)
	}
	if _, err := c.RemoveMembers(ctx, []string{"x"}); err != nil || got.URL.Path != "/v1/members:batchRemove" || body != `{"refs":["x"]}` {
		t.Fatalf("remove sent %s %q %v", got.URL.Path, body, err)
	}
	if _, err := c.Member(ctx, "k+="); err != nil || got.Header.Get("Content-Type") != "" || got.URL.EscapedPath() != "/v1/members/k+=" {
		t.Fatalf("get sent %s type %q %v", got.URL.EscapedPath(), got.Header.Get("Content-Type"), err)
	}
}

func TestClientDialErrors(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	_, err = NewClient(stale).Status(context.Background())
	if err == nil || err.Error() != "exitd is not answering on "+stale+" (stale socket?)" {
		t.Fatalf("stale socket: %v", err)
	}
	missing := filepath.Join(dir, "none.sock")
	_, err = NewClient(missing).Status(context.Background())
	if err == nil || err.Error() != "no control socket at "+missing+": is exitd running? (set --socket or EXITCTL_SOCKET)" {
		t.Fatalf("missing socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err = NewClient(missing).Status(ctx); err == nil || !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "control: ") {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestDialErrorMessages(t *testing.T) {
	c := NewClient("/run/x.sock")
	tests := []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENOENT)}, "no control socket at /run/x.sock"},
		{fmt.Errorf("w: %w", os.ErrNotExist), "is exitd running?"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "exitd is not answering on /run/x.sock (stale socket?)"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EACCES)}, "permission denied on /run/x.sock: run as root or as a member of the exitd group"},
		{fmt.Errorf("w: %w", os.ErrPermission), "permission denied on /run/x.sock"},
		{errors.New("weird"), "control: weird"},
	}
	for _, tc := range tests {
		if got := c.dialError(tc.err).Error(); !strings.Contains(got, tc.want) {
			t.Errorf("dialError(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestListenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(ServerOptions{Path: filepath.Join(file, "c.sock"), Backend: &errBackend{}, Group: -1})
	if err == nil || !strings.HasPrefix(err.Error(), "control: ") {
		t.Fatalf("socket under a file: %v", err)
	}
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sub", "c.sock")
	s, err := Listen(ServerOptions{Path: path, Backend: &errBackend{}, Group: os.Getgid()})
	if err != nil {
		t.Fatalf("listen creating the directory: %v", err)
	}
	if !hasGroup(path, os.Getgid()) {
		t.Error("socket not in the requested group")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after Close: %v", err)
	}
}

func FuzzDecodeRemoveMembers(f *testing.F) {
	f.Add([]byte(`{"refs":["a","HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="]}`))
	f.Add([]byte(`{"refs":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeRemoveMembers(strings.NewReader(string(b)))
		if err != nil {
			if req.Refs != nil {
				t.Fatalf("error with partial request: %+v", req)
			}
			return
		}
		if len(req.Refs) == 0 || len(req.Refs) > MaxBatch {
			t.Fatalf("accepted %d refs", len(req.Refs))
		}
	})
}

func FuzzHandler(f *testing.F) {
	f.Add("GET", "/v1/members?sort=-rx", "")
	f.Add("POST", "/v1/members:batch", `{"members":[{"label":"a"}]}`)
	f.Add("PATCH", "/v1/members/a", `{"weight":1}`)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") {
			return
		}
		r, err := http.NewRequest(method, "http://x"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), peerKey{}, Peer{}))
		w := httptest.NewRecorder()
		testHandler(&errBackend{}, nil).ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s: status %d", method, target, w.Code)
		}
	})
}
