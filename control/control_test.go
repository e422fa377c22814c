package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/keys"
	"exitd/members"
)

// fakeBackend keeps members in a map; it is a unit-test double only.
type fakeBackend struct {
	mu    sync.Mutex
	ms    map[string]Member
	next  uint32
	lastQ ListQuery
}

func (f *fakeBackend) AddMembers(_ context.Context, req AddMembersRequest) ([]Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Member
	for _, r := range req.Members {
		if err := members.CheckLabel(r.Label); err != nil {
			return nil, err
		}
		if r.PublicKey != "" {
			if _, err := keys.Parse(r.PublicKey); err != nil {
				return nil, fmt.Errorf("%w: %v", members.ErrInvalidKey, err)
			}
		}
		if _, ok := f.ms[r.Label]; ok {
			return nil, fmt.Errorf("%w: %s", members.ErrDuplicate, r.Label)
		}
		switch r.Label {
		case "full":
			return nil, members.ErrExhausted
		case "boom":
			return nil, errors.New("disk on fire")
		case "clash":
			return nil, fmt.Errorf("%w: that is the node's own key", ErrConflict)
		case "heavy":
			return nil, fmt.Errorf("%w: weight", members.ErrInvalidPolicy)
		}
		f.next++
		m := Member{ID: f.next, Label: r.Label, PublicKey: r.PublicKey, Weight: r.Weight, Disabled: r.Disabled}
		if req.Configs {
			m.Config = "[Interface]\n"
		}
		out = append(out, m)
	}
	for _, m := range out {
		f.ms[m.Label] = m
	}
	return out, nil
}

func (f *fakeBackend) RemoveMembers(_ context.Context, refs []string) ([]Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Member
	for _, ref := range refs {
		m, ok := f.ms[ref]
		if !ok {
			return nil, fmt.Errorf("%w: %s", members.ErrNotFound, ref)
		}
		out = append(out, m)
	}
	for _, m := range out {
		delete(f.ms, m.Label)
	}
	return out, nil
}

func (f *fakeBackend) UpdateMember(_ context.Context, ref string, req UpdateMemberRequest) (Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.ms[ref]
	if !ok {
		return Member{}, fmt.Errorf("%w: %s", members.ErrNotFound, ref)
	}
	if req.Weight != nil {
		m.Weight = *req.Weight
	}
	if req.Disabled != nil {
		m.Disabled = *req.Disabled
	}
	if req.EgressLimit != nil {
		m.EgressLimit = *req.EgressLimit
	}
	f.ms[ref] = m
	return m, nil
}

func (f *fakeBackend) Members(_ context.Context, q ListQuery) ([]Member, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastQ = q
	var out []Member
	for _, m := range f.ms {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return int(a.ID) - int(b.ID) })
	page, total := q.Apply(out, time.Now())
	return page, total, nil
}

func (f *fakeBackend) Member(_ context.Context, ref string) (Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.ms[ref]
	if !ok {
		return Member{}, members.ErrNotFound
	}
	return m, nil
}

func (f *fakeBackend) Status(context.Context) (Status, error) {
	return Status{Version: "test", MembersTotal: len(f.ms)}, nil
}

