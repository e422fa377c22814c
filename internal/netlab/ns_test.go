package netlab

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"exitd/internal/testenv"
)

func TestNSRun(t *testing.T) {
	l := newLab(t, Options{})
	var dev []byte
	if err := l.Exit.Run(func() error {
		var err error
		dev, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ExitUnderlayIface + ":", ExitWANIface + ":", ExitLANIface + ":"} {
		if !bytes.Contains(dev, []byte(want)) {
			t.Errorf("exit's /proc/net/dev lacks %s:\n%s", want, dev)
		}
	}
	boom := errors.New("boom")
	if err := l.Exit.Run(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Run returned %v, want fn's error", err)
	}
}

func TestNSExecError(t *testing.T) {
	l := newLab(t, Options{})
	out, err := l.Mgmt.Exec(t.Context(), "sh", "-c", "echo boom-output; exit 3")
	if err == nil || !strings.Contains(err.Error(), "boom-output") || !strings.Contains(err.Error(), "exit status 3") ||
		!strings.HasPrefix(err.Error(), "netlab: "+l.Mgmt.Name+": sh") {
		t.Fatalf("Exec error = %v", err)
	}
	if string(out) != "boom-output\n" {
		t.Fatalf("Exec output = %q", out)
	}
}

// TestCommandCancelKillsGroup: ending the ctx of a Command kills the whole
// process group, including a background child.
func TestCommandCancelKillsGroup(t *testing.T) {
	l := newLab(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	p, err := l.Hub.Start(l.Hub.Command(ctx, "sh", "-c", "sleep 300 & echo child $!; wait"))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if err := WaitFor(t.Context(), 5*time.Second, func() bool {
		_, after, ok := strings.Cut(p.Output(), "child ")
		if !ok || !strings.HasSuffix(after, "\n") {
			return false
		}
		child, err = strconv.Atoi(strings.TrimSpace(after))
		return err == nil
	}); err != nil {
		t.Fatalf("no child pid in %q", p.Output())
	}
	cancel()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process survived its ctx")
	}
	if err := WaitFor(t.Context(), 5*time.Second, func() bool { return gone(child) }); err != nil {
		t.Fatalf("background child %d survived the ctx", child)
	}
}

func TestNewCanceledContext(t *testing.T) {
	testenv.RequireRoot(t)
	prefix := testPrefix(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	l, err := New(ctx, Options{Prefix: prefix})
	if err == nil {
		l.Close()
		t.Fatal("New with a canceled context succeeded")
	}
	if !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "ip netns add") {
		t.Errorf("New error = %v", err)
	}
	if left := leftovers(t, prefix); len(left) != 0 {
		t.Errorf("left after a canceled build: %v", left)
	}
}

// TestLabLogger: the injected logger sees every build step; nothing is
// logged above debug.
func TestLabLogger(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := newLab(t, Options{Logger: log})
	if _, err := l.Exit.Start(l.Exit.Command(t.Context(), "true")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, step := range []string{"namespaces", "sysctls", "links", "addresses", "routes", "extra", "shaping"} {
		if !strings.Contains(out, "step="+step) {
			t.Errorf("log lacks step %s:\n%s", step, out)
		}
	}
	for _, want := range []string{"lab=" + l.Prefix, "netlab: started", "netlab: closed"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "level=INFO") || strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Errorf("lab logged above debug:\n%s", out)
	}
}

func TestDeleteNamedMissing(t *testing.T) {
	testenv.RequireRoot(t)
	if err := deleteNamed(testPrefix(t) + "-absent"); err != nil {
		t.Fatalf("deleting a missing namespace: %v", err)
	}
}

func TestPingValidation(t *testing.T) {
	if _, err := Ping(t.Context(), &NS{}, netip.MustParseAddr(Internet4), 0, time.Second); err == nil || !strings.Contains(err.Error(), "count 0") {
		t.Fatalf("Ping with count 0 = %v", err)
	}
}
