package tuning

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestApplyOrder(t *testing.T) {
	p := mustParse(`
net.netfilter.nf_conntrack_tcp_timeout_established = 86400
net.ipv4.conf.all.accept_redirects = 0
net.ipv6.conf.all.forwarding = 1
net.ipv4.ip_forward = 1
net.core.rmem_max = 33554432
`).WithConntrack(Conntrack{Max: 131072, Buckets: 131072})
	k := safeKernel()
	k["net.netfilter.nf_conntrack_tcp_timeout_established"] = "432000"
	k["net.core.rmem_max"] = "212992"
	f := newFake(k)
	Apply(context.Background(), f, p, ApplyOptions{})
	want := []string{
		"net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1", // forwarding first, file order within
		"net.ipv4.conf.all.accept_redirects=0", "net.core.rmem_max=33554432",
		"net.netfilter.nf_conntrack_tcp_timeout_established=86400", // conntrack last,
		KeyBuckets + "=131072", KeyConntrackMax + "=131072", // buckets before max
	}
	if !reflect.DeepEqual(f.writes, want) {
		t.Fatalf("writes:\n%s\nwant:\n%s", strings.Join(f.writes, "\n"), strings.Join(want, "\n"))
	}
}

// Writing ip_forward rewrites accept_redirects (inet_forward_change): the
// profile must still end up with redirects off, whatever the file order.
func TestApplyForwardingResetsRedirects(t *testing.T) {
	p := mustParse("net.ipv4.conf.all.accept_redirects = 0\nnet.ipv4.ip_forward = 1\n")
	k := safeKernel()
	k[KeyIPForward] = "0"
	k["net.ipv4.conf.all.accept_redirects"] = "1"
	f := newFake(k)
	f.onWrite = func(f *fakeParams, key, value string) {
		if key == KeyIPForward {
			if value == "1" {
				f.vals["net.ipv4.conf.all.accept_redirects"] = "0"
			} else {
				f.vals["net.ipv4.conf.all.accept_redirects"] = "1"
			}
		}
	}
	r := Apply(context.Background(), f, p, ApplyOptions{})
	if !r.CriticalOK() {
		t.Fatalf("critical failures: %+v", r.CriticalFailures())
	}
	if res, _ := r.Lookup("net.ipv4.conf.all.accept_redirects"); res.Status != StatusOK {
		t.Fatalf("accept_redirects: %+v", res)
	}
}

func TestApplyClassifies(t *testing.T) {
	p := mustParse(`
net.ipv4.ip_forward = 1
net.core.rmem_max = 33554432
net.core.wmem_max = 33554432
-net.core.default_qdisc = fq
net.ipv4.tcp_congestion_control = nosuch
net.ipv4.tcp_mtu_probing = 1
net.ipv4.clamped = 5
net.ipv4.conf.*.rp_filter = 1
net.ipv4.broken = 1
`)
	k := safeKernel()
	k[KeyIPForward] = "0"
	k["net.core.rmem_max"] = "4194304"
	k["net.core.wmem_max"] = "33554432"
	k["net.ipv4.tcp_congestion_control"] = "cubic"
	k["net.ipv4.tcp_mtu_probing"] = "0"
	k["net.ipv4.clamped"] = "0"
	k["net.ipv4.broken"] = "0"
	f := newFake(k)
	f.writeErr["net.core.rmem_max"] = ErrReadOnly
	f.writeErr["net.core.wmem_max"] = ErrReadOnly // already at the wanted value
	f.writeErr["net.ipv4.tcp_congestion_control"] = ErrRejected
	f.writeErr["net.ipv4.broken"] = errors.New("EIO")
	f.onWrite = func(f *fakeParams, key, value string) {
		if key == "net.ipv4.clamped" {
			f.vals[key] = "2" // the kernel clamps silently
		}
	}
	r := Apply(context.Background(), f, p, ApplyOptions{})
	want := map[string]Status{
		KeyIPForward:                      StatusOK,
		"net.core.rmem_max":               StatusReadOnly,
		"net.core.wmem_max":               StatusOK,
		"net.core.default_qdisc":          StatusAbsent,
		"net.ipv4.tcp_congestion_control": StatusRejected,
		"net.ipv4.tcp_mtu_probing":        StatusOK,
		"net.ipv4.clamped":                StatusDrift,
		"net.ipv4.conf.*.rp_filter":       StatusSkipped,
		"net.ipv4.broken":                 StatusError,
	}
	for key, st := range want {
		res, ok := r.Lookup(key)
		if !ok || res.Status != st {
			t.Errorf("%s: %+v, want status %s", key, res, st)
		}
	}
	if res, _ := r.Lookup("net.core.default_qdisc"); !res.Optional {
		t.Error("a '-' key must be reported optional")
	}
	if res, _ := r.Lookup("net.core.rmem_max"); res.InForce != "4194304" || res.Detail == "" {
		t.Errorf("read-only result should show the value in force and why: %+v", res)
	}
	for _, w := range f.writes {
		if strings.HasPrefix(w, "net.ipv4.conf.*") {
			t.Errorf("a glob was written: %s", w)
		}
	}
	if !r.CriticalOK() {
		t.Errorf("critical failures: %+v", r.CriticalFailures())
	}
	if n := len(r.Failures()); n != 6 {
		t.Errorf("Failures() = %d, want 6: %+v", n, r.Failures())
	}
}

