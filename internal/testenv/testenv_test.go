package testenv

import (
	"fmt"
	"os"
	"runtime"
	"testing"
)

// recorder is a testing.TB that records how a helper ended the test.
type recorder struct {
	testing.TB
	how string
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatal(args ...any)     { r.how = "fatal"; runtime.Goexit() }
func (r *recorder) Fatalf(string, ...any) { r.how = "fatal"; runtime.Goexit() }
func (r *recorder) Skip(args ...any)      { r.how = "skip"; runtime.Goexit() }
func (r *recorder) Skipf(f string, args ...any) {
	r.how = "skip: " + fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (r *recorder) Cleanup(func())                 {}
func (r *recorder) Errorf(format string, a ...any) { r.how = "error" }

func run(fn func(testing.TB)) string {
	r := &recorder{}
	done := make(chan struct{})
	go func() { defer close(done); fn(r) }()
	<-done
	return r.how
}

func TestRequireTools(t *testing.T) {
	if how := run(func(tb testing.TB) { RequireTools(tb, "sh") }); how != "" {
		t.Fatalf("present tool: %s", how)
	}
	t.Setenv("EXITD_REQUIRE_ROOT", "")
	if how := run(func(tb testing.TB) { RequireTools(tb, "no-such-tool-xyz") }); how != "skip: no-such-tool-xyz is not installed" {
		t.Fatalf("missing tool without CI: %q", how)
	}
	t.Setenv("EXITD_REQUIRE_ROOT", "1")
	if how := run(func(tb testing.TB) { RequireTools(tb, "no-such-tool-xyz") }); how != "fatal" {
		t.Fatalf("missing tool under EXITD_REQUIRE_ROOT=1 must fail, got %q", how)
	}
}

func TestRequireRoot(t *testing.T) {
	t.Setenv("EXITD_REQUIRE_ROOT", "1")
	how := run(func(tb testing.TB) { RequireRoot(tb) })
	switch {
	case os.Geteuid() == 0 && how != "":
		t.Fatalf("root: %q", how)
	case os.Geteuid() != 0 && how != "fatal":
		t.Fatalf("non-root under EXITD_REQUIRE_ROOT=1 must fail, got %q", how)
	}
}

func TestNetNSIsolated(t *testing.T) {
	ns := NewNetNS(t)
	var inner string
	Do(t, ns, func() {
		b, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			t.Error(err)
		}
		inner = b
	})
	outer, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if inner == "" || inner == outer {
		t.Fatalf("Do did not run in the new namespace: %q vs %q", inner, outer)
	}
}
