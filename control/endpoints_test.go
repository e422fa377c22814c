package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"exitd/members"
)

// errBackend fails every call with err and records what it was asked.
type errBackend struct {
	mu      sync.Mutex
	err     error
	refs    []string
	adds    AddMembersRequest
	update  UpdateMemberRequest
	listQ   ListQuery
	calls   int
	members []Member
}

func (b *errBackend) record(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	f()
}

func (b *errBackend) AddMembers(_ context.Context, req AddMembersRequest) ([]Member, error) {
	b.record(func() { b.adds = req })
	return b.members, b.err
}

func (b *errBackend) RemoveMembers(_ context.Context, refs []string) ([]Member, error) {
	b.record(func() { b.refs = refs })
	return b.members, b.err
}

func (b *errBackend) UpdateMember(_ context.Context, ref string, req UpdateMemberRequest) (Member, error) {
	b.record(func() { b.refs, b.update = []string{ref}, req })
	return first(b.members), b.err
}

func (b *errBackend) Members(_ context.Context, q ListQuery) ([]Member, int, error) {
	b.record(func() { b.listQ = q })
	return b.members, len(b.members), b.err
}

func (b *errBackend) Member(_ context.Context, ref string) (Member, error) {
	b.record(func() { b.refs = []string{ref} })
	return first(b.members), b.err
}

func (b *errBackend) Status(context.Context) (Status, error) {
	b.record(func() {})
	return Status{Version: "x"}, b.err
}

// testHandler is the server's handler without a socket; every request is
// made as root unless the test says otherwise.
func testHandler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{b: b, log: log, allow: func(p Peer) bool { return p.UID == 0 }}
	return h.routes()
}

func do(t *testing.T, h http.Handler, method, target, body string, peer *Peer) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if peer != nil {
		r = r.WithContext(context.WithValue(r.Context(), peerKey{}, *peer))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var root = &Peer{UID: 0, PID: 1}

func errorBody(t *testing.T, w *httptest.ResponseRecorder) APIError {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error content type %q", ct)
	}
	var eb ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return eb.Error
}

var endpoints = []struct {
	name, method, path, body string
}{
	{"status", "GET", "/v1/status", ""},
	{"list", "GET", "/v1/members", ""},
	{"get", "GET", "/v1/members/alice", ""},
	{"add", "POST", "/v1/members", `{"label":"alice"}`},
	{"batch add", "POST", "/v1/members:batch", `{"members":[{"label":"alice"}]}`},
	{"batch remove", "POST", "/v1/members:batchRemove", `{"refs":["alice"]}`},
	{"update", "PATCH", "/v1/members/alice", `{"weight":2}`},
	{"remove", "DELETE", "/v1/members/alice", ""},
}

func TestEndpointErrorCodes(t *testing.T) {
	errs := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"not found", fmt.Errorf("%w: alice", members.ErrNotFound), 404, CodeNotFound},
		{"duplicate", fmt.Errorf("%w: alice", members.ErrDuplicate), 409, CodeDuplicate},
		{"exhausted", members.ErrExhausted, 409, CodeExhausted},
		{"bad key", fmt.Errorf("%w: short", members.ErrInvalidKey), 400, CodeInvalidKey},
		{"bad label", members.ErrInvalidLabel, 400, CodeInvalidLabel},
		{"policy", fmt.Errorf("x: %w", members.ErrInvalidPolicy), 400, CodeInvalidRequest},
		{"conflict", fmt.Errorf("%w: device said no", ErrConflict), 409, CodeConflict},
		{"api error", &APIError{Code: "rate_limited", Message: "slow down"}, 400, "rate_limited"},
		{"wrapped api error", fmt.Errorf("wrap: %w", &APIError{Code: CodeInvalidRequest, Message: "m"}), 400, CodeInvalidRequest},
		{"internal", errors.New("disk on fire"), 500, CodeInternal},
	}
	for _, ep := range endpoints {
		for _, e := range errs {
			t.Run(ep.name+"/"+e.name, func(t *testing.T) {
				var logs bytes.Buffer
				b := &errBackend{err: e.err}
				h := testHandler(b, slog.New(slog.NewTextHandler(&logs, nil)))
				w := do(t, h, ep.method, ep.path, ep.body, root)
				if w.Code != e.status {
					t.Fatalf("status %d, want %d (%s)", w.Code, e.status, w.Body)
				}
				ae := errorBody(t, w)
				if ae.Code != e.code || ae.Message != e.err.Error() {
					t.Fatalf("got %+v, want code %s message %q", ae, e.code, e.err)
				}
				if logged := strings.Contains(logs.String(), "request failed"); logged != (e.code == CodeInternal) {
					t.Fatalf("logged=%v for code %s: %q", logged, e.code, logs.String())
				}
				if w.Header().Get(TotalHeader) != "" {
					t.Fatal("total header set on an error")
				}
			})
		}
	}
}

