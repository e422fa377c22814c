package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// runExitd runs `exitd run` once in the exit namespace (optionally wrapped
// by a command such as setpriv) and returns its exit code and stderr.
func runExitd(t *testing.T, l *netlab.Lab, wrap []string, cfgPath string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append(append([]string{}, wrap...), bins.Exitd, "run", "--config", cfgPath)
	cmd := l.Exit.Command(ctx, args[0], args[1:]...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run exitd: %v", err)
	}
	return 0, string(out)
}

// assertNothingLeft checks the exit namespace has no exitd table and no TUN.
func assertNothingLeft(t *testing.T, l *netlab.Lab, tun string) {
	t.Helper()
	ctx := context.Background()
	out, err := l.Exit.Exec(ctx, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "exitd") {
		t.Errorf("nftables table left behind:\n%s", out)
	}
	if _, err := l.Exit.Exec(ctx, "ip", "link", "show", tun); err == nil {
		t.Errorf("TUN %s left behind", tun)
	}
}

func TestStartErrors(t *testing.T) {
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: 1})
	tests := []struct {
		name   string
		mutate func(cfg string) string
		wrap   []string
		setup  func(t *testing.T) func()
		want   string
	}{
		{
			name:   "unknown key",
			mutate: func(c string) string { return c + "\n[filter]\nmember_isolaton = true\n" },
			want:   "filter.member_isolaton: unknown key (did you mean \"filter.member_isolation\"?)",
		},
		{
			name:   "malformed toml",
			mutate: func(c string) string { return c + "\n[tunnel\n" },
			want:   "exitd.toml:",
		},
		{
			name:   "bad value",
			mutate: func(c string) string { return strings.Replace(c, `ipv4 = "10.99.0.0/16"`, `ipv4 = "10.99.0.0/40"`, 1) },
			want:   "tunnel.ipv4: want an IPv4 prefix",
		},
		{
			name:   "unknown WAN interface",
			mutate: func(c string) string { return strings.Replace(c, `interface = "wan0"`, `interface = "eth9"`, 1) },
			want:   `wan.interface "eth9": no such interface`,
		},
		{
			name: "UDP port in use",
			setup: func(t *testing.T) func() {
				var c net.PacketConn
				err := l.Exit.Run(func() error {
					var err error
					c, err = net.ListenPacket("udp", ":443")
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return func() { c.Close() }
			},
			want: "UDP port 443 is already in use",
		},
		{
			name: "no /dev/net/tun",
			wrap: []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", `mount -t tmpfs none /dev/net && exec "$0" "$@"`},
			want: "/dev/net/tun does not exist",
		},
		{
			name: "missing CAP_NET_ADMIN",
			wrap: []string{"setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-net_admin", "--"},
			want: "CAP_NET_ADMIN",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := shortTempDir(t)
			o := harness.NodeOptions{Bin: bins, Dir: dir}
			path, err := harness.WriteConfig(&o)
			if err != nil {
				t.Fatal(err)
			}
			if tc.mutate != nil {
				b, _ := os.ReadFile(path)
				os.WriteFile(path, []byte(tc.mutate(string(b))), 0o600)
			}
			if tc.setup != nil {
				defer tc.setup(t)()
			}
			code, out := runExitd(t, l, tc.wrap, path)
			if code == 0 {
				t.Fatalf("exitd started:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "exitd: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("last line %q does not name the problem (%q); full output:\n%s", last, tc.want, out)
			}
			assertNothingLeft(t, l, o.Tun)
		})
	}
}

// apiCode extracts the error code exitctl printed ("... (code)").
func apiFails(t *testing.T, n *harness.Node, code string, args ...string) {
	t.Helper()
	_, err := n.Exitctl(context.Background(), args...)
	if err == nil || !strings.Contains(err.Error(), "("+code+")") {
		t.Fatalf("exitctl %v: want error code %s, got %v", args, code, err)
	}
}

func memberCount(t *testing.T, n *harness.Node) int {
	t.Helper()
	out, err := n.Exitctl(context.Background(), "--json", "member", "list")
	if err != nil {
		t.Fatal(err)
	}
	var ms []json.RawMessage
	if err := json.Unmarshal(out, &ms); err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func TestMemberErrors(t *testing.T) {
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: 1})
	ctx := context.Background()
	// A /30 has exactly one member slot (.2): .0 network, .1 gateway, .3 broadcast.
	n, err := harness.StartNode(ctx, l, harness.NodeOptions{Bin: bins, Dir: shortTempDir(t), IPv4: "10.99.0.0/30", IPv6: "fd00:99::/120"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Proc.Stop()
	if _, err := n.Exitctl(ctx, "member", "add", "--label", "alice"); err != nil {
		t.Fatal(err)
	}
	apiFails(t, n, "duplicate", "member", "add", "--label", "alice")
	apiFails(t, n, "prefix_exhausted", "member", "add", "--label", "bob")
	apiFails(t, n, "invalid_label", "member", "add", "--label", "b o b")
	apiFails(t, n, "not_found", "member", "remove", "nobody")
	if _, err := n.Exitctl(ctx, "member", "add", "--label", "carol", "--public-key", "not-a-key"); err == nil ||
		!strings.Contains(err.Error(), "invalid WireGuard key") {
		t.Fatalf("bad key: %v", err)
	}
	// The server checks keys too: send a bad one straight to the API.
	out, err := exec.Command("curl", "-s", "--unix-socket", n.Socket, "-X", "POST",
		"-d", `{"label":"dave","public_key":"AAAA"}`, "http://exitd/v1/members").Output()
	if err != nil || !strings.Contains(string(out), `"code":"invalid_key"`) {
		t.Fatalf("API with bad key: %s %v", out, err)
	}
	out, err = exec.Command("curl", "-s", "--unix-socket", n.Socket, "-X", "POST",
		"-d", `{"label":"dave","admin":true}`, "http://exitd/v1/members").Output()
	if err != nil || !strings.Contains(string(out), `"code":"invalid_request"`) {
		t.Fatalf("API with unknown field: %s %v", out, err)
	}
	if c := memberCount(t, n); c != 1 {
		t.Fatalf("failed requests changed the registry: %d members", c)
	}
	// Nothing half-written: after a restart the registry holds exactly alice.
	if code, err := n.Terminate(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: %d %v", code, err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c := memberCount(t, n); c != 1 {
		t.Fatalf("after restart: %d members", c)
	}
	if _, err := os.Stat(filepath.Join(n.Opts.Dir, "state", "private.key")); err != nil {
		t.Fatal(err)
	}
}
