package tuning

import (
	"os"
	"strings"
	"testing"
)

// Every problem docs/design NETPLANE.md lists for rev 1.6 must be reported.
func TestLintRev16(t *testing.T) {
	data, err := os.ReadFile("testdata/rev16.conf")
	if err != nil {
		t.Fatal(err)
	}
	fs := LintFile("rev16.conf", data)
	type want struct {
		key      string
		category Category
		severity Severity
		why      string // a phrase the operator must read
		safe     string
	}
	wants := []want{
		// breaks users
		{"net.netfilter.nf_conntrack_tcp_timeout_established", CategoryBreaksUsers, SeverityError, "40 seconds", "86400"},
		// unsafe
		{"net.ipv4.conf.all.rp_filter", CategoryUnsafe, SeverityError, "forged source addresses", "1"},
		{"net.ipv4.conf.default.rp_filter", CategoryUnsafe, SeverityError, "forged source addresses", "1"},
		{"net.ipv4.conf.all.accept_source_route", CategoryUnsafe, SeverityError, "choose the path", "0"},
		{"net.ipv4.conf.default.accept_source_route", CategoryUnsafe, SeverityError, "choose the path", "0"},
		{"net.ipv6.conf.all.accept_source_route", CategoryUnsafe, SeverityError, "routing headers", "0"},
		{"net.ipv6.conf.default.accept_source_route", CategoryUnsafe, SeverityError, "routing headers", "0"},
		{"net.ipv4.conf.all.accept_redirects", CategoryUnsafe, SeverityError, "rewrite the node's routes", "0"},
		{"net.ipv4.conf.default.accept_redirects", CategoryUnsafe, SeverityError, "rewrite the node's routes", "0"},
		{"net.ipv6.conf.all.accept_redirects", CategoryUnsafe, SeverityError, "rewrite the node's routes", "0"},
		{"net.ipv6.conf.default.accept_redirects", CategoryUnsafe, SeverityError, "rewrite the node's routes", "0"},
		{"net.ipv4.conf.all.send_redirects", CategoryUnsafe, SeverityError, "redirects", "0"},
		{"net.ipv4.conf.default.send_redirects", CategoryUnsafe, SeverityError, "redirects", "0"},
		{"net.ipv4.tcp_syncookies", CategoryUnsafe, SeverityError, "SYN flood", "1"},
		// mis-sized
		{"net.netfilter.nf_conntrack_max", CategoryMisSized, SeverityWarning, "chains of about 76", "sizes the table from memory"},
		{"net.core.rmem_max", CategoryMisSized, SeverityWarning, "below the kernel's own default", "33554432"},
		{"net.core.wmem_max", CategoryMisSized, SeverityWarning, "below the kernel's own default", "33554432"},
		{"net.ipv4.ipfrag_high_thresh", CategoryMisSized, SeverityWarning, "500 KiB", "4194304"},
		{"net.ipv4.udp_mem", CategoryMisSized, SeverityWarning, "pages", "remove the line"},
		{"fs.file-max", CategoryMisSized, SeverityWarning, "can lower it", "remove the line"},
		// no effect on forwarded traffic
		{"net.ipv4.tcp_sack", CategoryNoEffect, SeverityWarning, "end to end", "remove the line"},
		{"net.ipv4.tcp_dsack", CategoryNoEffect, SeverityWarning, "end to end", "remove the line"},
		{"net.ipv4.tcp_timestamps", CategoryNoEffect, SeverityWarning, "end to end", "remove the line"},
		{"net.ipv4.tcp_moderate_rcvbuf", CategoryNoEffect, SeverityWarning, "end to end", "remove the line"},
		{"net.ipv4.tcp_congestion_control", CategoryNoEffect, SeverityInfo, "endpoints", "remove the line"},
		// obsolete
		{"net.ipv4.route.flush", CategoryObsolete, SeverityInfo, "routing cache", "remove the line"},
		{"net.ipv6.route.flush", CategoryObsolete, SeverityInfo, "routing cache", "remove the line"},
		{"net.ipv4.tcp_fack", CategoryObsolete, SeverityInfo, "4.15", "remove the line"},
		// beyond NETPLANE's list
		{"net.ipv4.ipfrag_low_thresh", CategoryMisSized, SeverityWarning, "3 MiB", "3145728"},
		{"net.core.netdev_max_backlog", CategoryMisSized, SeverityWarning, "bufferbloat", "8192"},
		{"net.netfilter.nf_conntrack_tcp_timeout_fin_wait", CategoryBreaksUsers, SeverityWarning, "half-closed", "120"},
		{"net.netfilter.nf_conntrack_tcp_timeout_close_wait", CategoryBreaksUsers, SeverityWarning, "half-closed", "60"},
		{"net.ipv4.neigh.default.base_reachable_time", CategoryDuplicate, SeverityInfo, "more than once", "keep one"},
		{"net.ipv4.neigh.default.gc_stale_time", CategoryDuplicate, SeverityInfo, "more than once", "keep one"},
	}
	found := map[string]Finding{}
	for _, f := range fs {
		if _, dup := found[f.Key]; dup {
			t.Errorf("two findings for %s", f.Key)
		}
		found[f.Key] = f
	}
	for _, w := range wants {
		f, ok := found[w.key]
		if !ok {
			t.Errorf("%s: no finding", w.key)
			continue
		}
		if f.Category != w.category || f.Severity != w.severity || !strings.Contains(f.Why, w.why) || !strings.Contains(f.Safe, w.safe) {
			t.Errorf("%s: %+v\nwant category %s, severity %s, why ~%q, safe ~%q", w.key, f, w.category, w.severity, w.why, w.safe)
		}
		if f.Pos.Line == 0 || f.Value == "" {
			t.Errorf("%s: finding without line or value: %+v", w.key, f)
		}
		delete(found, w.key)
	}
	for k, f := range found {
		t.Errorf("unexpected finding for %s: %+v", k, f)
	}
	// The good settings NETPLANE names are left alone.
	for _, k := range []string{KeyIPForward, "net.ipv4.icmp_echo_ignore_broadcasts", "net.ipv4.tcp_rfc1337"} {
		for _, f := range fs {
			if f.Key == k {
				t.Errorf("good setting %s flagged: %+v", k, f)
			}
		}
	}
	// Sorted: errors first.
	for i := 1; i < len(fs); i++ {
		if fs[i-1].Severity.rank() > fs[i].Severity.rank() {
			t.Fatalf("findings not sorted by severity at %d", i)
		}
	}
}