func TestEndpointSuccess(t *testing.T) {
	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			b := &errBackend{members: []Member{{ID: 7, Label: "alice"}}}
			w := do(t, testHandler(b, nil), ep.method, ep.path, ep.body, root)
			want := http.StatusOK
			if ep.method == "POST" && ep.name != "batch remove" {
				want = http.StatusCreated
			}
			if w.Code != want || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("status %d type %q, want %d json", w.Code, w.Header().Get("Content-Type"), want)
			}
			if b.calls != 1 {
				t.Fatalf("backend called %d times", b.calls)
			}
			if !strings.Contains(w.Body.String(), `"alice"`) && ep.name != "status" {
				t.Fatalf("body %s lacks the member", w.Body)
			}
		})
	}
}

func TestEndpointBackendArguments(t *testing.T) {
	b := &errBackend{}
	h := testHandler(b, nil)
	do(t, h, "POST", "/v1/members", `{"label":"a","weight":3}`, root)
	if len(b.adds.Members) != 1 || b.adds.Members[0].Weight != 3 || !b.adds.Configs {
		t.Fatalf("single add asks for configs: %+v", b.adds)
	}
	do(t, h, "POST", "/v1/members:batch", `{"members":[{"label":"a"},{"label":"b"}]}`, root)
	if len(b.adds.Members) != 2 || b.adds.Configs {
		t.Fatalf("batch add: %+v", b.adds)
	}
	do(t, h, "DELETE", "/v1/members/a%2Fb", "", root)
	if len(b.refs) != 1 || b.refs[0] != "a/b" {
		t.Fatalf("escaped ref: %q", b.refs)
	}
	do(t, h, "PATCH", "/v1/members/k%2B%3D", `{"disabled":true}`, root)
	if b.refs[0] != "k+=" || b.update.Disabled == nil || !*b.update.Disabled || b.update.Weight != nil {
		t.Fatalf("update: %q %+v", b.refs, b.update)
	}
	w := do(t, h, "GET", "/v1/members?state=idle&sort=-rate&limit=5", "", root)
	if w.Code != 200 || b.listQ != (ListQuery{State: "idle", Sort: "-rate", Limit: 5}) {
		t.Fatalf("list query %+v (%d)", b.listQ, w.Code)
	}
	if w.Body.String() != "[]\n" || w.Header().Get(TotalHeader) != "0" {
		t.Fatalf("empty list body %q total %q", w.Body, w.Header().Get(TotalHeader))
	}
	w = do(t, h, "DELETE", "/v1/members/ghost", "", root)
	var m Member
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m.Label != "" {
		t.Fatalf("remove answering nothing: %s %v", w.Body, err)
	}
}

