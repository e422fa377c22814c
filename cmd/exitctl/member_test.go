package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/control"
	"exitd/keys"
	"exitd/members"
)

// regBackend is the node's backend without a device: a real registry behind
// the real control server, so exitctl is tested against the real API.
type regBackend struct {
	reg  *members.Registry
	node members.Node

	mu      sync.Mutex
	batches int // AddMembers calls
}

func (b *regBackend) AddMembers(_ context.Context, req control.AddMembersRequest) ([]control.Member, error) {
	b.mu.Lock()
	b.batches++
	b.mu.Unlock()
	ars := make([]members.AddRequest, len(req.Members))
	for i, r := range req.Members {
		ar := members.AddRequest{Label: r.Label, Weight: r.Weight, Fallback: r.AddressFallback,
			EgressLimit: r.EgressLimit, IngressLimit: r.IngressLimit, Disabled: r.Disabled}
		if r.PublicKey != "" {
			k, err := keys.Parse(r.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", members.ErrInvalidKey, err)
			}
			ar.PublicKey = &k
		}
		ar.IPv4, _ = netip.ParseAddr(r.IPv4)
		ar.IPv6, _ = netip.ParseAddr(r.IPv6)
		ars[i] = ar
	}
	ms, err := b.reg.AddBatch(ars)
	if err != nil {
		return nil, err
	}
	out := make([]control.Member, len(ms))
	for i, m := range ms {
		out[i] = view(m)
		if req.Configs {
			out[i].Config = members.ClientConfig(m, b.node)
		}
	}
	return out, nil
}

func (b *regBackend) RemoveMembers(_ context.Context, refs []string) ([]control.Member, error) {
	ms, err := b.reg.RemoveBatch(refs)
	out := make([]control.Member, len(ms))
	for i, m := range ms {
		out[i] = view(m)
	}
	return out, err
}

func (b *regBackend) UpdateMember(_ context.Context, ref string, req control.UpdateMemberRequest) (control.Member, error) {
	_, m, err := b.reg.Update(ref, members.Change{Weight: req.Weight, EgressLimit: req.EgressLimit, IngressLimit: req.IngressLimit, MaxConns: req.MaxConns, Disabled: req.Disabled})
	return view(m), err
}

func (b *regBackend) Members(_ context.Context, q control.ListQuery) ([]control.Member, int, error) {
	var out []control.Member
	for _, m := range b.reg.List() {
		out = append(out, view(m))
	}
	page, total := q.Apply(out, time.Now())
	return page, total, nil
}

func (b *regBackend) Member(_ context.Context, ref string) (control.Member, error) {
	m, err := b.reg.Get(ref)
	if err != nil {
		return control.Member{}, err
	}
	cm := view(m)
	if m.PrivateKey != nil {
		cm.Config = members.ClientConfig(m, b.node)
	}
	return cm, nil
}

func (b *regBackend) Status(context.Context) (control.Status, error) {
	return control.Status{Version: "test", MembersTotal: b.reg.Len()}, nil
}

func view(m members.Member) control.Member {
	return control.Member{ID: m.ID, Label: m.Label, PublicKey: m.PublicKey.String(), IPv4: m.IPv4, IPv6: m.IPv6,
		Created: m.Created, Weight: m.Weight, Disabled: m.Disabled, EgressLimit: m.EgressLimit, IngressLimit: m.IngressLimit, MaxConns: m.MaxConns}
}

// testNode serves a registry on a control socket and runs exitctl against it.
type testNode struct {
	t      *testing.T
	b      *regBackend
	socket string
}