// Critical keys the profile does not mention are verified but never
// written: a default could lower an operator's larger value.
func TestApplyVerifiesCriticalWithoutWriting(t *testing.T) {
	k := safeKernel()
	k[KeyConntrackMax] = "1000"
	k["net.ipv4.conf.all.rp_filter"] = "0"
	f := newFake(k)
	r := Apply(context.Background(), f, mustParse("net.ipv4.ip_forward = 1\n"), ApplyOptions{})
	if len(f.writes) != 1 {
		t.Fatalf("writes = %v, want only the profile's key", f.writes)
	}
	bad := map[string]bool{}
	for _, res := range r.CriticalFailures() {
		bad[res.Key] = true
	}
	if !bad[KeyConntrackMax] || !bad["net.ipv4.conf.all.rp_filter"] || len(bad) != 2 {
		t.Fatalf("critical failures = %v", bad)
	}
}

func TestApplyLoadsConntrackOnce(t *testing.T) {
	p := mustParse("net.ipv4.ip_forward = 1\n").WithConntrack(Conntrack{Max: 131072, Buckets: 131072})
	k := safeKernel()
	delete(k, KeyConntrackMax)
	delete(k, KeyBuckets)
	f := newFake(k)
	calls := 0
	r := Apply(context.Background(), f, p, ApplyOptions{LoadConntrack: func(context.Context) error {
		calls++
		f.vals[KeyConntrackMax] = "65536"
		f.vals[KeyBuckets] = "65536"
		return nil
	}})
	if calls != 1 {
		t.Fatalf("LoadConntrack called %d times, want 1", calls)
	}
	if res, _ := r.Lookup(KeyConntrackMax); res.Status != StatusOK || res.InForce != "131072" {
		t.Fatalf("after loading: %+v", res)
	}

	// Already loaded: not called. Load fails: keys absent, not fatal.
	f2 := newFake(safeKernel())
	Apply(context.Background(), f2, p, ApplyOptions{LoadConntrack: func(context.Context) error { t.Error("called while loaded"); return nil }})
	k3 := safeKernel()
	delete(k3, KeyConntrackMax)
	delete(k3, KeyBuckets)
	r3 := Apply(context.Background(), newFake(k3), p, ApplyOptions{LoadConntrack: func(context.Context) error { return errors.New("no modprobe") }})
	if res, _ := r3.Lookup(KeyBuckets); res.Status != StatusAbsent {
		t.Fatalf("buckets: %+v", res)
	}
	if res, _ := r3.Lookup(KeyConntrackMax); res.Status != StatusAbsent || res.Safe {
		t.Fatalf("max: %+v (absent conntrack cannot be called safe)", res)
	}
}

func TestApplyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := safeKernel()
	k[KeyIPForward] = "0"
	f := newFake(k)
	r := Apply(ctx, f, mustParse("net.ipv4.ip_forward = 1\n"), ApplyOptions{})
	if len(f.writes) != 0 {
		t.Fatalf("writes after cancel: %v", f.writes)
	}
	if res, _ := r.Lookup(KeyIPForward); res.Status != StatusDrift || res.InForce != "0" {
		t.Fatalf("a cancelled apply must still report what is in force: %+v", res)
	}
}
