package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/control"
	"exitd/keys"
	"exitd/members"
)

func TestWriteMemberDetails(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	m := control.Member{Label: "alice", PublicKey: "PUB", IPv4: netip.MustParseAddr("10.99.0.2"),
		Created: now.Add(-time.Hour), Weight: 1}
	var b bytes.Buffer
	writeMemberDetails(&b, m, now)
	for _, want := range []string{
		"label             alice", "ipv6              -", "state             idle", "connection quota  node default",
		"rate cap          none", "last handshake    never", "endpoint          -", "rx / tx           0 B / 0 B",
		"rate now          down 0 bit/s, up 0 bit/s", "private key       held by the member only",
		"created           2026-12-03T11:00:00Z",
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	m.MaxConns, m.EgressLimit, m.LimitsEnforced, m.KeyKept = 5000, 5e6, true, true
	m.LastHandshake, m.Endpoint, m.TxRate, m.RxRate = now.Add(-30*time.Second), "203.0.113.9:51820", 2e6, 1e5
	m.RxBytes, m.TxBytes = 1536, 3<<20
	b.Reset()
	writeMemberDetails(&b, m, now)
	for _, want := range []string{
		"state             connected", "connection quota  5000", "rate cap          down 5.0 Mbit/s, up unlimited",
		"last handshake    30s ago", "endpoint          203.0.113.9:51820", "rx / tx           1.5 KiB / 3.0 MiB",
		"rate now          down 2.0 Mbit/s, up 100.0 kbit/s", "private key       KEPT on this node",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "(stored;") {
		t.Errorf("an enforced cap is marked stored-only:\n%s", b.String())
	}
	m.Disabled = true
	if state(m, now) != "disabled" {
		t.Error("a disabled member with a recent handshake is not disabled")
	}
}

// TestMemberMaxConnsShowAndJSON: the quota set with --max-conns is in
// member show and its JSON, and 0 returns to the node's quota; the bounds
// are inclusive and the error names them.
func TestMemberMaxConnsShowAndJSON(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--label", "alice")
	for _, ok := range []string{"64", "1000000"} {
		if out := n.mustRun("member", "set", "alice", "--max-conns", ok); !strings.Contains(out, "connection quota "+ok+"\n") {
			t.Fatalf("--max-conns %s: %q", ok, out)
		}
	}
	for _, bad := range []string{"63", "1000001", "-1"} {
		_, _, err := n.run("member", "set", "alice", "--max-conns", bad)
		if err == nil || !strings.Contains(err.Error(), "connection quota must be 64-1000000 (0 = the node's default), got "+bad) ||
			!strings.Contains(err.Error(), "(invalid_request)") {
			t.Errorf("--max-conns %s: %v", bad, err)
		}
	}
	if _, _, err := n.run("member", "set", "alice", "--max-conns", "many"); err == nil || !strings.Contains(err.Error(), "max-conns") {
		t.Errorf("--max-conns many: %v", err)
	}
	if m, _ := n.b.reg.Get("alice"); m.MaxConns != 1_000_000 {
		t.Fatalf("refused values changed the quota: %d", m.MaxConns)
	}
	if show := n.mustRun("member", "show", "alice"); !strings.Contains(show, "connection quota  1000000\n") {
		t.Fatalf("show:\n%s", show)
	}
	var m control.Member
	if err := json.Unmarshal([]byte(n.mustRun("--json", "member", "show", "alice")), &m); err != nil || m.MaxConns != 1_000_000 {
		t.Fatalf("%+v %v", m, err)
	}
	out := n.mustRun("--json", "member", "set", "alice", "--max-conns", "0")
	var back control.Member
	if err := json.Unmarshal([]byte(out), &back); err != nil || back.Label != "alice" || back.MaxConns != 0 || strings.Contains(out, "max_conns") {
		t.Fatalf("back to the node's quota:\n%s", out)
	}
	if show := n.mustRun("member", "show", "alice"); !strings.Contains(show, "connection quota  node default\n") {
		t.Fatalf("show:\n%s", show)
	}
}

// TestMemberUpdateJSONAndPartialFailure: one member answers an object,
// several an array; the first failure stops the run and says how many
// were changed before.
func TestMemberUpdateJSONAndPartialFailure(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--label", "alice")
	n.mustRun("member", "add", "--label", "bob")
	var one control.Member
	if err := json.Unmarshal([]byte(n.mustRun("--json", "member", "disable", "alice")), &one); err != nil || !one.Disabled || one.Label != "alice" {
		t.Fatalf("%+v %v", one, err)
	}
	var many []control.Member
	if err := json.Unmarshal([]byte(n.mustRun("--json", "member", "enable", "alice", "bob")), &many); err != nil || len(many) != 2 || many[0].Disabled {
		t.Fatalf("%+v %v", many, err)
	}
	_, _, err := n.run("member", "set", "alice", "nobody", "bob", "--weight", "5")
	if err == nil || !strings.Contains(err.Error(), "not_found") || !strings.Contains(err.Error(), "(1 members updated before)") {
		t.Fatalf("partial: %v", err)
	}
	a, _ := n.b.reg.Get("alice")
	b, _ := n.b.reg.Get("bob")
	if a.Weight != 5 || b.Weight != 1 {
		t.Fatalf("alice %d bob %d: the run must stop at the first failure", a.Weight, b.Weight)
	}
	if _, _, err := n.run("member", "disable", "nobody", "alice"); err == nil || strings.Contains(err.Error(), "before") {
		t.Fatalf("first fails: %v", err)
	}
	if m, _ := n.b.reg.Get("alice"); m.Disabled {
		t.Fatal("a member after the failure was changed")
	}
	if out := n.mustRun("member", "set", "bob", "--rate", "none"); !strings.Contains(out, "rate cap down unlimited up unlimited") {
		t.Fatalf("%q", out)
	}
}

func TestMemberRemoveJSONAndAlias(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	for _, l := range []string{"a", "b", "c"} {
		n.mustRun("member", "add", "--label", l)
	}
	var one control.Member
	if err := json.Unmarshal([]byte(n.mustRun("--json", "member", "rm", "a")), &one); err != nil || one.Label != "a" {
		t.Fatalf("%+v %v", one, err)
	}
	if _, _, err := n.run("member", "remove", "b", "nobody"); err == nil || !strings.Contains(err.Error(), "removing b .. nobody") {
		t.Fatalf("batch with an unknown member: %v", err)
	}
	if n.b.reg.Len() != 2 {
		t.Fatal("a failed batch removed members")
	}
	var many []control.Member
	if err := json.Unmarshal([]byte(n.mustRun("--json", "member", "remove", "b", "c")), &many); err != nil || len(many) != 2 || n.b.reg.Len() != 0 {
		t.Fatalf("%+v %v", many, err)
	}
	if _, _, err := n.run("member", "remove"); err == nil {
		t.Fatal("remove without a member accepted")
	}
}

// TestBulkAddReportsFailedBatch: a batch refused after others were added
// names its range and how far the run got; the batches before stay.
func TestBulkAddReportsFailedBatch(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--label", "g-01200")
	dir := t.TempDir()
	_, _, err := n.run("member", "add", "--count", "1500", "--label-prefix", "g", "--out-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "1000 of 1500 members added before") ||
		!strings.Contains(err.Error(), "members 1001-1500 (g-01001 .. g-01500)") || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("err = %v", err)
	}
	if n.b.reg.Len() != 1001 {
		t.Fatalf("%d members, want the first batch and g-01200", n.b.reg.Len())
	}
	// The configs of the batch that went in are written, the others not.
	if files, _ := filepath.Glob(filepath.Join(dir, "*.conf")); len(files) != 1000 {
		t.Fatalf("%d configs written, want the first batch's 1000", len(files))
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"member", "add", "--count", "2", "--label-prefix", "h", "--out-dir", t.TempDir(), "--keep-key"}, "exclude each other"},
		{[]string{"member", "add", "--count", "0", "--label-prefix", "h", "--keep-key"}, "--count N"},
		{[]string{"member", "add", "--count", "2", "--label-prefix", "h", "--keep-key", "--rate", "fast"}, "--rate"},
	} {
		if _, _, err := n.run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	out := n.mustRun("member", "add", "--count", "3", "--label-prefix", "wide", "--keep-key", "--disabled", "--rate", "10mbit/1mbit")
	if !strings.Contains(out, "added 3 members (wide-00001 .. wide-00003)") || strings.Contains(out, "client configs in") {
		t.Fatalf("%s", out)
	}
	if m, _ := n.b.reg.Get("wide-00002"); !m.Disabled || m.EgressLimit != 10e6 || m.IngressLimit != 1e6 || m.PrivateKey == nil {
		t.Fatalf("policy not applied to the bulk: %+v", m)
	}
}

