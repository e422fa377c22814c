package tuning

import "testing"

func TestCheck(t *testing.T) {
	p, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	p = p.WithConntrack(Conntrack{Max: 262144, Buckets: 262144})
	inForce := func() map[string]string {
		m := safeKernel()
		for _, e := range p.Settings() {
			m[e.Key] = e.Value
		}
		return m
	}
	tests := []struct {
		name       string
		mutate     func(m map[string]string, f *fakeParams)
		criticalOK bool
		key        string
		status     Status
		safe       bool
	}{
		{name: "all in force", mutate: func(map[string]string, *fakeParams) {}, criticalOK: true, key: KeyIPForward, status: StatusOK, safe: true},
		{name: "forwarding off", mutate: func(m map[string]string, _ *fakeParams) { m[KeyIPForward] = "0" }, key: KeyIPForward, status: StatusDrift},
		{name: "ipv6 forwarding off", mutate: func(m map[string]string, _ *fakeParams) { m[KeyIPv6Forward] = "0" }, key: KeyIPv6Forward, status: StatusDrift},
		{name: "ipv6 absent", mutate: func(m map[string]string, _ *fakeParams) { delete(m, KeyIPv6Forward) }, key: KeyIPv6Forward, status: StatusAbsent},
		{name: "loose rp_filter is drift but safe", mutate: func(m map[string]string, _ *fakeParams) { m["net.ipv4.conf.all.rp_filter"] = "2" }, criticalOK: true, key: "net.ipv4.conf.all.rp_filter", status: StatusDrift, safe: true},
		{name: "rp_filter off", mutate: func(m map[string]string, _ *fakeParams) { m["net.ipv4.conf.default.rp_filter"] = "0" }, key: "net.ipv4.conf.default.rp_filter", status: StatusDrift},
		{name: "redirects on", mutate: func(m map[string]string, _ *fakeParams) { m["net.ipv6.conf.all.accept_redirects"] = "1" }, key: "net.ipv6.conf.all.accept_redirects", status: StatusDrift},
		{name: "send redirects on", mutate: func(m map[string]string, _ *fakeParams) { m["net.ipv4.conf.default.send_redirects"] = "1" }, key: "net.ipv4.conf.default.send_redirects", status: StatusDrift},
		{name: "source route on", mutate: func(m map[string]string, _ *fakeParams) { m["net.ipv4.conf.all.accept_source_route"] = "1" }, key: "net.ipv4.conf.all.accept_source_route", status: StatusDrift},
		{name: "ipv6 source route -1 is safe", mutate: func(m map[string]string, _ *fakeParams) { m["net.ipv6.conf.all.accept_source_route"] = "-1" }, criticalOK: true, key: "net.ipv6.conf.all.accept_source_route", status: StatusDrift, safe: true},
		{name: "conntrack smaller but above floor", mutate: func(m map[string]string, _ *fakeParams) { m[KeyConntrackMax] = "65536" }, criticalOK: true, key: KeyConntrackMax, status: StatusDrift, safe: true},
		{name: "conntrack below floor", mutate: func(m map[string]string, _ *fakeParams) { m[KeyConntrackMax] = "8192" }, key: KeyConntrackMax, status: StatusDrift},
		{name: "conntrack not loaded", mutate: func(m map[string]string, _ *fakeParams) { delete(m, KeyConntrackMax) }, key: KeyConntrackMax, status: StatusAbsent},
		{name: "unreadable critical key", mutate: func(_ map[string]string, f *fakeParams) { f.readErr[KeyIPForward] = ErrReadOnly }, key: KeyIPForward, status: StatusError},
		{name: "non-critical drift", mutate: func(m map[string]string, _ *fakeParams) { m["net.core.netdev_budget"] = "300" }, criticalOK: true, key: "net.core.netdev_budget", status: StatusDrift, safe: true},
		{name: "whitespace and radix do not matter", mutate: func(m map[string]string, _ *fakeParams) { m["net.core.netdev_budget"] = " 0x258\n" }, criticalOK: true, key: "net.core.netdev_budget", status: StatusOK, safe: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := inForce()
			f := newFake(m)
			tt.mutate(m, f)
			r := Check(f, p)
			if len(f.writes) != 0 {
				t.Fatalf("Check wrote: %v", f.writes)
			}
			if r.CriticalOK() != tt.criticalOK {
				t.Errorf("CriticalOK = %v, want %v (%+v)", r.CriticalOK(), tt.criticalOK, r.CriticalFailures())
			}
			res, ok := r.Lookup(tt.key)
			if !ok || res.Status != tt.status || res.Safe != tt.safe {
				t.Errorf("%s = %+v, want status %s safe %v", tt.key, res, tt.status, tt.safe)
			}
			if tt.status == StatusOK && len(r.Failures()) != 0 {
				t.Errorf("failures: %+v", r.Failures())
			}
		})
	}
}

func TestCheckAddsMissingCriticalKeys(t *testing.T) {
	r := Check(newFake(safeKernel()), mustParse("net.core.netdev_budget = 600\n"))
	for _, k := range CriticalKeys() {
		res, ok := r.Lookup(k)
		if !ok || !res.Critical {
			t.Errorf("critical key %s not checked: %+v", k, res)
		}
	}
	if res, _ := r.Lookup("net.core.netdev_budget"); res.Status != StatusAbsent || res.Critical {
		t.Errorf("netdev_budget: %+v", res)
	}
	if !r.CriticalOK() {
		t.Errorf("critical: %+v", r.CriticalFailures())
	}
}

func TestReportCounts(t *testing.T) {
	r := Report{Results: []Result{{Status: StatusOK}, {Status: StatusOK}, {Status: StatusDrift}}}
	c := r.Counts()
	if c[StatusOK] != 2 || c[StatusDrift] != 1 || len(c) != 2 {
		t.Fatalf("Counts = %v", c)
	}
	if _, ok := r.Lookup("x"); ok {
		t.Fatal("Lookup of a missing key")
	}
}

func TestPhase(t *testing.T) {
	for key, want := range map[string]int{
		KeyIPForward:                       0,
		"net.ipv4.conf.all.forwarding":     0,
		"net.ipv6.conf.default.forwarding": 0,
		"net.ipv6.conf.eth0.forwarding":    0,
		"net.ipv4.conf.all.rp_filter":      1,
		"net.ipv4.forwarding_thing":        1,
		"net.netfilter.nf_conntrack_max":   2,
		"net.nf_conntrack_max":             2,
		"net.netfilter.nf_log_all_netns":   1,
	} {
		if got := phase(key); got != want {
			t.Errorf("phase(%s) = %d, want %d", key, got, want)
		}
	}
}