func TestLintRules(t *testing.T) {
	tests := []struct {
		line     string
		category Category // "" = no finding
	}{
		{"net.ipv4.ip_forward = 0", CategoryBreaksUsers},
		{"net.ipv6.conf.all.forwarding = 0", CategoryBreaksUsers},
		{"net.ipv4.ip_forward = 1", ""},
		{"net.ipv4.conf.eth0.rp_filter = 0", CategoryUnsafe},
		{"net.ipv4.conf.all.rp_filter = 2", ""},
		{"net.ipv4.conf.all.rp_filter = 1", ""},
		{"net.ipv6.conf.all.accept_source_route = -1", ""},
		{"net.ipv6.conf.all.accept_source_route = 0", ""},
		{"net.ipv4.conf.all.accept_redirects = 0", ""},
		{"net.ipv4.tcp_syncookies = 1", ""},
		{"net.ipv4.tcp_syncookies = 2", ""},
		{"net.ipv4.icmp_echo_ignore_broadcasts = 0", CategoryUnsafe},
		{"net.netfilter.nf_conntrack_tcp_timeout_established = 86400", ""},
		{"net.netfilter.nf_conntrack_tcp_timeout_established = 3600", CategoryBreaksUsers},
		{"net.netfilter.nf_conntrack_tcp_timeout_fin_wait = 120", ""},
		{"net.netfilter.nf_conntrack_tcp_timeout_time_wait = 10", ""},
		{"net.netfilter.nf_conntrack_max = 262144", ""},
		{"net.netfilter.nf_conntrack_max = 1048576", CategoryMisSized}, // no buckets
		{"net.nf_conntrack_max = 10000000", CategoryMisSized},
		{"net.core.rmem_max = 33554432", ""},
		{"net.core.wmem_max = 212992", CategoryMisSized},
		{"net.ipv4.ipfrag_high_thresh = 4194304", ""},
		{"net.ipv4.tcp_mem = 1 2 3", CategoryMisSized},
		{"net.ipv4.udp_mem =", CategoryMisSized},
		{"fs.file-max = 9223372036854775807", ""},
		{"net.core.netdev_max_backlog = 8192", ""},
		{"net.ipv4.tcp_sack = 1", ""},
		{"net.ipv4.tcp_window_scaling = 0", CategoryNoEffect},
		{"net.ipv4.tcp_tw_recycle = 0", CategoryObsolete},
		{"net.ipv4.tcp_low_latency = 1", CategoryObsolete},
		{"net.ipv4.tcp_rfc1337 = 1 # keep", CategorySyntax},
		{"kernel.sysrq = 0", ""},
		{"net.ipv4.conf.all.rp_filter = zero", ""}, // not a number: the kernel will reject it; not a lint rule
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			fs := LintFile("t.conf", []byte(tt.line+"\n"))
			switch {
			case tt.category == "" && len(fs) != 0:
				t.Fatalf("unexpected findings: %+v", fs)
			case tt.category != "" && (len(fs) != 1 || fs[0].Category != tt.category):
				t.Fatalf("findings %+v, want one %s", fs, tt.category)
			case tt.category != "" && (fs[0].Why == "" || fs[0].Safe == ""):
				t.Fatalf("finding without why or safe value: %+v", fs[0])
			}
		})
	}
}

func TestLintConntrackWithBuckets(t *testing.T) {
	fs := Lint(mustParse("net.netfilter.nf_conntrack_buckets = 1048576\nnet.netfilter.nf_conntrack_max = 1048576\n"))
	if len(fs) != 0 {
		t.Fatalf("a table with matching buckets under the cap: %+v", fs)
	}
	fs = Lint(mustParse("net.netfilter.nf_conntrack_buckets = 10000000\nnet.netfilter.nf_conntrack_max = 10000000\n"))
	if len(fs) != 1 || strings.Contains(fs[0].Why, "chains") || !strings.Contains(fs[0].Why, "GiB") {
		t.Fatalf("with buckets, only the memory problem remains: %+v", fs)
	}
}

func TestLintSyntaxErrors(t *testing.T) {
	fs := LintFile("t.conf", []byte("# ok\nnot an assignment\nnet.ipv4.ip_forward = 1\n"))
	if len(fs) != 1 || fs[0].Category != CategorySyntax || fs[0].Severity != SeverityError || fs[0].Pos.Line != 2 {
		t.Fatalf("findings = %+v", fs)
	}
	if s := LintSummary(fs); s[SeverityError] != 1 || len(s) != 1 {
		t.Fatalf("summary = %v", s)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{100: "100 bytes", 512000: "500 KiB", 4194304: "4.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for s, want := range map[int64]string{40: "40 seconds", 120: "2 minutes", 7200: "2 hours", 86400: "1 day", 1: "1 second", 90: "90 seconds"} {
		if got := duration(s); got != want {
			t.Errorf("duration(%d) = %q, want %q", s, got, want)
		}
	}
}
