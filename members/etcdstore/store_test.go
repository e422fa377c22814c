package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"exitd/keys"
	"exitd/members"
	"exitd/members/storetest"
)

func openRegistry(so Options, mo members.Options) (*members.Registry, error) {
	st, err := Open(so)
	if err != nil {
		return nil, err
	}
	return members.OpenStore(st, mo)
}

func mustRegistry(t *testing.T, so Options, mo members.Options) *members.Registry {
	t.Helper()
	r, err := openRegistry(so, mo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// withCache gives so a cache file of its own.
func withCache(t *testing.T, so Options) Options {
	so.CachePath = filepath.Join(t.TempDir(), "members-cache.db")
	return so
}

// TestContract runs the store contract against a real etcd.
func TestContract(t *testing.T) {
	e := startEtcd(t, nil)
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		prefix := prefixFor(t)
		return storetest.Backend{Shared: true, Open: func(t *testing.T, mo members.Options) (*members.Registry, error) {
			return openRegistry(withCache(t, e.options(prefix)), mo)
		}}
	})
}

// TestConcurrentAddsThreeNodes: three registries add 100 members at once,
// and race for ten labels and keys: no address, label or key is handed out
// twice, and every acknowledged member reaches all three.
func TestConcurrentAddsThreeNodes(t *testing.T) {
	e := startEtcd(t, nil)
	c := storetest.NewClock()
	so := e.options(prefixFor(t))
	var regs [3]*members.Registry
	for i := range regs {
		regs[i] = mustRegistry(t, so, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
		storetest.Follow(t, regs[i])
	}
	type result struct {
		req members.AddRequest
		m   members.Member
		err error
	}
	var reqs []struct {
		node int
		req  members.AddRequest
	}
	for i := range 100 {
		req := members.AddRequest{Label: fmt.Sprintf("m%03d", i)}
		if i%2 == 0 {
			req.PublicKey = storetest.Key(t)
		}
		reqs = append(reqs, struct {
			node int
			req  members.AddRequest
		}{i % 3, req})
	}
	for i := range 10 { // the same member asked of two nodes
		req := members.AddRequest{Label: fmt.Sprintf("dup%d", i), PublicKey: storetest.Key(t)}
		reqs = append(reqs, struct {
			node int
			req  members.AddRequest
		}{i % 3, req}, struct {
			node int
			req  members.AddRequest
		}{(i + 1) % 3, req})
	}
	results := make(chan result, len(reqs))
	var wg sync.WaitGroup
	start := time.Now()
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := regs[r.node].Add(r.req)
			results <- result{r.req, m, err}
		}()
	}
	wg.Wait()
	close(results)
	t.Logf("%d adds on 3 nodes in %v", len(reqs), time.Since(start))
	acked := map[string]members.Member{}
	addrs, pubs := map[netip.Addr]string{}, map[keys.Key]string{}
	for res := range results {
		if res.err != nil {
			if strings.HasPrefix(res.req.Label, "dup") && errors.Is(res.err, members.ErrDuplicate) {
				continue
			}
			t.Fatalf("add %s: %v", res.req.Label, res.err)
		}
		m := res.m
		if _, ok := acked[m.Label]; ok {
			t.Fatalf("label %s acknowledged twice", m.Label)
		}
		if other, ok := addrs[m.IPv4]; ok {
			t.Fatalf("%s and %s both got %s", other, m.Label, m.IPv4)
		}
		if other, ok := pubs[m.PublicKey]; ok {
			t.Fatalf("%s and %s both hold key %s", other, m.Label, m.PublicKey)
		}
		acked[m.Label], addrs[m.IPv4], pubs[m.PublicKey] = m, m.Label, m.Label
	}
	if len(acked) != 110 {
		t.Fatalf("%d members acknowledged, want 100 and one of each of the 10 contended", len(acked))
	}
	for i, r := range regs {
		storetest.Eventually(t, 5*time.Second, fmt.Sprintf("node %d has every member", i), func() bool {
			return r.Len() == len(acked)
		})
		for _, m := range r.List() {
			a := acked[m.Label]
			if a.PublicKey != m.PublicKey || a.IPv4 != m.IPv4 || a.IPv6 != m.IPv6 {
				t.Fatalf("node %d: %+v, acknowledged as %+v", i, m, a)
			}
		}
	}
}

