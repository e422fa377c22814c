package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

type lab struct {
	*netlab.Lab
	node *harness.Node
	web  *netlab.HTTPServer
}

// newLab builds a lab with n members, an HTTP server on the internet host
// (v4, v6, metadata address) and on the mgmt host, and a running exitd.
func newLab(t *testing.T, members int, extra string) *lab {
	t.Helper()
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: members})
	ctx := context.Background()
	web, err := l.Internet.ServeHTTP(ctx,
		netip.MustParseAddrPort(netlab.Internet4+":80"), netip.MustParseAddrPort("["+netlab.Internet6+"]:80"),
		netip.MustParseAddrPort(netlab.Metadata4+":80"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Mgmt.ServeHTTP(ctx, netip.MustParseAddrPort(netlab.Mgmt4+":80")); err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	n, err := harness.StartNode(ctx, l, harness.NodeOptions{Bin: bins, Dir: dir, Extra: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Proc.Stop()
		if t.Failed() {
			t.Logf("exitd output:\n%s", n.Proc.Output())
		}
	})
	return &lab{Lab: l, node: n, web: web}
}

// shortTempDir keeps unix socket paths under 108 bytes.
func shortTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "xe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func httpGet(ctx context.Context, ns *netlab.NS, url string) (string, error) {
	return httpGetTimeout(ctx, ns, url, 5*time.Second)
}

// httpGetTimeout is httpGet for probes expected to fail.
func httpGetTimeout(ctx context.Context, ns *netlab.NS, url string, d time.Duration) (string, error) {
	return harness.Get(ctx, ns, url, d)
}

