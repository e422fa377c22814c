package tuning

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"exitd/internal/testenv"
)

// Kernel tests write sysctls only inside a throwaway network namespace and
// only net.* keys. Keys that are global (net.core.netdev_*, default_qdisc)
// do not exist in a child namespace, and the ones shared with the host
// (rmem_max, nf_conntrack_max, buckets) are read-only there; ModuleRoot is
// empty so /sys/module is never touched. As a guard, every test compares
// the host's values before and after.

func netOnlyBundled(t *testing.T) *Profile {
	t.Helper()
	p, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	p = p.WithConntrack(ConntrackFor(8 << 30))
	for _, e := range p.Entries {
		if !strings.HasPrefix(e.Key, "net.") {
			t.Fatalf("refusing to apply %s in a kernel test: not a net.* key", e.Key)
		}
	}
	return p
}

// hostGuard reads p's keys in the host namespace now and again at cleanup.
func hostGuard(t *testing.T, p *Profile) {
	t.Helper()
	host := Sysctl{Root: "/proc/sys"}
	read := func() map[string]string {
		m := map[string]string{}
		for _, k := range append(p.Keys(), CriticalKeys()...) {
			v, err := host.Read(k)
			if err != nil {
				v = "<" + string(statusOf(err)) + ">"
			}
			m[k] = v
		}
		return m
	}
	before := read()
	t.Cleanup(func() {
		for k, v := range read() {
			if before[k] != v {
				t.Errorf("HOST %s changed from %q to %q", k, before[k], v)
			}
		}
	})
}

func TestKernelApplyInNetNS(t *testing.T) {
	testenv.RequireRoot(t)
	p := netOnlyBundled(t)
	hostGuard(t, p)
	ns := testenv.NewNetNS(t)
	s := Sysctl{Root: "/proc/sys"} // no ModuleRoot: never write /sys/module
	var applied, checked Report
	testenv.Do(t, ns, func() {
		// Start from the state rev 1.6 would leave, so apply has work to do.
		for k, v := range map[string]string{
			KeyIPForward: "0", KeyIPv6Forward: "0",
			"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.tcp_syncookies": "0",
			"net.ipv4.conf.all.accept_redirects": "1",
		} {
			if err := s.Write(k, v); err != nil {
				t.Errorf("setup %s: %v", k, err)
			}
		}
		applied = Apply(context.Background(), s, p, ApplyOptions{})
		checked = Check(s, p)
	})
	if !applied.CriticalOK() || !checked.CriticalOK() {
		t.Errorf("critical failures after apply: %+v", checked.CriticalFailures())
	}
	// Shared with the host: classified, not fatal.
	hostOwned := map[string]bool{
		"net.core.rmem_max": true, "net.core.wmem_max": true, "net.core.netdev_max_backlog": true,
		"net.core.netdev_budget": true, "net.core.default_qdisc": true, KeyConntrackMax: true, KeyBuckets: true,
	}
	for _, res := range applied.Results {
		t.Logf("%-55s %-10s %-10s %s", res.Key, res.Wanted, res.InForce, res.Status)
		switch {
		case hostOwned[res.Key]:
			if res.Status != StatusOK && res.Status != StatusReadOnly && res.Status != StatusAbsent {
				t.Errorf("%s: %s (%s), want ok, read-only or absent in a child netns", res.Key, res.Status, res.Detail)
			}
		case res.Status != StatusOK:
			t.Errorf("per-namespace key %s: %s %q (%s)", res.Key, res.Status, res.InForce, res.Detail)
		}
	}
	for i, res := range checked.Results {
		if want := applied.Results[i]; res.Key != want.Key || res.InForce != want.InForce {
			t.Errorf("check disagrees with apply's read-back: %+v vs %+v", res, want)
		}
	}
}

func TestKernelClassifiesInNetNS(t *testing.T) {
	testenv.RequireRoot(t)
	p := mustParse("-net.core.default_qdisc = fq_codel\n")
	hostGuard(t, p)
	ns := testenv.NewNetNS(t)
	s := Sysctl{Root: "/proc/sys"}
	testenv.Do(t, ns, func() {
		// rmem_max is the host's, visible read-only in a child netns (or
		// absent on older kernels). Write the value it already has plus one.
		v, err := s.Read("net.core.rmem_max")
		if err == nil {
			n, _ := parseKernelInt(NormalizeValue(v))
			werr := s.Write("net.core.rmem_max", strconv.FormatInt(n+1, 10))
			if !errors.Is(werr, ErrReadOnly) {
				t.Errorf("rmem_max in a child netns: %v, want ErrReadOnly", werr)
			}
		} else if !errors.Is(err, ErrAbsent) {
			t.Errorf("rmem_max: %v", err)
		}
		// A value the kernel does not know is rejected, not fatal.
		if err := s.Write("net.ipv4.tcp_congestion_control", "no-such-cc"); !errors.Is(err, ErrRejected) {
			t.Errorf("unknown congestion control: %v, want ErrRejected", err)
		}
		if err := s.Write(KeyIPForward, "7x"); !errors.Is(err, ErrRejected) {
			t.Errorf("ip_forward = 7x: %v, want ErrRejected", err)
		}
		if _, err := s.Read("net.ipv4.no_such_key"); !errors.Is(err, ErrAbsent) {
			t.Errorf("missing key: %v, want ErrAbsent", err)
		}
		r := Apply(context.Background(), s, p, ApplyOptions{})
		if res, _ := r.Lookup("net.core.default_qdisc"); res.Status != StatusAbsent && res.Status != StatusOK {
			t.Errorf("default_qdisc in a child netns: %+v", res)
		}
	})
}

func TestKernelEnsureForwardingInNetNS(t *testing.T) {
	testenv.RequireRoot(t)
	hostGuard(t, mustParse(""))
	ns := testenv.NewNetNS(t)
	s := Sysctl{Root: "/proc/sys"}
	testenv.Do(t, ns, func() {
		for _, k := range []string{KeyIPForward, KeyIPv6Forward} {
			if err := s.Write(k, "0"); err != nil {
				t.Fatal(err)
			}
		}
		if err := EnsureForwarding(s); err != nil {
			t.Fatalf("EnsureForwarding: %v", err)
		}
		for _, k := range []string{KeyIPForward, KeyIPv6Forward} {
			if v, _ := s.Read(k); v != "1" {
				t.Errorf("%s = %q after EnsureForwarding", k, v)
			}
		}
		// Turning ip_forward on rewrote accept_redirects: the kernel
		// behaviour that makes Apply write forwarding first.
		if v, _ := s.Read("net.ipv4.conf.all.accept_redirects"); v != "0" {
			t.Errorf("accept_redirects = %q after ip_forward 0→1, want 0", v)
		}
	})
}
