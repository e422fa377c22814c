package netlab

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"exitd/internal/testenv"
)

// TestLabClose starts a tracked process, an untracked one, an iperf3
// server and an HTTP server, then checks Close removes everything and is
// idempotent.
func TestLabClose(t *testing.T) {
	l := newLab(t, Options{Members: 1})
	ctx := t.Context()
	m := l.Members[0]

	tracked, err := m.Start(m.Command(ctx, "sleep", "300"))
	if err != nil {
		t.Fatal(err)
	}
	iperf, err := l.Internet.StartIperfServer(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	untracked := l.Exit.Command(ctx, "sleep", "300")
	if err := untracked.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() {
		_ = untracked.Wait()
		close(reaped)
	}()
	srv, err := l.Internet.ServeHTTP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Processes really run inside their namespace.
	out, err := m.Exec(ctx, "ip", "-br", "addr", "show", "dev", MemberIface)
	if err != nil || !strings.Contains(string(out), "198.18.1.1/16") {
		t.Fatalf("ip addr in member = %q, %v", out, err)
	}

	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for name, done := range map[string]<-chan struct{}{
		"tracked sleep": tracked.Done(), "iperf3 server": iperf.Done(), "untracked sleep": reaped,
	} {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s still running after Close", name)
		}
	}
	for _, pid := range []int{tracked.Pid(), iperf.Pid(), untracked.Process.Pid} {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d: kill -0 = %v, want ESRCH", pid, err)
		}
	}
	if left := leftovers(t, l.Prefix); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := tracked.Stop(); err != nil {
		t.Errorf("Stop after Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("HTTP Close after lab Close: %v", err)
	}
	if _, err := m.Start(m.Command(ctx, "true")); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if _, err := l.Internet.ServeHTTP(ctx, netip.MustParseAddrPort(Internet4+":0")); err == nil {
		t.Errorf("ServeHTTP after Close succeeded")
	}
}

// TestProcessStop covers output capture, Stop before Close, Wait, and the
// tracker forgetting exited processes.
func TestProcessStop(t *testing.T) {
	l := newLab(t, Options{})
	ctx := t.Context()
	p, err := l.Exit.Start(l.Exit.Command(ctx, "sh", "-c", "echo ready; exec sleep 300"))
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitFor(ctx, 5*time.Second, func() bool { return strings.Contains(p.Output(), "ready") }); err != nil {
		t.Fatalf("output %q: %v", p.Output(), err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	var ee interface{ ExitCode() int }
	if err := p.Wait(); !errors.As(err, &ee) {
		t.Fatalf("Wait after Stop = %v, want a signal exit", err)
	}
	l.tr.mu.Lock()
	n := len(l.tr.procs)
	l.tr.mu.Unlock()
	if n != 0 {
		t.Fatalf("tracker holds %d exited processes", n)
	}
	q, err := l.Exit.Start(l.Exit.Command(ctx, "true"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Wait(); err != nil {
		t.Fatalf("true: %v", err)
	}
}

// TestLabPartialBuild fails the build after every step and checks New
// removed everything it had made.
func TestLabPartialBuild(t *testing.T) {
	testenv.RequireRoot(t)
	linksBefore := rootLinks(t)
	for _, step := range []string{"namespaces", "sysctls", "links", "addresses", "routes", "extra", "shaping"} {
		t.Run(step, func(t *testing.T) {
			prefix := testPrefix(t)
			l, err := New(t.Context(), Options{Members: 2, ExtraMemberAddrs: 2, DownRate: 10e6, UpRate: 10e6,
				Prefix: prefix, failAt: step})
			if err == nil {
				l.Close()
				t.Fatal("New succeeded despite the injected failure")
			}
			if l != nil || !strings.Contains(err.Error(), "build "+step+": injected failure") {
				t.Fatalf("New = %v, %v", l, err)
			}
			if left := leftovers(t, prefix); len(left) != 0 {
				t.Errorf("left after a failed build: %v", left)
			}
		})
	}
	if after := rootLinks(t); strings.Join(after, " ") != strings.Join(linksBefore, " ") {
		t.Errorf("root namespace links changed:\nbefore %v\nafter  %v", linksBefore, after)
	}
}

// TestLabPrefixCollision: a second lab with a taken prefix fails without
// touching the first one's namespaces.
func TestLabPrefixCollision(t *testing.T) {
	prefix := testPrefix(t)
	first := newLab(t, Options{Prefix: prefix})
	second, err := New(t.Context(), Options{Prefix: prefix})
	if err == nil {
		second.Close()
		t.Fatal("second lab with the same prefix was built")
	}
	if !strings.Contains(err.Error(), "ip netns add "+prefix+"-exit") {
		t.Errorf("error %v does not name the failing namespace", err)
	}
	if got := len(leftovers(t, prefix)); got != 2*6 {
		t.Errorf("first lab has %d namespace entries, want 12", got)
	}
	mustPing(t, first.Exit, Internet4)
	mustPing(t, first.Members[0], ExitUnderlay4)
}

// TestLabsInParallel builds two labs at once; identical addresses in
// different namespaces do not collide.
func TestLabsInParallel(t *testing.T) {
	testenv.RequireRoot(t)
	prefixes := make(chan string, 2)
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				l := NewT(t, Options{Members: 2})
				prefixes <- l.Prefix
				srv, err := l.Internet.ServeHTTP(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				mustPing(t, l.Members[1], ExitUnderlay4)
				if _, body := get(t, l.Exit, "http://"+Internet4+"/ip"); body != ExitWAN4+"\n" {
					t.Errorf("GET /ip = %q", body)
				}
				if n := len(srv.Requests()); n != 1 {
					t.Errorf("lab %s server saw %d requests, want its own 1", l.Prefix, n)
				}
			})
		}
	})
	close(prefixes)
	var all []string
	for p := range prefixes {
		all = append(all, p)
	}
	if len(all) != 2 {
		t.Fatalf("%d labs built, want 2", len(all))
	}
	a, b := all[0], all[1]
	if a == b {
		t.Fatalf("two labs share prefix %s", a)
	}
	for _, p := range []string{a, b} {
		if left := leftovers(t, p); len(left) != 0 {
			t.Errorf("left after the parallel labs: %v", left)
		}
	}
}
