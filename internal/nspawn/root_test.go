package nspawn

import (
	"context"
	"strings"
	"testing"
)

func TestRootSpecKey(t *testing.T) {
	a := DefaultSpec
	key := DefaultSpec.Key()
	b := DefaultSpec.With("curl")
	if a.Key() != key {
		t.Fatal("key not stable")
	}
	if a.Key() == b.Key() || a.Key() == RPMSpec.Key() {
		t.Fatal("a different package list must be a different cache entry")
	}
	if DefaultSpec.Key() != key || len(DefaultSpec.Packages) != len(RPMSpec.Packages)-1 {
		t.Fatal("With changed the spec it was called on")
	}
	if !strings.HasPrefix(a.Key(), "bookworm-") || len(a.Key()) != len("bookworm-")+12 {
		t.Fatalf("key %q", a.Key())
	}
}

func TestBootRefusesHostNetwork(t *testing.T) {
	if _, err := Boot(context.Background(), Options{Root: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "NetNS is required") {
		t.Fatalf("boot without a namespace: %v", err)
	}
	if _, err := Boot(context.Background(), Options{Root: t.TempDir(), NetNS: "/run/netns/does-not-exist-exitd"}); err == nil {
		t.Fatal("boot into a missing namespace")
	}
}

func TestFindInitNoChildren(t *testing.T) {
	if pid := findInit(1 << 30); pid != 0 {
		t.Fatalf("findInit of a missing process: %d", pid)
	}
}