// counters reads exitd's nft counters through `exitctl status --json`.
func counters(t *testing.T, n *harness.Node) map[string]uint64 {
	t.Helper()
	out, err := n.Exitctl(context.Background(), "--json", "status")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Drops map[string]uint64 `json:"drops"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatal(err)
	}
	return s.Drops
}

func TestMemberReachesInternet(t *testing.T) {
	l := newLab(t, 2, "")
	ctx := context.Background()
	m, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Config, "Endpoint = 198.18.0.1:443") || !strings.Contains(m.Config, "AllowedIPs = 0.0.0.0/0, ::/0") ||
		!strings.Contains(m.Config, "PersistentKeepalive = 25") || !strings.Contains(m.Config, "\nPrivateKey = ") {
		t.Fatalf("client config:\n%s", m.Config)
	}

	t.Run("http over IPv4 shows the WAN address", func(t *testing.T) {
		body, err := httpGet(ctx, m.NS, "http://"+netlab.Internet4+"/ip")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(body) != netlab.ExitWAN4 {
			t.Fatalf("internet host saw %q, want the exit's WAN %s", body, netlab.ExitWAN4)
		}
	})
	t.Run("http over IPv6 shows the WAN address", func(t *testing.T) {
		body, err := httpGet(ctx, m.NS, "http://["+netlab.Internet6+"]/ip")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(body) != netlab.ExitWAN6 {
			t.Fatalf("internet host saw %q, want %s", body, netlab.ExitWAN6)
		}
	})
	t.Run("handshake on UDP 443 and wg show lists the member", func(t *testing.T) {
		out, err := l.Exit.Exec(ctx, "wg", "show", l.node.Opts.Tun)
		if err != nil {
			t.Fatal(err, string(out))
		}
		s := string(out)
		if !strings.Contains(s, "listening port: 443") || !strings.Contains(s, "latest handshake") ||
			!strings.Contains(s, "10.99.0.2/32") {
			t.Fatalf("wg show:\n%s", s)
		}
		out, err = m.NS.Exec(ctx, "wg", "show", m.Dev, "endpoints")
		if err != nil || !strings.Contains(string(out), "198.18.0.1:443") {
			t.Fatalf("member endpoint: %s %v", out, err)
		}
	})
	t.Run("member list shows the session", func(t *testing.T) {
		// The node serves a peer dump up to 100 ms old: poll briefly.
		var out []byte
		var err error
		ok := func() bool {
			out, err = l.node.Exitctl(ctx, "--json", "member", "list")
			var ms []struct {
				Label         string    `json:"label"`
				LastHandshake time.Time `json:"last_handshake"`
				RxBytes       uint64    `json:"rx_bytes"`
			}
			return err == nil && json.Unmarshal(out, &ms) == nil && len(ms) == 1 && ms[0].Label == "alice" &&
				!ms[0].LastHandshake.IsZero() && ms[0].RxBytes > 0
		}
		if netlab.WaitFor(ctx, 5*time.Second, ok) != nil {
			t.Fatalf("list: %s %v", out, err)
		}
	})
}

func TestLeaksBlockedAndCounted(t *testing.T) {
	l := newLab(t, 2, "")
	ctx := context.Background()
	a, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.node.AddMember(ctx, l.Members[1], "bob")
	if err != nil {
		t.Fatal(err)
	}
	// Baseline: the internet works, so a failure below is the filter.
	if _, err := httpGet(ctx, a.NS, "http://"+netlab.Internet4+"/"); err != nil {
		t.Fatal("baseline fetch failed:", err)
	}
	// Both members' sessions are up (bob pings the internet).
	if _, err := httpGet(ctx, b.NS, "http://"+netlab.Internet4+"/"); err != nil {
		t.Fatal("baseline fetch (bob) failed:", err)
	}
	// Sanity: the exit itself reaches the metadata address and the mgmt host.
	if _, err := httpGet(ctx, l.Exit, "http://"+netlab.Metadata4+"/"); err != nil {
		t.Fatal("exit cannot reach the metadata host; the test would prove nothing:", err)
	}
	if _, err := httpGet(ctx, l.Exit, "http://"+netlab.Mgmt4+"/"); err != nil {
		t.Fatal("exit cannot reach the mgmt host:", err)
	}
	tests := []struct {
		name, url, counter string
	}{
		{"management LAN host", "http://" + netlab.Mgmt4 + "/", "leak_drop"},
		{"cloud metadata", "http://" + netlab.Metadata4 + "/", "leak_drop"},
		{"another member", "http://" + b.Addr4 + "/", "member_isolation_drop"},
		{"exit WAN address", "http://" + netlab.ExitWAN4 + "/", "gw_input_drop"},
		{"exit LAN address", "http://" + netlab.ExitLAN4 + "/", "gw_input_drop"},
		{"management host IPv6", "http://[" + netlab.Mgmt6 + "]/", "leak_drop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := counters(t, l.node)[tc.counter]
			if _, err := httpGetTimeout(ctx, a.NS, tc.url, 1500*time.Millisecond); err == nil {
				t.Fatalf("member reached %s", tc.url)
			}
			after := counters(t, l.node)[tc.counter]
			if after <= before {
				t.Fatalf("%s did not rise (%d -> %d)", tc.counter, before, after)
			}
		})
	}
	t.Run("gateway answers ping", func(t *testing.T) {
		if out, err := a.NS.Exec(ctx, "ping", "-c", "1", "-W", "2", "10.99.0.1"); err != nil {
			t.Fatalf("gateway ping: %v %s", err, out)
		}
	})
}

func TestMSSClamped(t *testing.T) {
	l := newLab(t, 1, "")
	ctx := context.Background()
	a, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	// The member's TUN claims a big MTU so its SYN carries a big MSS; the
	// exit must clamp it to the tunnel MTU (1420) - 40.
	if out, err := a.NS.Exec(ctx, "ip", "link", "set", a.Dev, "mtu", "8000"); err != nil {
		t.Fatal(err, string(out))
	}
	rules := `table inet probe {
  counter big { }
  counter small { }
  chain in { type filter hook input priority -300;
    tcp dport 80 tcp flags syn tcp option maxseg size > 1380 counter name big
    tcp dport 80 tcp flags syn tcp option maxseg size <= 1380 counter name small
  }
}`
	cmd := l.Internet.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	if _, err := httpGet(ctx, a.NS, "http://"+netlab.Internet4+"/"); err != nil {
		t.Fatal(err)
	}
	out, err := l.Internet.Exec(ctx, "nft", "list", "table", "inet", "probe")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.Contains(s, "counter big {\n\t\tpackets 0") || strings.Contains(s, "counter small {\n\t\tpackets 0") {
		t.Fatalf("SYN MSS not clamped to <= 1380:\n%s", s)
	}
}

func TestAddDuringDownload(t *testing.T) {
	l := newLab(t, 2, "")
	ctx := context.Background()
	a, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	started := make(chan struct{})
	go func() {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/bytes?n=%d", netlab.Internet4, size), nil)
		resp, err := a.NS.HTTPClient().Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		var n int64
		once := false
		for {
			k, err := resp.Body.Read(buf)
			n += int64(k)
			if !once && n > 1<<20 {
				once = true
				close(started)
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				done <- result{n, err}
				return
			}
		}
	}()
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("download ended before the add: %+v", r)
	case <-time.After(20 * time.Second):
		t.Fatal("download did not start")
	}
	for i := 0; i < 5; i++ {
		if _, err := l.node.Exitctl(ctx, "member", "add", "--label", fmt.Sprintf("late%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.node.Exitctl(ctx, "member", "remove", "late0"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.n != size {
			t.Fatalf("download disturbed: got %d of %d bytes, err %v", r.n, size, r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("download stalled")
	}
}

func TestStopRemovesOnlyOurs(t *testing.T) {
	l := newLab(t, 1, "")
	ctx := context.Background()
	a, err := l.node.AddMember(ctx, l.Members[0], "alice")
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's table in the exit namespace must survive.
	if out, err := l.Exit.Exec(ctx, "nft", "add", "table", "inet", "operator"); err != nil {
		t.Fatal(err, string(out))
	}
	if _, err := httpGet(ctx, a.NS, "http://"+netlab.Internet4+"/"); err != nil {
		t.Fatal(err)
	}
	t.Run("table deleted by someone else comes back", func(t *testing.T) {
		if out, err := l.Exit.Exec(ctx, "nft", "delete", "table", "inet", "exitd"); err != nil {
			t.Fatal(err, string(out))
		}
		err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
			_, err := l.Exit.Exec(ctx, "nft", "list", "table", "inet", "exitd")
			return err == nil
		})
		if err != nil {
			t.Fatal("table not re-applied:", err)
		}
	})
	code, err := l.node.Terminate(15 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, err %v\n%s", code, err, l.node.Proc.Output())
	}
	out, err := l.Exit.Exec(ctx, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "exitd") || !strings.Contains(string(out), "operator") {
		t.Fatalf("tables after stop:\n%s", out)
	}
	if _, err := l.Exit.Exec(ctx, "ip", "link", "show", l.node.Opts.Tun); err == nil {
		t.Fatal("TUN still present after stop")
	}
	if _, err := os.Stat(filepath.Join("/var/run/wireguard", l.node.Opts.Tun+".sock")); err == nil {
		t.Fatal("UAPI socket left behind")
	}
	if _, err := httpGetTimeout(ctx, a.NS, "http://"+netlab.Internet4+"/", 1500*time.Millisecond); err == nil {
		t.Fatal("new flow succeeded after exitd stopped")
	}
	out, _ = l.Exit.Exec(ctx, "cat", "/proc/net/nf_conntrack")
	if strings.Contains(string(out), "src=10.99.") {
		t.Fatalf("member conntrack entries left:\n%s", out)
	}
}
