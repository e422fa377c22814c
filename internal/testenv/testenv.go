// Package testenv holds the helpers every kernel-facing test uses: the root
// requirement (a skip becomes a failure under EXITD_REQUIRE_ROOT=1, which
// `make test` and CI set) and throwaway network namespaces that never touch
// the host's root namespace.
//
// It must not import any exitd package.
package testenv

import (
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// RequireRoot skips t when the process is not root, or fails it when
// EXITD_REQUIRE_ROOT=1 says root tests must run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("EXITD_REQUIRE_ROOT") == "1" {
		t.Fatal("test needs root and EXITD_REQUIRE_ROOT=1 forbids skipping it")
	}
	t.Skip("test needs root (network namespaces, TUN, nftables); run as root or via `make test`")
}

// NewNetNS creates an unnamed network namespace without moving the calling
// goroutine into it, and closes it when t ends. It calls RequireRoot.
func NewNetNS(t testing.TB) netns.NsHandle {
	t.Helper()
	RequireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("testenv: get current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("testenv: new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the new namespace; it must not go back to the pool.
		t.Fatalf("testenv: restore netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// Do runs fn on an OS thread switched into ns and restores the thread
// afterwards. Files under /proc/sys/net opened inside fn belong to ns.
func Do(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	if err := Run(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// Run is Do without a testing.TB, for helpers that return errors.
func Run(ns netns.NsHandle, fn func()) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			done <- err
			runtime.UnlockOSThread()
			return
		}
		fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime destroys it when this goroutine exits.
			done <- err
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	return <-done
}

// RequireTools skips t when a program is not in PATH, or fails it under
// EXITD_REQUIRE_ROOT=1 (CI installs every tool the tests need in .ci/run).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("EXITD_REQUIRE_ROOT") == "1" {
				t.Fatalf("%s is not installed (apt-get install it; see .ci/run)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}
