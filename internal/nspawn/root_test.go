package nspawn

import (
	"context"
	"strings"
	"testing"
)

func TestRootSpecKey(t *testing.T) {
	a := DefaultSpec
	b := DefaultSpec
	b.Packages = append(append([]string(nil), b.Packages...), "curl")
	if a.Key() != DefaultSpec.Key() {
		t.Fatal("key not stable")
	}
	if a.Key() == b.Key() {
		t.Fatal("a different package list must be a different cache entry")
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