func serve(t *testing.T, allow func(Peer) bool) (*Client, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl") // short path: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "c.sock")
	s, err := Listen(ServerOptions{Path: path, Backend: &fakeBackend{ms: map[string]Member{}}, Allow: allow, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return NewClient(path), path
}

func code(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

func TestMemberLifecycle(t *testing.T) {
	c, path := serve(t, nil)
	ctx := context.Background()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v %v", st.Mode(), err)
	}
	m, err := c.AddMember(ctx, AddMemberRequest{Label: "alice"})
	if err != nil || m.Label != "alice" || m.Config == "" {
		t.Fatalf("add: %+v %v", m, err)
	}
	ms, err := c.Members(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("list: %v %v", ms, err)
	}
	if _, err := c.Member(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	s, err := c.Status(ctx)
	if err != nil || s.MembersTotal != 1 {
		t.Fatalf("status %+v %v", s, err)
	}
	if _, err := c.RemoveMember(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveMember(ctx, "alice"); code(err) != CodeNotFound {
		t.Fatalf("second remove: %v", err)
	}
	ms, err = c.Members(ctx)
	if err != nil || ms == nil || len(ms) != 0 {
		t.Fatalf("empty list should be [], got %#v %v", ms, err)
	}
}

func TestErrorCodes(t *testing.T) {
	c, _ := serve(t, nil)
	ctx := context.Background()
	if _, err := c.AddMember(ctx, AddMemberRequest{Label: "a"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  AddMemberRequest
		code string
	}{
		{"bad key", AddMemberRequest{Label: "b", PublicKey: "nope"}, CodeInvalidKey},
		{"bad label", AddMemberRequest{Label: "a b"}, CodeInvalidLabel},
		{"duplicate", AddMemberRequest{Label: "a"}, CodeDuplicate},
		{"exhausted", AddMemberRequest{Label: "full"}, CodeExhausted},
		{"internal", AddMemberRequest{Label: "boom"}, CodeInternal},
		{"conflict", AddMemberRequest{Label: "clash"}, CodeConflict},
		{"policy", AddMemberRequest{Label: "heavy"}, CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AddMember(ctx, tc.req)
			if code(err) != tc.code {
				t.Fatalf("code of %v = %q, want %q", err, code(err), tc.code)
			}
			if !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("message %q lacks code", err)
			}
		})
	}
}

func TestForbiddenPeer(t *testing.T) {
	c, _ := serve(t, func(Peer) bool { return false })
	_, err := c.Status(context.Background())
	if code(err) != CodeForbidden {
		t.Fatalf("want forbidden, got %v", err)
	}
}

func TestPeerCredentialsSeen(t *testing.T) {
	var got Peer
	var mu sync.Mutex
	c, _ := serve(t, func(p Peer) bool { mu.Lock(); got = p; mu.Unlock(); return true })
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.UID != uint32(os.Geteuid()) || got.PID != int32(os.Getpid()) {
		t.Fatalf("peer %+v, want uid %d pid %d", got, os.Geteuid(), os.Getpid())
	}
}

func TestUnknownVersionAndPath(t *testing.T) {
	c, _ := serve(t, nil)
	err := c.do(context.Background(), "GET", "/v9/status", nil, &Status{})
	if code(err) != CodeNotFound || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("got %v", err)
	}
}

func TestStaleAndLiveSocket(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "c.sock")
	// A stale socket: bound, then the listener closed without unlinking.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	s, err := Listen(ServerOptions{Path: path, Backend: &fakeBackend{ms: map[string]Member{}}, Group: -1})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer s.Close(context.Background())
	if _, err := Listen(ServerOptions{Path: path, Backend: &fakeBackend{}, Group: -1}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("live socket taken over: %v", err)
	}
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(ServerOptions{Path: file, Backend: &fakeBackend{}, Group: -1}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file replaced: %v", err)
	}
}

func TestClientNoDaemon(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "none.sock"))
	_, err := c.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is exitd running") {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeAddMember(t *testing.T) {
	tests := []struct {
		name, body string
		ok         bool
	}{
		{"ok", `{"label":"a"}`, true},
		{"with key", `{"label":"a","public_key":"x","weight":2}`, true},
		{"unknown field", `{"label":"a","admin":true}`, false},
		{"trailing", `{"label":"a"}{}`, false},
		{"not json", `label=a`, false},
		{"wrong type", `{"label":1}`, false},
		{"empty", ``, false},
		{"huge", `{"label":"` + strings.Repeat("a", maxBody) + `"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeAddMember(strings.NewReader(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, ok want %v", err, tc.ok)
			}
		})
	}
}

func FuzzDecodeAddMember(f *testing.F) {
	f.Add([]byte(`{"label":"a","public_key":"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeAddMember(strings.NewReader(string(b)))
		if err != nil && req != (AddMemberRequest{}) {
			t.Fatalf("error with partial request: %+v", req)
		}
	})
}

func TestHasGroup(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !hasGroup(p, os.Getgid()) || hasGroup(p, os.Getgid()+1) || hasGroup(p+"x", os.Getgid()) {
		t.Fatal("hasGroup wrong")
	}
}
