package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// testTTL keeps the wait for a taken name short.
const testTTL = 2 * time.Second

// A node's record is listed while it lives, updated in place, gone at
// Close; a second node with the same name is refused (after one TTL) and
// writes nothing; a bad name is refused before etcd is asked.
func TestRegisterNodes(t *testing.T) {
	e := startEtcd(t, nil)
	s, err := Open(e.options(prefixFor(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a, err := s.Register(ctx, "exit-a", testTTL, []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Register(ctx, "exit-b", testTTL, []byte(`{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(ctx, []byte(`{"v":3}`)); err != nil {
		t.Fatal(err)
	}
	ns, err := s.Nodes(ctx)
	if err != nil || len(ns) != 2 || ns[0].Name != "exit-a" || string(ns[0].Value) != `{"v":3}` || ns[1].Name != "exit-b" {
		t.Fatalf("nodes %+v, %v", ns, err)
	}
	if !a.Alive() {
		t.Error("a live registration says it is not alive")
	}
	start := time.Now()
	if _, err := s.Register(ctx, "exit-a", testTTL, []byte(`{"v":9}`)); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second exit-a: %v, want ErrNameTaken", err)
	}
	if waited := time.Since(start); waited < testTTL {
		t.Errorf("refused after %v: a restarting node must be given one TTL", waited)
	}
	if ns, _ := s.Nodes(ctx); string(ns[0].Value) != `{"v":3}` {
		t.Errorf("the refused registration wrote %s", ns[0].Value)
	}
	b.Close()
	if ns, _ := s.Nodes(ctx); len(ns) != 1 || ns[0].Name != "exit-a" {
		t.Fatalf("after b closed: %+v", ns)
	}
	// A closed name is free again at once.
	b2, err := s.Register(ctx, "exit-b", testTTL, nil)
	if err != nil {
		t.Fatalf("re-register a closed name: %v", err)
	}
	b2.Close()
	a.Close()
	if _, err := s.Register(ctx, "bad name/x", testTTL, nil); err == nil {
		t.Error("a name with a slash was accepted")
	}
}
