package main

import (
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// dnsperfVerbose is dnsperf 2.10's output, recorded: `dnsperf -n 2 -t 1 -v`
// against unbound with two local names, one NXDOMAIN and one name whose
// forwarder never answers.
const dnsperfVerbose = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 5353 -d /tmp/dnst/q2.txt -n 2 -t 1 -v
[Status] Sending queries (to 127.0.0.1:5353)
[Status] Started at: Thu Dec  3 08:30:32 2026
[Status] Stopping after 2 runs through file
> NOERROR h0.bench.test. A 0.004092
> NOERROR h1.bench.test. A 0.005534
> NXDOMAIN h2.bench.test. A 0.001092
> NOERROR h0.bench.test. A 0.004203
> NOERROR h1.bench.test. A 0.003494
> NXDOMAIN h2.bench.test. A 0.003478
> T slow.miss.test. A
> T slow.miss.test. A
[Status] Testing complete (end of file)

Statistics:

  Queries sent:         8
  Queries completed:    6 (75.00%)
  Queries lost:         2 (25.00%)

  Response codes:       NOERROR 4 (66.67%), NXDOMAIN 2 (33.33%)
  Average packet size:  request 31, response 41
  Run time (s):         0.019294
  Queries per second:   310.977506

  Average Latency (s):  0.003648 (min 0.001092, max 0.005534)
  Latency StdDev (s):   0.001459

`

// dnsperfPlain is recorded too: `dnsperf -l 2 -Q 1000 -S 1`.
const dnsperfPlain = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 5353 -d /tmp/dnst/q.txt -l 2 -Q 1000 -S 1
[Status] Sending queries (to 127.0.0.1:5353)
[Status] Started at: Thu Dec  3 08:12:19 2026
[Status] Stopping after 2.000000 seconds
1796285540.201455: 1000.776827
1796285541.202018: 998.437879
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         2000
  Queries completed:    2000 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 1334 (66.70%), NXDOMAIN 666 (33.30%)
  Average packet size:  request 30, response 40
  Run time (s):         2.000821
  Queries per second:   999.589668

  Average Latency (s):  0.000094 (min 0.000016, max 0.011016)
  Latency StdDev (s):   0.000535
`

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestDNSBenchParsePerfVerbose(t *testing.T) {
	r, err := dnsbParsePerf(strings.NewReader(dnsperfVerbose), 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 8 || r.Completed != 6 || r.Lost != 2 {
		t.Errorf("sent/completed/lost = %d/%d/%d, want 8/6/2", r.Sent, r.Completed, r.Lost)
	}
	if !near(r.QPS, 310.977506) || !near(r.RunSeconds, 0.019294) {
		t.Errorf("qps %v run %v", r.QPS, r.RunSeconds)
	}
	if !near(r.AvgMs, 3.648) || !near(r.MinMs, 1.092) || !near(r.MaxMs, 5.534) || !near(r.StdDevMs, 1.459) {
		t.Errorf("latency avg/min/max/sd = %v/%v/%v/%v ms", r.AvgMs, r.MinMs, r.MaxMs, r.StdDevMs)
	}
	if r.Rcodes["NOERROR"] != 4 || r.Rcodes["NXDOMAIN"] != 2 || len(r.Rcodes) != 2 {
		t.Errorf("rcodes %v", r.Rcodes)
	}
	// Six answers plus two lost queries counted at the 1 s timeout:
	// 1.092 3.478 3.494 4.092 4.203 5.534 1000 1000 ms.
	if r.Samples != 8 || !near(r.P50Ms, 4.092) || !near(r.P99Ms, 1000) {
		t.Errorf("samples %d p50 %v p99 %v", r.Samples, r.P50Ms, r.P99Ms)
	}
}

func TestDNSBenchParsePerfPlain(t *testing.T) {
	r, err := dnsbParsePerf(strings.NewReader(dnsperfPlain), 2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Completed != 2000 || r.Lost != 0 || !near(r.QPS, 999.589668) || !near(r.MaxMs, 11.016) {
		t.Errorf("%+v", r)
	}
	if r.Samples != 0 || r.P50Ms != 0 || r.P99Ms != 0 {
		t.Errorf("percentiles without -v: samples %d p50 %v p99 %v", r.Samples, r.P50Ms, r.P99Ms)
	}
}

func TestDNSBenchParsePerfErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "no statistics"},
		{"killed before the statistics", dnsperfVerbose[:strings.Index(dnsperfVerbose, "Statistics")], "no statistics"},
		{"statistics without qps", strings.Replace(dnsperfPlain, "Queries per second", "Queries per fortnight", 1), "no statistics"},
		{"bad latency", "> NOERROR a.test. A fast\n" + dnsperfPlain, "latency line"},
		{"bad count", strings.Replace(dnsperfPlain, "Queries sent:         2000", "Queries sent:         many", 1), "Queries sent"},
		{"bad average", strings.Replace(dnsperfPlain, "0.000094 (min", "soon (min", 1), "Average Latency"},
		{"bad rcode count", strings.Replace(dnsperfPlain, "NOERROR 1334", "NOERROR lots", 1), "Response codes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dnsbParsePerf(strings.NewReader(tc.in), 1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDNSBenchPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ q, want float64 }{{0.5, 5}, {0.99, 10}, {0.1, 1}, {0, 1}, {1, 10}} {
		if got := dnsbPercentile(v, tc.q); got != tc.want {
			t.Errorf("q %v: %v, want %v", tc.q, got, tc.want)
		}
	}
	if dnsbPercentile(nil, 0.5) != 0 {
		t.Error("empty")
	}
}

func validDNSBenchOpts() dnsbOpts {
	return dnsbOpts{reps: 3, seconds: 8 * time.Second, loads: []int{10000, 50000}, hitNames: 1000,
		clients: 8, threads: 2, outstanding: 400, missNames: 30000, missQPS: 100000, rssNames: 200000,
		rssQPS: 40000, delay: time.Millisecond, cache: 2000000, unbound: "unbound", dnsperf: "dnsperf"}
}

func TestDNSBenchValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*dnsbOpts)
		want string // "" means valid
	}{
		{"defaults", func(*dnsbOpts) {}, ""},
		{"exitd only, no RSS, no delay", func(o *dnsbOpts) { o.unbound, o.rssNames, o.delay = "", 0, 0 }, ""},
		{"no reps", func(o *dnsbOpts) { o.reps = 0 }, "--reps 0"},
		{"sub-second runs", func(o *dnsbOpts) { o.seconds = 500 * time.Millisecond }, "--seconds 500ms"},
		{"zero load", func(o *dnsbOpts) { o.loads = []int{10000, 0} }, "--loads 0"},
		{"absurd load", func(o *dnsbOpts) { o.loads = []int{5000000} }, "--loads 5000000"},
		{"no hit names", func(o *dnsbOpts) { o.hitNames = 0 }, "--hit-names 0"},
		{"more threads than clients", func(o *dnsbOpts) { o.threads = 9 }, "threads ≤ clients"},
		{"no outstanding", func(o *dnsbOpts) { o.outstanding = 0 }, "--outstanding 0"},
		{"negative miss names", func(o *dnsbOpts) { o.missNames = -1 }, "--miss-names -1"},
		{"zero rss qps", func(o *dnsbOpts) { o.rssQPS = 0 }, "--rss-qps 0"},
		{"long delay", func(o *dnsbOpts) { o.delay = 2 * time.Second }, "--delay 2s"},
		{"cache too small for RSS", func(o *dnsbOpts) { o.cache = 150000 }, "--cache-entries 150000"},
		{"cache too small for misses", func(o *dnsbOpts) { o.rssNames, o.cache = 0, 50000 }, "--cache-entries 50000"},
		{"no dnsperf", func(o *dnsbOpts) { o.dnsperf = "" }, "--dnsperf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := validDNSBenchOpts()
			tc.edit(&o)
			err := o.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestDNSBenchFlags checks that the command's defaults are valid and that a
// bad flag is refused before anything is built.
func TestDNSBenchFlags(t *testing.T) {
	cmd := newDNSBenchCmd(nil, io.Discard)
	cmd.SetArgs([]string{"--reps", "0", "--loads", "10000,x"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--loads") {
		t.Fatalf("bad --loads: %v", err)
	}
	cmd = newDNSBenchCmd(nil, io.Discard)
	cmd.SetArgs([]string{"--reps", "0", "--seconds", "3s", "--out", ""})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--reps 0") {
		t.Fatalf("--reps 0: %v", err)
	}
	if serve, _, err := cmd.Find([]string{"serve"}); err != nil || serve.Name() != "serve" || !serve.Hidden {
		t.Error("the hidden serve child is missing")
	}
	// The flag defaults are the documented ones, and valid.
	f := newDNSBenchCmd(nil, io.Discard).Flags()
	for name, want := range map[string]string{"reps": "3", "seconds": "8s", "loads": "[10000,50000]", "rss-names": "200000", "delay": "1ms", "cache-entries": "2000000"} {
		if got := f.Lookup(name).DefValue; got != want {
			t.Errorf("--%s default %s, want %s", name, got, want)
		}
	}
	o := validDNSBenchOpts()
	if err := o.validate(); err != nil {
		t.Error(err)
	}
}

func TestDNSBenchPerfArgs(t *testing.T) {
	s := dnsbPerfSpec{File: "/tmp/q.txt", QPS: 10000, Seconds: 8, Clients: 8, Threads: 2, Outstanding: 400, Verbose: true}
	got := strings.Join(s.args(netip.MustParseAddrPort("198.18.0.1:5353")), " ")
	want := "-s 198.18.0.1 -p 5353 -d /tmp/q.txt -l 8 -t 2 -c 8 -T 2 -q 400 -Q 10000 -v"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	s = dnsbPerfSpec{File: "/tmp/m.txt", Seconds: 62.5, Runs: 1, Clients: 1, Threads: 1, Outstanding: 100}
	got = strings.Join(s.args(netip.MustParseAddrPort("198.18.0.1:53")), " ")
	want = "-s 198.18.0.1 -p 53 -d /tmp/m.txt -l 62.5 -t 2 -c 1 -T 1 -q 100 -n 1"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestDNSBenchAuthReply(t *testing.T) {
	ask := func(name string, qtype uint16, edns bool) *mdns.Msg {
		q := new(mdns.Msg)
		q.SetQuestion(name, qtype)
		if edns {
			q.SetEdns0(1232, false)
		}
		return dnsbAuthReply(q)
	}
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		rcode   int
		answers int
		soa     bool
	}{
		{"hit name", "h17.bench.test.", mdns.TypeA, mdns.RcodeSuccess, 1, false},
		{"mixed case", "H17.Bench.TEST.", mdns.TypeA, mdns.RcodeSuccess, 1, false},
		{"miss name", "m3.x1.miss.test.", mdns.TypeA, mdns.RcodeSuccess, 1, false},
		{"AAAA is NODATA", "h1.bench.test.", mdns.TypeAAAA, mdns.RcodeSuccess, 0, true},
		{"apex A is NODATA", "bench.test.", mdns.TypeA, mdns.RcodeSuccess, 0, true},
		{"root NS (health probe)", ".", mdns.TypeNS, mdns.RcodeSuccess, 1, false},
		{"other zone", "example.com.", mdns.TypeA, mdns.RcodeRefused, 0, false},
		{"look-alike zone", "xbench.test.", mdns.TypeA, mdns.RcodeRefused, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(tc.qname, tc.qtype, true)
			if r.Rcode != tc.rcode || len(r.Answer) != tc.answers || (len(r.Ns) == 1) != tc.soa {
				t.Fatalf("rcode %s, %d answers, %d authority", mdns.RcodeToString[r.Rcode], len(r.Answer), len(r.Ns))
			}
			if r.IsEdns0() == nil {
				t.Error("EDNS query answered without OPT")
			}
			if a, ok := firstA(r); ok {
				addr, _ := netip.AddrFromSlice(a.A.To4())
				if a.Hdr.Ttl != dnsbTTL || !netip.MustParsePrefix("198.18.0.0/15").Contains(addr) || dnsbDeny(addr) {
					t.Errorf("answer %v (TTL %d): want TTL 3600 in 198.18.0.0/15, not denied", addr, a.Hdr.Ttl)
				}
				if a.Hdr.Name != tc.qname {
					t.Errorf("owner %s, want the query's spelling %s", a.Hdr.Name, tc.qname)
				}
			}
		})
	}
	if ask("x.bench.test.", mdns.TypeA, false).IsEdns0() != nil {
		t.Error("OPT in the answer to a query without EDNS")
	}
	// Names get their own answers (a hash: distinct for nearly all names).
	seen := map[string]bool{}
	for i := range 1000 {
		a, _ := firstA(ask("m"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".miss.test.", mdns.TypeA, false))
		seen[a.A.String()] = true
	}
	if len(seen) < 990 {
		t.Errorf("%d distinct answers for 1000 names", len(seen))
	}
}

func firstA(m *mdns.Msg) (*mdns.A, bool) {
	for _, rr := range m.Answer {
		if a, ok := rr.(*mdns.A); ok {
			return a, true
		}
	}
	return nil, false
}

func TestDNSBenchDeny(t *testing.T) {
	for _, tc := range []struct {
		addr string
		deny bool
	}{{"10.1.2.3", true}, {"192.168.0.1", true}, {"127.0.0.1", true}, {"169.254.169.254", true}, {"::ffff:10.0.0.1", true},
		{"198.18.3.4", false}, {"198.19.255.1", false}, {"2001:db8::1", false}} {
		if got := dnsbDeny(netip.MustParseAddr(tc.addr)); got != tc.deny {
			t.Errorf("%s: deny %v, want %v", tc.addr, got, tc.deny)
		}
	}
}

func TestDNSBenchParseStatCPU(t *testing.T) {
	// /proc/PID/stat of a process whose name holds ") " (the name is
	// parenthesised and may contain anything): utime 250, stime 50 ticks.
	line := "4242 (dns ) (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n"
	if got := dnsbParseStatCPU(line); got != 3 {
		t.Errorf("got %v s, want 3", got)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2", "4242 (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 a b 0"} {
		if got := dnsbParseStatCPU(bad); got != 0 {
			t.Errorf("%q: %v, want 0", bad, got)
		}
	}
}

func TestDNSBenchUnboundConf(t *testing.T) {
	c := dnsbUnboundConf(netip.MustParseAddrPort("198.18.0.1:5353"), netip.MustParseAddrPort("203.0.113.2:53"), "/tmp/d")
	for _, want := range []string{
		"interface: 198.18.0.1@5353", "access-control: 198.18.0.0/16 allow", "forward-addr: 203.0.113.2@53",
		`name: "."`, "num-threads: 2", "do-not-query-localhost: no", `username: ""`, `chroot: ""`,
		`pidfile: "/tmp/d/unbound.pid"`, "control-enable: no", "verbosity: 0", `local-zone: "test." nodefault`,
	} {
		if !strings.Contains(c, want) {
			t.Errorf("unbound.conf lacks %q:\n%s", want, c)
		}
	}
}

func TestDNSBenchSummarize(t *testing.T) {
	r := &dnsbReport{}
	r.Options.Loads, r.Options.DelayMs = []int{10000}, 1
	run := func(sys string, rep int, sc string, qps, p99 float64) dnsbRun {
		x := dnsbRun{System: sys, Rep: rep, Scenario: sc}
		x.QPS, x.P99Ms, x.AvgMs = qps, p99, 0.1
		return x
	}
	for rep, f := range []float64{1, 3, 2} { // medians: the middle factor, 2
		r.Runs = append(r.Runs,
			run(dnsbExitd, rep+1, "hit-10000", 10000, 0.4*f), run(dnsbUnbound, rep+1, "hit-10000", 10000, 0.2*f),
			run(dnsbExitd, rep+1, "hit-max", 35000*f, 0), run(dnsbUnbound, rep+1, "hit-max", 50000*f, 0))
	}
	r.RSS = []dnsbRSS{
		{System: dnsbExitd, Names: 200000, BaseMiB: 10, AfterMiB: 90, Per100kMiB: 40, At1MMiB: 410, Extrapolated: true, HeapLiveMiB: 60},
		{System: dnsbUnbound, Names: 200000, BaseMiB: 20, AfterMiB: 120, Per100kMiB: 50, At1MMiB: 520, Extrapolated: true},
	}
	r.summarize()
	row := func(prefix string) dnsbRow {
		i := slices.IndexFunc(r.Rows, func(x dnsbRow) bool { return strings.HasPrefix(x.Scenario, prefix) })
		if i < 0 {
			t.Fatalf("no row %q in %+v", prefix, r.Rows)
		}
		return r.Rows[i]
	}
	if p := row("cache hit, 10000 qps offered: latency p99"); !near(p.Exitd, 0.8) || !near(p.Unbound, 0.4) || !near(p.Ratio, 2) || p.Verdict != "met" {
		t.Errorf("p99 row %+v", p)
	}
	if s := row("cache hit, saturation: throughput"); !near(s.Ratio, 0.7) || s.Verdict != "MISSED" {
		t.Errorf("saturation row %+v", s)
	}
	// 410 MiB is 429.9 MB: over the 400 MB target.
	if m := row("RSS at 1M names"); !strings.Contains(m.Scenario, "EXTRAPOLATED from 200000") || m.Verdict != "MISSED" {
		t.Errorf("RSS row %+v", m)
	}
	if h := row("exitd's live Go heap"); h.Exitd != 60 || h.Ratio != 0 {
		t.Errorf("heap row %+v", h)
	}
	if slices.ContainsFunc(r.Rows, func(x dnsbRow) bool { return strings.HasPrefix(x.Scenario, "cache miss") }) {
		t.Error("a row for a scenario that did not run")
	}
	md := r.markdown()
	for _, want := range []string{"| scenario | exitd | unbound | exitd/unbound | target |", "| cache hit, saturation: throughput (qps) | 70000 | 100000 | 0.70 | ≥ 0.8× unbound: MISSED |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