func TestBadRequestsNeverReachBackend(t *testing.T) {
	tests := []struct {
		name, method, path, body, msg string
	}{
		{"add not json", "POST", "/v1/members", "label=a", "bad JSON"},
		{"add unknown field", "POST", "/v1/members", `{"label":"a","root":true}`, `unknown field "root"`},
		{"add trailing", "POST", "/v1/members", `{"label":"a"} {"label":"b"}`, "trailing data"},
		{"add too big", "POST", "/v1/members", `{"label":"` + strings.Repeat("x", maxBody) + `"}`, "larger than 65536 bytes"},
		{"batch empty", "POST", "/v1/members:batch", `{"members":[]}`, "batch of 0 members: want 1-5000"},
		{"batch null", "POST", "/v1/members:batch", `null`, "batch of 0 members"},
		{"remove empty", "POST", "/v1/members:batchRemove", `{"refs":[]}`, "batch of 0 refs: want 1-5000"},
		{"remove unknown field", "POST", "/v1/members:batchRemove", `{"refs":["a"],"force":true}`, `unknown field "force"`},
		{"patch nothing", "PATCH", "/v1/members/a", `{}`, "nothing to change"},
		{"patch nulls", "PATCH", "/v1/members/a", `{"weight":null,"disabled":null}`, "nothing to change"},
		{"patch label", "PATCH", "/v1/members/a", `{"label":"b"}`, `unknown field "label"`},
		{"list unknown", "GET", "/v1/members?page=1", "", `unknown query parameter "page"`},
		{"list repeated", "GET", "/v1/members?state=idle&state=idle", "", `"state" given 2 times`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &errBackend{}
			w := do(t, testHandler(b, nil), tc.method, tc.path, tc.body, root)
			if w.Code != 400 {
				t.Fatalf("status %d", w.Code)
			}
			ae := errorBody(t, w)
			if ae.Code != CodeInvalidRequest || !strings.Contains(ae.Message, tc.msg) {
				t.Fatalf("got %+v, want invalid_request mentioning %q", ae, tc.msg)
			}
			if b.calls != 0 {
				t.Fatal("backend called for a bad request")
			}
		})
	}
}

func TestGuard(t *testing.T) {
	tests := []struct {
		name   string
		peer   *Peer
		path   string
		status int
		code   string
	}{
		{"no credentials", nil, "/v1/status", 403, CodeForbidden},
		{"other user", &Peer{UID: 1000}, "/v1/status", 403, CodeForbidden},
		{"other user unknown path", &Peer{UID: 1000}, "/v2/status", 403, CodeForbidden},
		{"root old version", root, "/v0/status", 404, CodeNotFound},
		{"root no version", root, "/status", 404, CodeNotFound},
		{"root bare version", root, "/v1", 404, CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &errBackend{}
			w := do(t, testHandler(b, nil), "GET", tc.path, "", tc.peer)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			ae := errorBody(t, w)
			if ae.Code != tc.code {
				t.Fatalf("code %q, want %q", ae.Code, tc.code)
			}
			if tc.code == CodeNotFound && !strings.Contains(ae.Message, "speaks v1") {
				t.Fatalf("message %q does not name the version", ae.Message)
			}
			if b.calls != 0 {
				t.Fatal("backend reached")
			}
		})
	}
	// Routing below the guard: unknown v1 paths and wrong methods.
	h := testHandler(&errBackend{}, nil)
	if w := do(t, h, "GET", "/v1/nothing", "", root); w.Code != 404 {
		t.Errorf("unknown v1 path: %d", w.Code)
	}
	if w := do(t, h, "PUT", "/v1/members/a", "{}", root); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", w.Code)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{members.ErrNotFound, 404, CodeNotFound},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", members.ErrDuplicate)), 409, CodeDuplicate},
		{errors.Join(errors.New("x"), members.ErrExhausted), 409, CodeExhausted},
		{ErrConflict, 409, CodeConflict},
		{fmt.Errorf("members: update: %w", members.ErrConflict), 409, CodeConflict},
		{fmt.Errorf("members: add: %w", members.ErrStoreUnavailable), 503, CodeUnavailable},
		{&APIError{Code: CodeInvalidLabel}, 400, CodeInvalidLabel},
		{context.Canceled, 500, CodeInternal},
		{errors.New(members.ErrNotFound.Error()), 500, CodeInternal}, // same text, not the error
	}
	for _, tc := range tests {
		status, code := classify(tc.err)
		if status != tc.status || code != tc.code {
			t.Errorf("classify(%v) = %d %s, want %d %s", tc.err, status, code, tc.status, tc.code)
		}
	}
}