func newTestNode(t *testing.T, p4, p6 string) *testNode {
	t.Helper()
	dir, err := os.MkdirTemp("", "xctl") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	reg, err := members.Open(filepath.Join(dir, "m.db"), members.Options{
		Prefix4: netip.MustParsePrefix(p4), Prefix6: netip.MustParsePrefix(p6), Quarantine: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	nodeKey, _ := keys.Generate(nil)
	b := &regBackend{reg: reg, node: members.Node{PublicKey: nodeKey.Public(), Endpoint: "198.51.100.1:443", MTU: 1420}}
	sock := filepath.Join(dir, "c.sock")
	s, err := control.Listen(control.ServerOptions{Path: sock, Backend: b, Group: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return &testNode{t: t, b: b, socket: sock}
}

// run runs exitctl with args and returns stdout, stderr and the error.
func (n *testNode) run(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut, func(string) string { return "" })
	cmd.SetArgs(append([]string{"--socket", n.socket}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func (n *testNode) mustRun(args ...string) string {
	n.t.Helper()
	out, errOut, err := n.run(args...)
	if err != nil {
		n.t.Fatalf("exitctl %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func TestMemberAddPrintsUsableConfig(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	out := n.mustRun("member", "add", "--label", "alice")
	ps, err := members.ParseWGQuick(strings.NewReader(out))
	if err != nil || len(ps) != 1 || ps[0].PublicKey != n.b.node.PublicKey {
		t.Fatalf("config does not parse: %v\n%s", err, out)
	}
	var priv keys.Key
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "PrivateKey = "); ok {
			priv, err = keys.Parse(s)
		}
	}
	m, _ := n.b.reg.Get("alice")
	if err != nil || priv.IsZero() || priv.Public() != m.PublicKey {
		t.Fatalf("private key in config does not match the member's public key:\n%s", out)
	}
	if m.PrivateKey != nil {
		t.Fatal("the node got the private key exitctl generated")
	}
	if !strings.Contains(out, "Address = 10.99.0.2/32, fd00:99::2/128\n") {
		t.Fatalf("addresses:\n%s", out)
	}
}

func TestMemberAddOutQRAndKeepKey(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	file := filepath.Join(t.TempDir(), "bob.conf")
	os.WriteFile(file, []byte("old"), 0o644)
	out, errOut, err := n.run("member", "add", "--label", "bob", "--out", file)
	if err != nil || out != "" || !strings.Contains(errOut, "config written to "+file) {
		t.Fatalf("%q %q %v", out, errOut, err)
	}
	st, _ := os.Stat(file)
	data, _ := os.ReadFile(file)
	if st.Mode().Perm() != 0o600 || !strings.Contains(string(data), "\nPrivateKey = ") {
		t.Fatalf("mode %v:\n%s", st.Mode(), data)
	}

	qr := n.mustRun("member", "add", "--label", "carol", "--qr")
	lines := strings.Split(strings.TrimSuffix(qr, "\n"), "\n")
	if len(lines) < 20 || strings.Contains(qr, "PrivateKey") || !strings.ContainsRune(qr, '▀') {
		t.Fatalf("QR output (%d lines):\n%s", len(lines), qr)
	}
	for _, l := range lines {
		if len([]rune(l)) != len([]rune(lines[0])) || len([]rune(l)) > 120 {
			t.Fatalf("ragged or too wide QR line %q", l)
		}
	}

	n.mustRun("member", "add", "--label", "dave", "--keep-key")
	show := n.mustRun("member", "show", "dave")
	if !strings.Contains(show, "label             dave") || !strings.Contains(show, "\nPrivateKey = ") || !strings.Contains(show, "state             idle") {
		t.Fatalf("show with kept key:\n%s", show)
	}
	if out := n.mustRun("member", "show", "dave", "--qr"); !strings.ContainsRune(out, '█') {
		t.Fatalf("show --qr:\n%s", out)
	}
	if _, _, err := n.run("member", "show", "bob", "--qr"); err == nil || !strings.Contains(err.Error(), "does not hold its private key") {
		t.Fatalf("show --qr without a kept key: %v", err)
	}
	if show := n.mustRun("member", "show", "bob"); strings.Contains(show, "PrivateKey") {
		t.Fatalf("show printed a config the node cannot have:\n%s", show)
	}
}

func TestMemberAddErrors(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--label", "alice")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"member", "add"}, "--label is required"},
		{[]string{"member", "add", "--label", "alice"}, "(duplicate)"},
		{[]string{"member", "add", "--label", "x", "--public-key", "nope"}, "--public-key"},
		{[]string{"member", "add", "--label", "x", "--keep-key", "--public-key", "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="}, "exclude each other"},
		{[]string{"member", "add", "--label", "x", "--weight", "65"}, "weight must be 0-64"},
		{[]string{"member", "add", "--label", "x", "--rate", "fast"}, "--rate"},
		{[]string{"member", "add", "--count", "3"}, "--label-prefix"},
		{[]string{"member", "add", "--count", "3", "--label-prefix", "g"}, "--out-dir DIR"},
		{[]string{"member", "add", "--count", "3", "--label-prefix", "g", "--keep-key", "--qr"}, "add one member"},
		{[]string{"member", "add", "--label", "x", "--ipv4", "10.98.0.1"}, "prefix_exhausted"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[2:], " "), func(t *testing.T) {
			_, _, err := n.run(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if n.b.reg.Len() != 1 {
		t.Fatalf("failed adds left %d members", n.b.reg.Len())
	}
}

func TestMemberBulkAdd(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	dir := filepath.Join(t.TempDir(), "confs")
	out := n.mustRun("member", "add", "--count", "2500", "--label-prefix", "guest", "--out-dir", dir, "--weight", "2")
	if !strings.Contains(out, "added 2500 members (guest-00001 .. guest-02500)") {
		t.Fatalf("%s", out)
	}
	if n.b.batches != 3 {
		t.Fatalf("%d batch requests for 2,500 members, want 3", n.b.batches)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
	if len(files) != 2500 {
		t.Fatalf("%d config files", len(files))
	}
	for _, label := range []string{"guest-00001", "guest-02500"} {
		data, err := os.ReadFile(filepath.Join(dir, label+".conf"))
		st, _ := os.Stat(filepath.Join(dir, label+".conf"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", label, err, st.Mode())
		}
		m, _ := n.b.reg.Get(label)
		var priv keys.Key
		for _, l := range strings.Split(string(data), "\n") {
			if s, ok := strings.CutPrefix(l, "PrivateKey = "); ok {
				priv, _ = keys.Parse(s)
			}
		}
		if priv.Public() != m.PublicKey || m.Weight != 2 || m.PrivateKey != nil {
			t.Fatalf("%s: config key does not match the member (%+v)", label, m)
		}
	}
	// A failing batch reports how far it got; batches before it stay.
	_, _, err := n.run("member", "add", "--count", "3", "--label-prefix", "guest", "--keep-key")
	if err == nil || !strings.Contains(err.Error(), "0 of 3 members added") || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate bulk: %v", err)
	}
	out = n.mustRun("--json", "member", "add", "--count", "2", "--label-prefix", "kept", "--keep-key")
	var ms []control.Member
	if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms) != 2 || ms[1].Label != "kept-00002" {
		t.Fatalf("%v %s", err, out)
	}
	if show := n.mustRun("member", "show", "kept-00002"); !strings.Contains(show, "\nPrivateKey = ") {
		t.Fatalf("kept key not shown:\n%s", show)
	}
}

func TestMemberListSortFilterPage(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	for _, l := range []string{"delta", "alpha", "charlie", "bravo", "echo"} {
		n.mustRun("member", "add", "--label", l)
	}
	n.mustRun("member", "disable", "charlie")
	out, errOut, err := n.run("member", "list", "--sort", "label", "--limit", "2", "--page", "2")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "LABEL") || !strings.HasPrefix(lines[1], "charlie") ||
		!strings.Contains(lines[1], "disabled") || !strings.HasPrefix(lines[2], "delta") {
		t.Fatalf("page 2:\n%s", out)
	}
	if strings.TrimSpace(errOut) != "members 3-4 of 5" {
		t.Fatalf("footer %q", errOut)
	}
	out = n.mustRun("--json", "member", "list", "--state", "enabled", "--sort", "-label", "--match", "10.99.0.")
	var ms []control.Member
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, m := range ms {
		labels = append(labels, m.Label)
	}
	if strings.Join(labels, ",") != "echo,delta,bravo,alpha" {
		t.Fatalf("filtered: %v", labels)
	}
	if wide := n.mustRun("member", "list", "-w", "--no-stats"); !strings.Contains(wide, "fd00:99::2") || !strings.Contains(wide, "PUBLIC KEY") {
		t.Fatalf("wide:\n%s", wide)
	}
	if _, _, err := n.run("member", "list", "--page", "2"); err == nil {
		t.Fatal("--page without --limit accepted")
	}
	if _, _, err := n.run("member", "list", "--sort", "size"); err == nil || !strings.Contains(err.Error(), "invalid_request") {
		t.Fatalf("bad sort: %v", err)
	}
}

func TestMemberSetDisableEnableRemove(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--label", "alice")
	n.mustRun("member", "add", "--label", "bob")
	ka, _ := n.b.reg.Get("alice")
	kb, _ := n.b.reg.Get("bob")
	out, errOut, err := n.run("member", "set", "alice", "bob", "--weight", "3", "--rate", "20mbit/5mbit")
	if err != nil || !strings.Contains(out, "updated alice: enabled, weight 3, rate cap down 20.0 Mbit/s up 5.0 Mbit/s") ||
		!strings.Contains(errOut, "not enforce") {
		t.Fatalf("%q %q %v", out, errOut, err)
	}
	m, _ := n.b.reg.Get("bob")
	if m.Weight != 3 || m.EgressLimit != 20e6 || m.IngressLimit != 5e6 {
		t.Fatalf("%+v", m)
	}
	n.mustRun("member", "set", "bob", "--rate", "0")
	if m, _ := n.b.reg.Get("bob"); m.EgressLimit != 0 || m.IngressLimit != 0 || m.Weight != 3 {
		t.Fatalf("rate 0 did not clear the cap, or touched the weight: %+v", m)
	}
	if _, _, err := n.run("member", "set", "alice"); err == nil || !strings.Contains(err.Error(), "nothing to change") {
		t.Fatalf("empty set: %v", err)
	}
	n.mustRun("member", "disable", "alice")
	if m, _ := n.b.reg.Get("alice"); !m.Disabled {
		t.Fatal("not disabled")
	}
	if out := n.mustRun("member", "set", "alice", "--max-conns", "5000"); !strings.Contains(out, "connection quota 5000") {
		t.Fatalf("set --max-conns: %s", out)
	}
	if m, _ := n.b.reg.Get("alice"); m.MaxConns != 5000 || m.Weight != 3 {
		t.Fatalf("--max-conns 5000: %+v", m)
	}
	if _, _, err := n.run("member", "set", "alice", "--max-conns", "10"); err == nil || !strings.Contains(err.Error(), "connection quota must be 64-1000000") {
		t.Fatalf("--max-conns 10: %v", err)
	}
	show := n.mustRun("member", "show", "alice")
	if !strings.Contains(show, "state             disabled") || !strings.Contains(show, "down 20.0 Mbit/s, up 5.0 Mbit/s (stored;") ||
		!strings.Contains(show, "connection quota  5000") {
		t.Fatalf("show:\n%s", show)
	}
	n.mustRun("member", "enable", "alice")
	if m, _ := n.b.reg.Get("alice"); m.Disabled {
		t.Fatal("not enabled")
	}
	if _, _, err := n.run("member", "disable", "nobody"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("unknown: %v", err)
	}
	out = n.mustRun("member", "remove", "alice", "bob")
	if out != fmt.Sprintf("removed alice (%s)\nremoved bob (%s)\n", ka.PublicKey, kb.PublicKey) || n.b.reg.Len() != 0 {
		t.Fatalf("remove: %q (%d left)", out, n.b.reg.Len())
	}
}

const importKeyA = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
const importKeyB = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
const importKeyC = "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA="
const importKeyD = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="

func TestMemberImport(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--label", "alice", "--ipv4", "10.99.0.9") // takes bob's address
	conf := `[Interface]
Address = 10.99.0.1/16
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=

# alice
[Peer]
PublicKey = ` + importKeyA + `
AllowedIPs = 10.99.0.7/32, fd00:99::7/128

[Peer]
# Name = bob
PublicKey = ` + importKeyB + `
PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=
AllowedIPs = 10.99.0.9/32

[Peer]
PublicKey = ` + importKeyC + `
AllowedIPs = 192.168.5.2/32, 192.168.50.0/24

[Peer]
PublicKey = ` + importKeyD + `
AllowedIPs = fd00:99::20/128
`
	file := filepath.Join(t.TempDir(), "wg0.conf")
	os.WriteFile(file, []byte(conf), 0o600)

	dry := n.mustRun("member", "import", file, "--dry-run")
	if n.b.reg.Len() != 1 || !strings.Contains(dry, "dry run: 4 peers would be imported, 0 skipped") {
		t.Fatalf("dry run changed something or said:\n%s", dry)
	}
	out := n.mustRun("member", "import", file)
	want := map[string]struct{ key, v4, v6 string }{
		"alice-2":  {importKeyA, "10.99.0.7", "fd00:99::7"}, // label taken: alice-2; address kept
		"bob":      {importKeyB, "10.99.0.2", "fd00:99::2"}, // address taken: new one
		"import-1": {importKeyC, "10.99.0.3", "fd00:99::3"}, // outside the prefix: new one
		"import-2": {importKeyD, "10.99.0.32", "fd00:99::20"},
	}
	for label, w := range want {
		m, err := n.b.reg.Get(label)
		if err != nil || m.PublicKey.String() != w.key || m.IPv4.String() != w.v4 || m.IPv6.String() != w.v6 {
			t.Errorf("%s: %+v %v, want %+v", label, m, err, w)
		}
	}
	for _, s := range []string{"imported 4 peers, skipped 0; 2 got a new address", "PresharedKey not used by exitd",
		"routed prefixes dropped: 192.168.50.0/24", "alice-2", "imported, address changed"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
	// Again: everything is there already.
	out = n.mustRun("member", "import", file)
	if !strings.Contains(out, "imported 0 peers, skipped 4") || n.b.reg.Len() != 5 {
		t.Fatalf("repeat import:\n%s", out)
	}
	// Strict addresses: a peer that cannot keep its address fails the batch.
	n2 := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	if _, _, err := n2.run("member", "import", file, "--strict-addresses"); err == nil || !strings.Contains(err.Error(), "0 of 4 peers imported") {
		t.Fatalf("strict: %v", err)
	}
	for _, bad := range []string{"[Peer]\nPublicKey = x\n", "[Interface]\n", ""} {
		os.WriteFile(file, []byte(bad), 0o600)
		if _, _, err := n2.run("member", "import", file); err == nil {
			t.Errorf("import of %q succeeded", bad)
		}
	}
}

func TestMemberExportRoundTrip(t *testing.T) {
	n := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n.mustRun("member", "add", "--count", "30", "--label-prefix", "m", "--keep-key")
	n.mustRun("member", "disable", "m-00003")
	wg := n.mustRun("member", "export")
	if strings.Contains(wg, "PrivateKey") || strings.Count("\n"+wg, "\n[Peer]\n") != 29 {
		t.Fatalf("export:\n%s", wg)
	}
	file := filepath.Join(t.TempDir(), "peers.conf")
	os.WriteFile(file, []byte(wg), 0o600)
	n2 := newTestNode(t, "10.99.0.0/16", "fd00:99::/64")
	n2.mustRun("member", "import", file)
	a, b := n.b.reg.List(), n2.b.reg.List()
	if len(b) != 29 {
		t.Fatalf("%d imported", len(b))
	}
	a = slices.DeleteFunc(a, func(m members.Member) bool { return m.Disabled })
	for i := range b {
		if a[i].Label != b[i].Label || a[i].PublicKey != b[i].PublicKey || a[i].IPv4 != b[i].IPv4 || a[i].IPv6 != b[i].IPv6 {
			t.Fatalf("member %d: %+v != %+v", i, a[i], b[i])
		}
	}
	csv := n.mustRun("member", "export", "--format", "csv")
	if !strings.HasPrefix(csv, "label,public_key,ipv4,ipv6,created,weight,egress_limit,ingress_limit,disabled\nm-00001,") ||
		!strings.Contains(csv, ",true\n") {
		t.Fatalf("csv:\n%s", csv)
	}
	js := n.mustRun("member", "export", "--format", "json")
	var ms []control.Member
	if err := json.Unmarshal([]byte(js), &ms); err != nil || len(ms) != 30 || strings.Contains(js, "PrivateKey") || strings.Contains(js, "private") {
		t.Fatalf("json: %v", err)
	}
	if _, _, err := n.run("member", "export", "--format", "xml"); err == nil {
		t.Fatal("xml accepted")
	}
}

func TestParseRatePair(t *testing.T) {
	tests := []struct {
		in       string
		down, up uint64
		ok       bool
	}{
		{"50mbit/10mbit", 50e6, 10e6, true},
		{"20mbit", 20e6, 20e6, true},
		{"0", 0, 0, true},
		{"none", 0, 0, true},
		{"10mbit/0", 10e6, 0, true},
		{"/5mbit", 0, 5e6, true},
		{"fast", 0, 0, false},
		{"10mbit/slow", 0, 0, false},
		{"1bit", 0, 0, false},
	}
	for _, tc := range tests {
		d, u, err := parseRatePair(tc.in)
		if (err == nil) != tc.ok || d != tc.down || u != tc.up {
			t.Errorf("%q: %d %d %v", tc.in, d, u, err)
		}
	}
}

func TestRenderQR(t *testing.T) {
	// A 3×3 grid: the diagonal dark.
	got := renderQR(3, func(x, y int) bool { return x == y })
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 6 || len([]rune(lines[0])) != 11 {
		t.Fatalf("%d lines of %d:\n%s", len(lines), len([]rune(lines[0])), got)
	}
	// Rows -4/-3, -2/-1 quiet; rows 0/1: (0,0) dark top, (1,1) dark bottom.
	if lines[0] != strings.Repeat("█", 11) || []rune(lines[2])[4] != '▄' || []rune(lines[2])[5] != '▀' || []rune(lines[2])[6] != '█' {
		t.Fatalf("\n%s", got)
	}
	var b bytes.Buffer
	if err := writeQR(&b, strings.Repeat("x", 5000)); err == nil {
		t.Fatal("5,000 bytes fit a QR code?")
	}
}

func TestProgressLine(t *testing.T) {
	at := time.Unix(100, 0)
	var b bytes.Buffer
	p := newProgressTo(&b, "members added", 200, func() time.Time { return at })
	if got := p.line(100, at.Add(1500*time.Millisecond)); got != "[===============>              ] 100/200 members added  1.5s" {
		t.Fatalf("%q", got)
	}
	if got := p.line(200, at); got != "[==============================] 200/200 members added  0.0s" {
		t.Fatalf("%q", got)
	}
	p.set(200)
	p.done()
	p.done()
	if b.String() != "\r[==============================] 200/200 members added  0.0s\n" {
		t.Fatalf("%q", b.String())
	}
	var nilBar *progress
	nilBar.set(3)
	nilBar.done()
	if newProgress(&b, "x", 10) != nil {
		t.Fatal("bar on a non-terminal")
	}
}

// BenchmarkMemberTable20k: the table of `member list` for 20,000 members.
func BenchmarkMemberTable20k(b *testing.B) {
	ms := make([]control.Member, 20000)
	now := time.Now()
	for i := range ms {
		ms[i] = control.Member{ID: uint32(i + 2), Label: fmt.Sprintf("sim-%05d", i), PublicKey: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
			IPv4: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), LastHandshake: now.Add(-time.Minute), RxBytes: uint64(i) * 1000, TxBytes: uint64(i) * 5000}
	}
	b.ReportAllocs()
	for range b.N {
		writeMemberTable(io.Discard, ms, now, false)
	}
}
