package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"exitd/tuning"
)

const rev16 = "../../tuning/testdata/rev16.conf"

// runTune runs `exitd tune args...` and returns stdout, stderr and the exit
// code main would use (0 when RunE returned nil).
func runTune(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := newTuneCmd(&stdout, &stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	code := 0
	if err := cmd.Execute(); err != nil {
		code = exitCode(err)
		stderr.WriteString(err.Error())
	}
	return stdout.String(), stderr.String(), code
}

// fakeProc writes a /proc/sys tree (and meminfo beside it) holding the
// bundled profile's values, conntrack sized for 8 GiB, with overrides.
func fakeProc(t *testing.T, overrides map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "proc", "sys")
	p, err := tuning.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for _, e := range p.WithConntrack(tuning.ConntrackFor(8 << 30)).Settings() {
		vals[e.Key] = e.Value
	}
	for k, v := range overrides {
		vals[k] = v
	}
	s := tuning.Sysctl{Root: root}
	for k, v := range vals {
		path := s.Path(k)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(root), "meminfo"), []byte("MemTotal: 8388608 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestTuneLintRev16(t *testing.T) {
	out, errOut, code := runTune(t, "lint", rev16)
	if code != exitProblems {
		t.Errorf("exit code %d, want %d", code, exitProblems)
	}
	for _, want := range []string{
		"34 findings: 14 error, 14 warning, 6 info",
		"ERROR   breaks-users line 97: net.netfilter.nf_conntrack_tcp_timeout_established = 40",
		"net.ipv4.conf.all.rp_filter = 0", "net.ipv4.conf.default.rp_filter = 0",
		"net.ipv4.conf.all.accept_source_route = 1", "net.ipv6.conf.all.accept_source_route = 1",
		"net.ipv4.conf.all.accept_redirects = 1", "net.ipv6.conf.default.accept_redirects = 1",
		"net.ipv4.conf.all.send_redirects = 1", "net.ipv4.tcp_syncookies = 0",
		"WARNING mis-sized    line 96: net.netfilter.nf_conntrack_max = 10000000",
		"chains of about\n        76 entries",
		"net.core.rmem_max = 108544", "net.core.wmem_max = 108544",
		"net.ipv4.ipfrag_high_thresh = 512000", "net.ipv4.udp_mem = 65536 173800 419430",
		"fs.file-max = 360000",
		"net.ipv4.tcp_sack = 0", "net.ipv4.tcp_dsack = 0", "net.ipv4.tcp_timestamps = 0",
		"net.ipv4.tcp_moderate_rcvbuf = 0", "net.ipv4.tcp_congestion_control = cubic",
		"INFO    obsolete     line 157: net.ipv4.route.flush = 1", "net.ipv6.route.flush = 1",
		"net.ipv4.tcp_fack = 0",
		"  safe: 86400 (1 day; the kernel default is 432000, 5 days)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q", want)
		}
	}
	if !strings.Contains(errOut, "28 error(s) and warning(s)") {
		t.Errorf("stderr = %q", errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 80 && !strings.Contains(line, ": net.") {
			t.Errorf("line over 80 columns: %q", line)
		}
	}
}

func TestTuneLintJSONAndClean(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "60-exitd.conf")
	os.WriteFile(clean, tuning.BundledBytes(), 0o644)
	out, _, code := runTune(t, "lint", "--json", rev16, clean)
	if code != exitProblems {
		t.Errorf("exit code %d", code)
	}
	var got []struct {
		File     string           `json:"file"`
		Findings []tuning.Finding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("lint --json: %v\n%s", err, out)
	}
	if len(got) != 2 || len(got[0].Findings) != 34 || got[1].Findings == nil || len(got[1].Findings) != 0 {
		t.Fatalf("json = %+v", got)
	}
	out, _, code = runTune(t, "lint", clean)
	if code != 0 || !strings.Contains(out, "no findings") {
		t.Errorf("bundled profile: code %d\n%s", code, out)
	}
	if _, _, code := runTune(t, "lint", filepath.Join(dir, "missing.conf")); code != 1 {
		t.Errorf("missing file: code %d, want 1", code)
	}
	if _, _, code := runTune(t, "lint"); code != 1 {
		t.Errorf("no file: code %d, want 1", code)
	}
}