func TestExportMembers(t *testing.T) {
	k, _ := keys.Generate(nil)
	ms := []control.Member{
		{Label: "a", PublicKey: k.Public().String(), IPv4: netip.MustParseAddr("10.99.0.2"), Weight: 2, Created: time.Unix(0, 0).UTC(), Config: "secret"},
		{Label: "v6only", PublicKey: k.Public().String(), IPv6: netip.MustParseAddr("fd00:99::9"), Disabled: true, EgressLimit: 5},
	}
	var b bytes.Buffer
	if err := exportMembers(&b, ms, "csv"); err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(rows) != 3 || rows[1] != "a,"+ms[0].PublicKey+",10.99.0.2,,1970-01-01T00:00:00Z,2,0,0,false" ||
		!strings.HasPrefix(rows[2], "v6only,"+ms[0].PublicKey+",,fd00:99::9,") || !strings.HasSuffix(rows[2], ",0,5,0,true") {
		t.Fatalf("csv:\n%s", b.String())
	}
	b.Reset()
	if err := exportMembers(&b, ms, "json"); err != nil || strings.Contains(b.String(), "secret") {
		t.Fatalf("json kept a config: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := exportMembers(&b, ms, "wg"); err != nil || strings.Count(b.String(), "[Peer]") != 2 || !strings.Contains(b.String(), "# Name = v6only") {
		t.Fatalf("wg: %v\n%s", err, b.String())
	}
	bad := []control.Member{{Label: "broken", PublicKey: "nope"}}
	if err := exportMembers(&b, bad, "wg"); err == nil || !strings.Contains(err.Error(), "member broken") {
		t.Fatalf("bad key: %v", err)
	}
	if err := exportMembers(&b, ms, "yaml"); err == nil || !strings.Contains(err.Error(), `--format "yaml"`) {
		t.Fatalf("yaml: %v", err)
	}
}

func TestUniqueLabel(t *testing.T) {
	taken := map[string]bool{"alice": true, "alice-2": true}
	if got := uniqueLabel("bob", taken); got != "bob" {
		t.Errorf("free label changed to %q", got)
	}
	if got := uniqueLabel("alice", taken); got != "alice-3" {
		t.Errorf("got %q, want alice-3", got)
	}
	long := strings.Repeat("x", 64)
	taken[long] = true
	got := uniqueLabel(long, taken)
	if len(got) != 64 || !strings.HasSuffix(got, "-2") || members.CheckLabel(got) != nil {
		t.Errorf("long label %q (%d)", got, len(got))
	}
}

func TestPlanImport(t *testing.T) {
	ka, _ := keys.Generate(nil)
	kb, _ := keys.Generate(nil)
	kc, _ := keys.Generate(nil)
	peers := []members.ImportPeer{
		{PublicKey: ka.Public(), Label: "old", Addrs: []netip.Prefix{netip.MustParsePrefix("10.99.0.7/32")}},
		{PublicKey: kb.Public(), Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:99::8/128"), netip.MustParsePrefix("192.168.0.0/24")}},
		{PublicKey: kc.Public(), Label: "taken"},
	}
	existing := []control.Member{{Label: "old", PublicKey: ka.Public().String()}, {Label: "taken", PublicKey: "other"}}
	plans := planImport(peers, existing, &importFlags{prefix: "imp", strictAddrs: true})
	if plans[0].skip != "already a member as old" {
		t.Errorf("existing key: %+v", plans[0])
	}
	p := plans[1]
	if p.req.Label != "imp-1" || p.req.IPv4 != "" || p.req.IPv6 != "fd00:99::8" || p.req.AddressFallback ||
		len(p.notes) != 1 || p.notes[0] != "routed prefixes dropped: 192.168.0.0/24" {
		t.Errorf("v6 peer: %+v", p)
	}
	if plans[2].req.Label != "taken-2" || plans[2].req.IPv4 != "" {
		t.Errorf("taken label: %+v", plans[2])
	}
	var b bytes.Buffer
	writeImportReport(&b, plans, nil, true)
	if !strings.Contains(b.String(), "dry run: 2 peers would be imported, 1 skipped") || !strings.Contains(b.String(), "would be imported; routed prefixes dropped") {
		t.Fatalf("dry run report:\n%s", b.String())
	}
	b.Reset()
	writeImportReport(&b, plans, nil, false)
	if !strings.Contains(b.String(), "not imported") || !strings.Contains(b.String(), "imported 0 peers, skipped 1\n") {
		t.Fatalf("failed import report:\n%s", b.String())
	}
}

func TestFillPrivateKeyAndWriteFile(t *testing.T) {
	k, _ := keys.Generate(nil)
	conf := "[Interface]\n# PrivateKey = <the member's private key>\nAddress = 10.99.0.2/32\n# PrivateKey in a comment elsewhere\n"
	got := fillPrivateKey(conf, k)
	if !strings.Contains(got, "\nPrivateKey = "+k.String()+"\n") || !strings.Contains(got, "# PrivateKey in a comment elsewhere") || strings.Count(got, "\n") != 4 {
		t.Fatalf("%q", got)
	}
	if fillPrivateKey("no placeholder\n", k) != "no placeholder\n" {
		t.Fatal("config without a placeholder changed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "c.conf")
	os.WriteFile(path, []byte("an older, longer secret that must go"), 0o644)
	if err := writeFile0600(path, "new"); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	data, _ := os.ReadFile(path)
	if st.Mode().Perm() != 0o600 || string(data) != "new" {
		t.Fatalf("mode %v content %q", st.Mode().Perm(), data)
	}
	if err := writeFile0600(filepath.Join(dir, "no", "such", "dir"), "x"); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestSmallFormatters(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct{ got, want string }{
		{agoAt(time.Time{}, now), "never"},
		{agoAt(now.Add(-1500*time.Millisecond), now), "1s ago"},
		{dash(""), "-"}, {dash("x"), "x"},
		{addrStr(netip.Addr{}), "-"}, {addrStr(netip.MustParseAddr("fd00::1")), "fd00::1"},
		{limitHuman(0), "unlimited"}, {limitHuman(64_000), "64.0 kbit/s"},
		{quotaHuman(0), "node default"}, {quotaHuman(70000), "70000"},
		{bitsHuman(999), "999 bit/s"}, {bytesHuman(1023), "1023 B"},
		{addrCSV("invalid IP"), ""}, {addrOr("10.0.0.1"), "10.0.0.1"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, s := range []string{"0", "none", " OFF ", ""} {
		if v, err := parseLimit(s); v != 0 || err != nil {
			t.Errorf("parseLimit(%q) = %d, %v", s, v, err)
		}
	}
}

func TestGenerateKeysDistinct(t *testing.T) {
	ks, err := generateKeys(50)
	if err != nil || len(ks) != 50 {
		t.Fatal(len(ks), err)
	}
	seen := map[string]bool{}
	for i, k := range ks {
		if k.priv.IsZero() || k.priv.Public().String() != k.pub || seen[k.pub] {
			t.Fatalf("key %d: zero, mismatched or repeated", i)
		}
		seen[k.pub] = true
	}
	if ks, err := generateKeys(0); err != nil || len(ks) != 0 {
		t.Fatal(ks, err)
	}
}

// TestProgressThrottle: the bar redraws at most every 100 ms, but always
// at the end; it stays silent on pipes and files.
func TestProgressThrottle(t *testing.T) {
	at := time.Unix(100, 0)
	var b bytes.Buffer
	p := newProgressTo(&b, "x", 10, func() time.Time { return at })
	p.set(1) // at start: drawn (last is zero)
	p.set(2) // same instant: skipped
	at = at.Add(50 * time.Millisecond)
	p.set(3) // 50 ms: skipped
	at = at.Add(60 * time.Millisecond)
	p.set(4)  // 110 ms: drawn
	p.set(10) // done: always drawn
	p.done()
	p.set(10) // after done: nothing
	if got := strings.Count(b.String(), "\r"); got != 3 || !strings.HasSuffix(b.String(), "10/10 x  0.1s\n") {
		t.Fatalf("%d draws: %q", got, b.String())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, out := range map[string]*os.File{"pipe": w, "file": f} {
		if newProgress(out, "x", 100) != nil {
			t.Errorf("a bar on a %s", name)
		}
	}
	if isTerminal(w) {
		t.Error("a pipe is a terminal")
	}
}

// TestReportWithoutSamples: a node without samples yet still gets a
// report, with a note on stderr.
func TestReportWithoutSamples(t *testing.T) {
	n, fb := newFullNode(t)
	fb.set(func(b *fullBackend) { b.status = baseStatus() })
	out, errOut, err := n.run("report", "--out", filepath.Join(t.TempDir(), "r"), "--since", "1h")
	if err != nil || !strings.Contains(out, "0 samples") || !strings.Contains(errOut, "no samples in this period") {
		t.Fatalf("%v\n%s\n%s", err, out, errOut)
	}
}

// TestMemberListJSONHasQuota: the table stays narrow; scripts
// read max_conns from --json.
func TestMemberListJSONHasQuota(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--label", "alice")
	n.mustRun("member", "set", "alice", "--max-conns", "777")
	var ms []control.Member
	if err := json.Unmarshal([]byte(n.mustRun("--json", "member", "list")), &ms); err != nil || len(ms) != 1 || ms[0].MaxConns != 777 {
		t.Fatalf("%+v %v", ms, err)
	}
	exp := n.mustRun("member", "export", "--format", "json")
	if !strings.Contains(exp, `"max_conns": 777`) {
		t.Fatalf("export json lacks the quota:\n%s", exp)
	}
	if out := n.mustRun("member", "list"); !strings.HasPrefix(out, "LABEL") || strings.Contains(out, "777") {
		t.Fatalf("table:\n%s", out)
	}
}