// TestCompactionForcesResync: a node that was not watching while etcd
// compacted away the history reads the whole store again and reports the
// differences, quarantine included.
func TestCompactionForcesResync(t *testing.T) {
	e := startEtcd(t, nil)
	c := storetest.NewClock()
	so := e.options(prefixFor(t))
	ra := mustRegistry(t, so, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	rb := mustRegistry(t, so, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	ms, err := rb.AddBatch([]members.AddRequest{{Label: "keep"}, {Label: "gone"}, {Label: "change"}})
	if err != nil {
		t.Fatal(err)
	}
	f := storetest.Follow(t, ra)
	storetest.Eventually(t, time.Second, "a has b's members", func() bool { return ra.Len() == 3 })
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	// While a does not watch, b changes the store and etcd forgets how.
	if _, err := rb.Remove("gone"); err != nil {
		t.Fatal(err)
	}
	w := 4
	if _, _, err := rb.Update("change", members.Change{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	added, err := rb.Add(members.AddRequest{Label: "new"})
	if err != nil {
		t.Fatal(err)
	}
	cli := e.client()
	defer cli.Close()
	ctx := context.Background()
	resp, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	f = storetest.Follow(t, ra)
	storetest.Eventually(t, 2*time.Second, "a resynced", func() bool { return len(f.Events()) == 3 })
	evs := f.Events()
	got := map[string]members.Event{}
	for _, ev := range evs {
		if ev.Removed() {
			got["remove "+ev.Before.Label] = ev
		} else if ev.Added() {
			got["add "+ev.After.Label] = ev
		} else {
			got["update "+ev.After.Label] = ev
		}
	}
	if _, ok := got["remove gone"]; !ok {
		t.Errorf("no removal: %+v", evs)
	}
	if ev, ok := got["update change"]; !ok || ev.Before.Weight != 1 || ev.After.Weight != 4 {
		t.Errorf("no update 1 -> 4: %+v", evs)
	}
	if ev, ok := got["add new"]; !ok || ev.After.IPv4 != added.IPv4 {
		t.Errorf("no add: %+v", evs)
	}
	want, have := rb.List(), ra.List()
	for i := range want {
		want[i].PrivateKey = nil // b's kept keys stay on b
	}
	if fmt.Sprint(want) != fmt.Sprint(have) {
		t.Fatalf("after resync a has\n%+v\nb has\n%+v", have, want)
	}
	// The removed member's address came back quarantined.
	if _, err := ra.Add(members.AddRequest{Label: "squatter", IPv4: ms[1].IPv4}); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("quarantined address claimed after resync: %v", err)
	}
	// And the watch goes on from the resync's revision.
	if _, err := rb.Remove("keep"); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, time.Second, "a sees a removal after the resync", func() bool { return ra.Len() == 2 })
}

// TestEtcdDown: while etcd is down, nodes serve what they know (a node
// starting then, from its cache) and refuse changes with
// ErrStoreUnavailable; once it is back, writes work again and the watches
// resume.
func TestEtcdDown(t *testing.T) {
	e := startEtcd(t, nil)
	c := storetest.NewClock()
	so := e.options(prefixFor(t))
	so.DialTimeout, so.RequestTimeout = time.Second, time.Second
	soA, soB := withCache(t, so), withCache(t, so)
	moB := storetest.Options(c, "10.99.0.0/24", t.TempDir())
	ra := mustRegistry(t, soA, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	storetest.Follow(t, ra)
	ms, err := ra.AddBatch([]members.AddRequest{{Label: "a"}, {Label: "b"}, {Label: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := openRegistry(soB, moB)
	if err != nil || rb.Len() != 3 {
		t.Fatalf("b: %v", err)
	}
	rb.Close()

	e.stop()
	if m, err := ra.Get("b"); err != nil || m.IPv4 != ms[1].IPv4 {
		t.Fatalf("read while etcd is down: %+v %v", m, err)
	}
	if m, ok := ra.ByAddr(ms[2].IPv6); !ok || m.Label != "c" {
		t.Fatalf("ByAddr while etcd is down: %+v", m)
	}
	start := time.Now()
	_, err = ra.Add(members.AddRequest{Label: "d"})
	if !errors.Is(err, members.ErrStoreUnavailable) {
		t.Fatalf("add while etcd is down: %v", err)
	}
	t.Logf("add refused after %v: %v", time.Since(start), err)
	if time.Since(start) > 3*time.Second {
		t.Errorf("refusal took %v", time.Since(start))
	}
	off := true
	if _, _, err := ra.Update("a", members.Change{Disabled: &off}); !errors.Is(err, members.ErrStoreUnavailable) {
		t.Fatalf("update while etcd is down: %v", err)
	}
	if _, err := ra.Remove("a"); !errors.Is(err, members.ErrStoreUnavailable) {
		t.Fatalf("remove while etcd is down: %v", err)
	}
	if ra.Len() != 3 {
		t.Fatalf("refused changes changed the registry: %d members", ra.Len())
	}
	// A node starting now serves its cache.
	rb = mustRegistry(t, soB, moB)
	if rb.Len() != 3 {
		t.Fatalf("b from its cache: %d members", rb.Len())
	}
	if _, err := rb.Add(members.AddRequest{Label: "e"}); !errors.Is(err, members.ErrStoreUnavailable) {
		t.Fatalf("add on a node started from its cache: %v", err)
	}
	fb := storetest.Follow(t, rb)
	// One without a cache cannot start.
	if _, err := openRegistry(so, storetest.Options(c, "10.99.0.0/24", t.TempDir())); !errors.Is(err, members.ErrStoreUnavailable) {
		t.Fatalf("open without etcd or cache: %v", err)
	}

	e.restart()
	storetest.Eventually(t, 15*time.Second, "writes work again", func() bool {
		_, err := ra.Add(members.AddRequest{Label: "back"})
		return err == nil || errors.Is(err, members.ErrDuplicate) // a timed-out try may have landed
	})
	storetest.Eventually(t, 5*time.Second, "b's watch resumed", func() bool {
		_, err := rb.Get("back")
		return err == nil
	})
	if evs := fb.Events(); len(evs) != 1 || evs[0].After.Label != "back" {
		t.Fatalf("b's events: %+v", evs)
	}
}

// TestUnreachable: no etcd at the endpoint and no cache: a clear error
// within the dial timeout.
func TestUnreachable(t *testing.T) {
	ep := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	so := Options{Endpoints: []string{ep}, Prefix: "/exitd", DialTimeout: 500 * time.Millisecond}
	start := time.Now()
	_, err := openRegistry(so, storetest.Options(storetest.NewClock(), "10.99.0.0/24", t.TempDir()))
	took := time.Since(start)
	if !errors.Is(err, members.ErrStoreUnavailable) || !strings.Contains(err.Error(), ep) {
		t.Fatalf("err = %v", err)
	}
	if took > 2*time.Second {
		t.Fatalf("took %v with a 500ms dial timeout", took)
	}
	t.Logf("%v after %v", err, took)
}

// TestForeignData: a prefix holding what exitd did not write fails the
// open, and nothing is written.
func TestForeignData(t *testing.T) {
	e := startEtcd(t, nil)
	cli := e.client()
	defer cli.Close()
	ctx := context.Background()
	mo := storetest.Options(storetest.NewClock(), "10.99.0.0/24", t.TempDir())
	okMeta, _ := encodeMeta("ipv4 10.99.0.0/24 ipv6 fd00:99::/64")
	for _, tc := range []struct {
		name string
		kvs  map[string]string
		want error
	}{
		{"other application", map[string]string{"config/db": "postgres://"}, ErrForeignData},
		{"no meta", map[string]string{"slots/0000000002": `{"freed":"2026-01-01T00:00:00Z"}`}, ErrForeignData},
		{"foreign meta", map[string]string{"meta": `{"format":"other"}`}, ErrForeignData},
		{"bad slot key", map[string]string{"meta": string(okMeta), "slots/2": `{}`}, ErrForeignData},
		{"bad slot value", map[string]string{"meta": string(okMeta), "slots/0000000002": `{"x":1}`}, ErrForeignData},
		{"claim without member", map[string]string{"meta": string(okMeta), "labels/alice": "2"}, ErrForeignData},
		{"other prefixes", map[string]string{"meta": `{"format":"exitd-members","version":1,"layout":"ipv4 10.1.0.0/16 ipv6 -"}`}, ErrLayout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := prefixFor(t)
			for k, v := range tc.kvs {
				if _, err := cli.Put(ctx, prefix+"/"+k, v); err != nil {
					t.Fatal(err)
				}
			}
			before, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			_, err = openRegistry(e.options(prefix), mo)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
			after, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			if after.Header.Revision != before.Header.Revision || len(after.Kvs) != len(before.Kvs) {
				t.Fatalf("the failed open wrote: revision %d -> %d, %d -> %d keys",
					before.Header.Revision, after.Header.Revision, len(before.Kvs), len(after.Kvs))
			}
		})
	}
}

// TestBatchUndone: a batch spanning several transactions whose last one
// fails leaves nothing behind, and the registry does not report the
// undone members when it follows.
func TestBatchUndone(t *testing.T) {
	e := startEtcd(t, nil)
	c := storetest.NewClock()
	so := e.options(prefixFor(t))
	small := so
	small.MaxTxnOps = 12 // four adds a transaction
	ra := mustRegistry(t, small, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	rb := mustRegistry(t, so, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	if _, err := rb.Add(members.AddRequest{Label: "late"}); err != nil {
		t.Fatal(err)
	}
	reqs := make([]members.AddRequest, 11)
	for i := range reqs {
		reqs[i] = members.AddRequest{Label: fmt.Sprintf("x%d", i)}
	}
	reqs[10].Label = "late" // in the third transaction; a does not know b's member yet
	if _, err := ra.AddBatch(reqs); !errors.Is(err, members.ErrDuplicate) {
		t.Fatalf("batch with a label taken elsewhere: %v", err)
	}
	if ra.Len() != 0 {
		t.Fatalf("a holds %d members", ra.Len())
	}
	rc := mustRegistry(t, so, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	if l := rc.List(); len(l) != 1 || l[0].Label != "late" {
		t.Fatalf("the store holds %+v", l)
	}
	f := storetest.Follow(t, ra)
	storetest.Eventually(t, time.Second, "a has b's member", func() bool { return ra.Len() == 1 })
	if _, err := rb.Add(members.AddRequest{Label: "marker"}); err != nil {
		t.Fatal(err)
	}
	storetest.Eventually(t, time.Second, "a has the marker", func() bool { return ra.Len() == 2 })
	if evs := f.Events(); len(evs) != 2 || evs[0].After.Label != "late" || evs[1].After.Label != "marker" {
		t.Fatalf("a's events: %+v", evs)
	}
	// The same batch without the taken label goes through in three
	// transactions.
	ms, err := ra.AddBatch(reqs[:10])
	if err != nil || len(ms) != 10 {
		t.Fatalf("%d %v", len(ms), err)
	}
	fb := storetest.Follow(t, rb)
	storetest.Eventually(t, time.Second, "b has a's batch", func() bool { return rb.Len() == 12 })
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	// A removal batch (four a transaction) whose third transaction meets
	// a member changed elsewhere is undone: the members are back, with
	// their addresses, and nobody is told of the removals.
	w := 3
	if _, _, err := rb.Update("x9", members.Change{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	refs := make([]string, 10)
	for i := range refs {
		refs[i] = fmt.Sprintf("x%d", i)
	}
	if _, err := ra.RemoveBatch(refs); !errors.Is(err, members.ErrConflict) {
		t.Fatalf("removal with a member changed elsewhere: %v", err)
	}
	if ra.Len() != 12 {
		t.Fatalf("a holds %d members", ra.Len())
	}
	if _, err := rb.Add(members.AddRequest{Label: "marker2"}); err != nil {
		t.Fatal(err)
	}
	rd := mustRegistry(t, so, storetest.Options(c, "10.99.0.0/24", t.TempDir()))
	if rd.Len() != 13 {
		t.Fatalf("the store holds %d members after the undone removal", rd.Len())
	}
	for _, m := range ms {
		if got, err := rd.Get(m.Label); err != nil || got.IPv4 != m.IPv4 {
			t.Fatalf("%s after the undone removal: %+v %v", m.Label, got, err)
		}
	}
	// b saw the removals and their undoing: once it has its marker, the
	// net effect on its index is nothing.
	storetest.Eventually(t, time.Second, "b has the marker", func() bool { _, err := rb.Get("marker2"); return err == nil })
	if rb.Len() != 13 {
		t.Fatalf("b holds %d members", rb.Len())
	}
	if err := fb.Stop(); err != nil {
		t.Fatal(err)
	}
	f = storetest.Follow(t, ra)
	storetest.Eventually(t, time.Second, "a has the marker", func() bool { return ra.Len() == 13 })
	for _, ev := range f.Events() {
		if ev.After.Label != "marker2" && ev.After.Label != "x9" {
			t.Fatalf("a reported %+v", ev)
		}
	}
}

// TestTLS: with the right CA and a client certificate the store works;
// with a wrong CA or no client certificate the open fails saying why.
func TestTLS(t *testing.T) {
	pki := newPKI(t, "cluster")
	e := startEtcd(t, pki)
	mo := storetest.Options(storetest.NewClock(), "10.99.0.0/24", t.TempDir())
	r := mustRegistry(t, e.options(prefixFor(t)), mo)
	if _, err := r.Add(members.AddRequest{Label: "over-tls"}); err != nil {
		t.Fatal(err)
	}
	other := newPKI(t, "other")
	for _, tc := range []struct {
		name string
		o    func(Options) Options
		want string
	}{
		{"wrong CA", func(o Options) Options { o.CAFile = other.caCert; return o }, "certificate signed by unknown authority"},
		{"certificate of another CA", func(o Options) Options {
			o.CertFile, o.KeyFile = other.clientCert, other.clientKey
			return o
		}, "refused this node's certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			so := tc.o(e.options(prefixFor(t)))
			so.DialTimeout = time.Second
			start := time.Now()
			_, err := openRegistry(so, mo)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, members.ErrStoreUnavailable) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			t.Logf("%v (after %v)", err, time.Since(start))
		})
	}
}

// TestOptions: bad options fail Open before any contact.
func TestOptions(t *testing.T) {
	pki := newPKI(t, "x")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no endpoints", Options{Prefix: "/exitd"}, "no etcd endpoints"},
		{"no prefix", Options{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/"}, "key prefix"},
		{"bad endpoint", Options{Endpoints: []string{"localhost"}, Prefix: "/exitd"}, "want host:port"},
		{"http with TLS", Options{Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/exitd", CAFile: pki.caCert}, "use https://"},
		{"cert without key", Options{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/exitd", CertFile: pki.clientCert}, "give both"},
		{"missing CA", Options{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/exitd", CAFile: "/nonexistent/ca.pem"}, "TLS CA"},
		{"CA not PEM", Options{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/exitd", CAFile: pki.clientKey}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.o)
			if err == nil {
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCloseLeavesNoGoroutines: Close ends Follow, the watch and the
// client's goroutines.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	e := startEtcd(t, nil)
	ours := func() []string {
		buf := make([]byte, 1<<20)
		var out []string
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "go.etcd.io/etcd/client") || strings.Contains(g, "google.golang.org/grpc") ||
				strings.Contains(g, "exitd/members.(*Registry).Follow") {
				out = append(out, g)
			}
		}
		return out
	}
	// Earlier tests' clients wind down.
	storetest.Eventually(t, 5*time.Second, "no client goroutines before the test", func() bool { return len(ours()) == 0 })
	mo := storetest.Options(storetest.NewClock(), "10.99.0.0/24", t.TempDir())
	r, err := openRegistry(withCache(t, e.options(prefixFor(t))), mo)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Follow(context.Background(), func([]members.Event) {}) }()
	if _, err := r.Add(members.AddRequest{Label: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Follow after Close: %v", err)
	}
	storetest.Eventually(t, 5*time.Second, "client goroutines gone", func() bool { return len(ours()) == 0 })
}
