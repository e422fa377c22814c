package harness

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

func TestDanteConfigString(t *testing.T) {
	clients := netip.MustParsePrefix("198.18.0.0/16")
	c := DanteConfig{
		Comment:  "test",
		Listen:   []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:1081"), netip.MustParseAddrPort("[2001:db8::1]:1081")},
		External: "wan0",
		Method:   "username",
		Clients:  []netip.Prefix{clients, netip.MustParsePrefix("2001:db8:1::/48")},
		Rules: []DanteRule{
			{Block: true, To: netip.MustParsePrefix("10.1.2.3/8")},
			{From: clients},
			{To: clients, Commands: []string{"bindreply", "udpreply"}},
		},
	}
	s := c.String()
	for _, want := range []string{
		"# test\n",
		"errorlog: stderr\n",
		"internal: 198.18.0.1 port = 1081\n",
		"internal: 2001:db8::1 port = 1081\n",
		"external: wan0\n",
		"socksmethod: username\n",
		"clientmethod: none\n",
		"user.privileged: root\nuser.unprivileged: root\n",
		"client pass {\n\tfrom: 198.18.0.0/16 to: 0.0.0.0/0\n\tlog: error\n}\n",
		"client pass {\n\tfrom: 2001:db8:1::/48 to: ::/0\n\tlog: error\n}\n",
		"socks block {\n\tfrom: 0/0 to: 10.0.0.0/8\n\tlog: error\n}\n", // masked; zero prefix is 0/0
		"socks pass {\n\tfrom: 198.18.0.0/16 to: 0/0\n\tlog: error\n}\n",
		"socks pass {\n\tfrom: 0/0 to: 198.18.0.0/16\n\tcommand: bindreply udpreply\n\tlog: error\n}\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "logoutput") {
		t.Error("quiet config has logoutput")
	}
	if strings.Count(s, "{") != strings.Count(s, "}") {
		t.Errorf("unbalanced braces:\n%s", s)
	}
	// Rules keep their order: sockd.conf is first match.
	if strings.Index(s, "socks block") > strings.Index(s, "socks pass") {
		t.Errorf("rules reordered:\n%s", s)
	}

	c.Verbose, c.Method, c.Comment = true, "", ""
	v := c.String()
	for _, want := range []string{"logoutput: stderr\n", "socksmethod: none\n", "\tlog: error connect disconnect\n"} {
		if !strings.Contains(v, want) {
			t.Errorf("verbose config lacks %q:\n%s", want, v)
		}
	}
	if strings.HasPrefix(v, "#") {
		t.Errorf("empty comment rendered:\n%s", v)
	}
}

func TestStartDanteRejects(t *testing.T) {
	if _, err := StartDante(context.Background(), nil, "", t.TempDir(), "d", DanteConfig{}); err == nil {
		t.Fatal("no listen address accepted")
	}
}

// TestStartDante runs danted in a lab namespace, speaks SOCKS5 to it and
// checks that Stop leaves none of its processes behind.
func TestStartDante(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "danted")
	lab := netlab.NewT(t, netlab.Options{})
	ns := lab.Internet
	ctx := context.Background()
	lo := netip.MustParsePrefix("127.0.0.0/8")
	addr := netip.MustParseAddrPort("127.0.0.1:1081")
	cfg := DanteConfig{Listen: []netip.AddrPort{addr}, External: "lo", Clients: []netip.Prefix{lo},
		Rules: []DanteRule{{From: lo, To: lo, Commands: []string{"connect"}}}}
	d, err := StartDante(ctx, ns, "", t.TempDir(), "danted", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })

	c, err := ns.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		t.Fatalf("method reply %v %v, want [5 0]", m, err)
	}
	c.Close()

	tree := DanteTree(d.Proc.Pid())
	if len(tree) < 2 {
		t.Errorf("danted tree %v: want the mother and its children", tree)
	}
	starts := map[int]uint64{}
	for _, pid := range tree {
		if st, ok := readStat(pid); ok {
			starts[pid] = st.start
		}
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	err = netlab.WaitFor(ctx, 10*time.Second, func() bool {
		for pid, start := range starts {
			if st, ok := readStat(pid); ok && st.start == start && isDanted(pid) {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("danted processes left after Stop: %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartDanteBadConfig(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "danted")
	lab := netlab.NewT(t, netlab.Options{})
	cfg := DanteConfig{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1081")}, External: "no-such-if0",
		Method: "no-such-method"}
	if _, err := StartDante(context.Background(), lab.Internet, "", t.TempDir(), "danted", cfg); err == nil ||
		!strings.Contains(err.Error(), "exited at start") {
		t.Fatalf("bad config: %v, want an exit at start", err)
	}
}
