package etcdstore

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// outcome tells a lost commit's fate from the slots it wrote: all at the
// new values is committed (at their revision), all at the compared state
// is not, and a mix (someone else wrote since) is unknown.
func TestOutcome(t *testing.T) {
	e := startEtcd(t, nil)
	s, err := Open(e.options(prefixFor(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cli := e.client()
	defer cli.Close()
	a, b := s.ks.slot(2), s.ks.slot(3)
	put := func(k, v string) int64 {
		t.Helper()
		r, err := cli.Put(ctx, k, v)
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	revA := put(a, "old-a")
	deadline := time.Now().Add(5 * time.Second)
	ws := []written{{key: a, value: []byte("new-a"), prevRev: revA}, {key: b, value: []byte("new-b"), prevAbsent: true}}
	if _, st := s.outcome(ctx, ws, deadline); st != notCommitted {
		t.Fatalf("nothing written: %v, want notCommitted", st)
	}
	r, err := cli.Txn(ctx).Then(clientv3.OpPut(a, "new-a"), clientv3.OpPut(b, "new-b")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if rev, st := s.outcome(ctx, ws, deadline); st != committed || rev != r.Header.Revision {
		t.Fatalf("both written: %v at %d, want committed at %d", st, rev, r.Header.Revision)
	}
	put(b, "someone-else")
	if _, st := s.outcome(ctx, ws, deadline); st != unknown {
		t.Fatalf("another node wrote b since: %v, want unknown", st)
	}
	// A delete that happened counts as written.
	del := []written{{key: s.ks.slot(4), value: nil, prevRev: put(s.ks.slot(4), "x")}}
	if _, err := cli.Delete(ctx, s.ks.slot(4)); err != nil {
		t.Fatal(err)
	}
	if rev, st := s.outcome(ctx, del, deadline); st != committed || rev == 0 {
		t.Fatalf("deleted: %v at %d", st, rev)
	}
}