func TestTuneCheck(t *testing.T) {
	tests := []struct {
		name      string
		overrides map[string]string
		code      int
		want      []string
	}{
		{"all in force", nil, 0, []string{"safety-critical keys: all hold", "net.ipv4.ip_forward"}},
		{"forwarding off", map[string]string{"net.ipv4.ip_forward": "0"}, exitProblems, []string{"UNSAFE", "1 UNSAFE"}},
		{"rp_filter off", map[string]string{"net.ipv4.conf.all.rp_filter": "0"}, exitProblems, []string{"UNSAFE"}},
		{"non-critical drift", map[string]string{"net.core.netdev_budget": "300"}, 0, []string{"1 drift", "all hold"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := fakeProc(t, tt.overrides)
			out, errOut, code := runTune(t, "check", "--proc", proc)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestTuneCheckJSON(t *testing.T) {
	proc := fakeProc(t, map[string]string{"net.ipv4.ip_forward": "0"})
	out, _, code := runTune(t, "check", "--json", "--proc", proc)
	if code != exitProblems {
		t.Errorf("exit code %d", code)
	}
	var got struct {
		CriticalOK bool            `json:"critical_ok"`
		Results    []tuning.Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	if got.CriticalOK || len(got.Results) < 20 || got.Results[0].Key != "net.ipv4.ip_forward" || got.Results[0].InForce != "0" {
		t.Fatalf("json = %+v", got)
	}
}

func TestTuneApply(t *testing.T) {
	proc := fakeProc(t, map[string]string{
		"net.ipv4.ip_forward":            "0",
		"net.ipv4.conf.all.rp_filter":    "0",
		"net.netfilter.nf_conntrack_max": "8192",
	})
	os.Remove(filepath.Join(proc, "net/core/default_qdisc"))
	out, errOut, code := runTune(t, "apply", "--proc", proc, "--conntrack-max", "500000")
	if code != 0 {
		t.Fatalf("apply: code %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "1 absent") || !strings.Contains(out, "all hold") {
		t.Errorf("apply output:\n%s", out)
	}
	b, _ := os.ReadFile(filepath.Join(proc, "net/netfilter/nf_conntrack_max"))
	if string(b) != "500000\n" {
		t.Errorf("nf_conntrack_max = %q, want the explicit 500000", b)
	}
	out, _, code = runTune(t, "check", "--proc", proc, "--conntrack-max", "500000")
	if code != 0 {
		t.Errorf("check after apply: code %d\n%s", code, out)
	}
	// Sized from the fake meminfo (8 GiB) when not given.
	runTune(t, "apply", "--proc", proc)
	b, _ = os.ReadFile(filepath.Join(proc, "net/netfilter/nf_conntrack_max"))
	if string(b) != "1048576\n" {
		t.Errorf("nf_conntrack_max = %q, want 1048576 for 8 GiB", b)
	}
}

func TestTuneApplyForwardingStuck(t *testing.T) {
	proc := fakeProc(t, nil)
	// A directory where the file should be: the write fails, forwarding
	// stays unreadable, and apply must fail like the daemon would.
	fwd := filepath.Join(proc, "net/ipv4/ip_forward")
	os.Remove(fwd)
	os.Mkdir(fwd, 0o755)
	_, errOut, code := runTune(t, "apply", "--proc", proc)
	if code != exitProblems || !strings.Contains(errOut, "net.ipv4.ip_forward") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	// Other critical failures only fail with --strict.
	proc2 := fakeProc(t, nil)
	rp := filepath.Join(proc2, "net/ipv4/conf/all/rp_filter")
	os.Remove(rp)
	os.Mkdir(rp, 0o755)
	if _, _, code := runTune(t, "apply", "--proc", proc2); code != 0 {
		t.Errorf("without --strict: code %d", code)
	}
	if _, _, code := runTune(t, "apply", "--strict", "--proc", proc2); code != exitProblems {
		t.Errorf("with --strict: code %d", code)
	}
}

func TestTuneEffective(t *testing.T) {
	root := t.TempDir()
	write := func(p, content string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("usr/lib/sysctl.d/60-exitd.conf", string(tuning.BundledBytes()))
	write("usr/lib/sysctl.d/50-default.conf", "net.ipv4.conf.default.rp_filter = 2\n")
	write("etc/sysctl.d/99-hardening.conf", "# STIG\nnet.ipv4.ip_forward = 0\n")

	out, errOut, code := runTune(t, "effective", "--root", root)
	if code != exitProblems {
		t.Errorf("exit code %d, want %d", code, exitProblems)
	}
	for _, want := range []string{
		"/usr/lib/sysctl.d/50-default.conf\n  /usr/lib/sysctl.d/60-exitd.conf\n  /etc/sysctl.d/99-hardening.conf",
		"CRITICAL net.ipv4.ip_forward: exitd wants 1, but /etc/sysctl.d/99-hardening.conf:2 sets 0",
		"1 (/usr/lib/sysctl.d/60-exitd.conf:22)",
		"does not fully hold at boot (1 key):",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "net.ipv4.ip_forward") {
		t.Errorf("stderr = %q", errOut)
	}
	// rp_filter: exitd's 60- file beats 50-default.
	if strings.Contains(out, "rp_filter: exitd wants") {
		t.Errorf("rp_filter reported overridden:\n%s", out)
	}

	out, _, _ = runTune(t, "effective", "--json", "--root", root)
	var got struct {
		Files     []string          `json:"files"`
		Settings  []tuning.Setting  `json:"settings"`
		Conflicts []tuning.Conflict `json:"conflicts"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("effective --json: %v\n%s", err, out)
	}
	if len(got.Files) != 3 || len(got.Conflicts) != 1 || got.Conflicts[0].Key != "net.ipv4.ip_forward" || got.Conflicts[0].Pos.File != "/etc/sysctl.d/99-hardening.conf" {
		t.Fatalf("json = %+v", got)
	}

	// Without the override the profile holds.
	os.Remove(filepath.Join(root, "etc/sysctl.d/99-hardening.conf"))
	out, _, code = runTune(t, "effective", "--root", root)
	if code != 0 || !strings.Contains(out, "no file overrides it") {
		t.Errorf("code %d\n%s", code, out)
	}
	if _, _, code := runTune(t, "effective", "--root", filepath.Join(root, "nope")); code != 1 {
		t.Errorf("missing root: code %d", code)
	}
}

func TestWrap(t *testing.T) {
	var b bytes.Buffer
	wrap(&b, "  why:  ", strings.Repeat("word ", 40))
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "  why:  word") || !strings.HasPrefix(lines[1], "        word") {
		t.Fatalf("wrap:\n%s", b.String())
	}
	for _, l := range lines {
		if len(l) > 80 {
			t.Errorf("line over 80: %q", l)
		}
	}
}

func TestTuneFlagsSysctl(t *testing.T) {
	tests := []struct {
		proc, sys, wantModule string
	}{
		{"/proc/sys", "", "/sys/module"},
		{"/proc/sys/", "", "/sys/module"},
		{"/tmp/x/proc/sys", "", ""}, // a test tree never reaches the host's /sys
		{"/tmp/x/proc/sys", "/tmp/x/sys", "/tmp/x/sys/module"},
		{"/proc/sys", "/tmp/y", "/tmp/y/module"},
	}
	for _, tt := range tests {
		f := &tuneFlags{proc: tt.proc, sys: tt.sys}
		if got := f.sysctl(); got.Root != tt.proc || got.ModuleRoot != tt.wantModule {
			t.Errorf("proc %q sys %q: %+v, want module root %q", tt.proc, tt.sys, got, tt.wantModule)
		}
	}
}

func TestTuneCheckWithoutMeminfo(t *testing.T) {
	proc := fakeProc(t, nil)
	os.Remove(filepath.Join(filepath.Dir(proc), "meminfo"))
	out, errOut, code := runTune(t, "check", "--proc", proc)
	if !strings.Contains(errOut, "conntrack not sized") {
		t.Errorf("stderr = %q, want a note that conntrack was not sized", errOut)
	}
	// The critical floor is still checked: the fake table (1048576) passes.
	if code != 0 || !strings.Contains(out, "net.netfilter.nf_conntrack_max") {
		t.Errorf("code %d\n%s", code, out)
	}
}

func TestTuneApplyReportsRejected(t *testing.T) {
	proc := fakeProc(t, nil)
	// A directory in place of a key: the write fails unclassified, and the
	// table is followed by the reason.
	qd := filepath.Join(proc, "net/core/netdev_budget")
	os.Remove(qd)
	os.Mkdir(qd, 0o755)
	out, _, code := runTune(t, "apply", "--proc", proc)
	if code != 0 {
		t.Errorf("a non-critical failure must not fail apply: code %d", code)
	}
	if !strings.Contains(out, "  net.core.netdev_budget: ") || !strings.Contains(out, "1 error") {
		t.Errorf("apply output lacks the failure detail:\n%s", out)
	}
}

func TestTuneLintSyntax(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(file, []byte("net.ipv4.ip_forward = 1\nthis is not a setting\nnet.ipv4.tcp_syncookies = 1 # on\n"), 0o644)
	out, _, code := runTune(t, "lint", file)
	if code != exitProblems {
		t.Errorf("code %d", code)
	}
	for _, want := range []string{
		"2 findings: 2 error, 0 warning, 0 info",
		"ERROR   syntax       line 2:",
		"ERROR   syntax       line 3: net.ipv4.tcp_syncookies = 1 # on",
		"  safe: 1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestTuneUsage(t *testing.T) {
	for _, args := range [][]string{{"check", "extra"}, {"apply", "x"}, {"effective", "x"}, {"check", "--no-such-flag"}} {
		if _, _, code := runTune(t, args...); code != 1 {
			t.Errorf("%v: code %d, want 1", args, code)
		}
	}
	out, _, code := runTune(t, "--help")
	if code != 0 || !strings.Contains(out, "apply") || !strings.Contains(out, "effective") {
		t.Errorf("help: %d\n%s", code, out)
	}
}
