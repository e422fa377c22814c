package e2e

// Lab tests of the members-at-scale issue: live churn under a download,
// disabled and removed members, quarantine, wg-quick import, a kill -9
// during a bulk add, and a reduced run of `exitlab members-bench`.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/control"
	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
	"exitd/keys"
)

// startNode runs exitd in lab l with node options o (Bin and Dir filled in)
// and stops it at cleanup.
func startNode(t *testing.T, l *netlab.Lab, o harness.NodeOptions) *harness.Node {
	t.Helper()
	o.Bin, o.Dir = bins, shortTempDir(t)
	n, err := harness.StartNode(context.Background(), l, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Proc.Stop()
		if t.Failed() {
			t.Logf("exitd output:\n%s", n.Proc.Output())
		}
	})
	return n
}

// serveWeb starts the internet host's HTTP server (/ip, /bytes).
func serveWeb(t *testing.T, l *netlab.Lab) {
	t.Helper()
	if _, err := l.Internet.ServeHTTP(context.Background(),
		netip.MustParseAddrPort(netlab.Internet4+":80"), netip.MustParseAddrPort("["+netlab.Internet6+"]:80")); err != nil {
		t.Fatal(err)
	}
}

// devicePeers lists the public keys in exitd's device (`wg show TUN peers`).
func devicePeers(t *testing.T, n *harness.Node) map[string]bool {
	t.Helper()
	out, err := n.Lab.Exit.Exec(context.Background(), "wg", "show", n.Opts.Tun, "peers")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		set[l] = true
	}
	return set
}

// memberWithKey brings up a wireguard-go member in ns for an existing
// member, from the config `exitctl member show` prints plus its private key.
func memberWithKey(t *testing.T, n *harness.Node, ns *netlab.NS, label string, priv keys.Key) *harness.Member {
	t.Helper()
	ctx := context.Background()
	out, err := n.Exitctl(ctx, "--json", "member", "show", label)
	if err != nil {
		t.Fatal(err)
	}
	var m control.Member
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config != "" {
		t.Fatalf("node holds %s's private key", label)
	}
	c, err := control.NewClient(n.Socket).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// What a member of an imported or bulk-added list gets: the node's
	// config for them with their own key.
	conf := fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = %s/32, %s/128\n\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n",
		priv, m.IPv4, m.IPv6, c.PublicKey, c.Endpoint)
	hm := &harness.Member{NS: ns, Label: label, Dev: harness.DeviceName(), Config: conf}
	if len(hm.Dev) > 15 {
		hm.Dev = hm.Dev[:15]
	}
	if err := hm.Up(ctx, bins.WireguardGo, filepath.Join(n.Opts.Dir, label+".conf")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hm.Down() })
	return hm
}

// reachesInternet polls until ns fetches the internet host's /ip through
// the tunnel and it shows the exit's WAN address.
func reachesInternet(t *testing.T, ns *netlab.NS) {
	t.Helper()
	ctx := context.Background()
	var body string
	var err error
	werr := netlab.WaitFor(ctx, 20*time.Second, func() bool {
		body, err = httpGetTimeout(ctx, ns, "http://"+netlab.Internet4+"/ip", 2*time.Second)
		return err == nil
	})
	if werr != nil || strings.TrimSpace(body) != netlab.ExitWAN4 {
		t.Fatalf("member did not reach the internet: %q %v", body, err)
	}
}

// cannotReach checks a fetch through the tunnel fails.
func cannotReach(t *testing.T, ns *netlab.NS) {
	t.Helper()
	if body, err := httpGetTimeout(context.Background(), ns, "http://"+netlab.Internet4+"/ip", 2*time.Second); err == nil {
		t.Fatalf("member reached the internet: %q", body)
	}
}

func genKeys(t *testing.T, n int) []keys.Key {
	t.Helper()
	out := make([]keys.Key, n)
	var wg sync.WaitGroup
	w := runtime.GOMAXPROCS(0)
	for g := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += w {
				k, err := keys.Generate(nil)
				if err != nil {
					panic(err)
				}
				out[i] = k
			}
		}()
	}
	wg.Wait()
	return out
}

// TestMembersChurnKeepsDownload: a member downloading at the link's full
// rate keeps its connection and ≥ 95 % of its rate while 1,000 other members
// are added and removed, in batches and one at a time.
func TestMembersChurnKeepsDownload(t *testing.T) {
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: 1, DownRate: 100e6, OffloadsOff: true})
	serveWeb(t, l)
	n := startNode(t, l, harness.NodeOptions{})
	ctx := context.Background()
	// Labels name the member's wireguard-go device, whose UAPI socket
	// lives in the global /var/run/wireguard: keep them unlike other tests'.
	alice, err := n.AddMember(ctx, l.Members[0], "churnee")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Down() })
	if _, err := l.Internet.StartIperfServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	reachesInternet(t, alice.NS)

	const secs, churnAt = 22, 6 * time.Second
	type result struct {
		r   *netlab.IperfResult
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		r, err := alice.NS.Iperf(ctx, netlab.IperfOptions{Server: netip.MustParseAddr(netlab.Internet4), Duration: secs * time.Second, Reverse: true})
		done <- result{r, err}
	}()

	// 1,000 members in 40 steps of 25, every 250 ms from churnAt: each
	// step adds a batch and removes the batch added two steps before; every
	// fifth step also adds and removes one member on its own.
	c := control.NewClient(n.Socket)
	privs := genKeys(t, 1000)
	<-time.After(churnAt - time.Since(start))
	churnStart := time.Since(start)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var batches [][]string
	for step := range 40 {
		var reqs []control.AddMemberRequest
		for i := step * 25; i < step*25+25; i++ {
			reqs = append(reqs, control.AddMemberRequest{Label: fmt.Sprintf("churn-%04d", i), PublicKey: privs[i].Public().String(), Weight: i%4 + 1})
		}
		if step%5 == 0 {
			single := reqs[0]
			if _, err := c.AddMember(ctx, single); err != nil {
				t.Fatal(err)
			}
			if _, err := c.RemoveMember(ctx, single.Label); err != nil {
				t.Fatal(err)
			}
			reqs[0].Label += "-again"
		}
		ms, err := c.AddMembers(ctx, control.AddMembersRequest{Members: reqs})
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, m := range ms {
			refs = append(refs, m.Label)
		}
		batches = append(batches, refs)
		if step >= 2 {
			if _, err := c.RemoveMembers(ctx, batches[step-2]); err != nil {
				t.Fatal(err)
			}
		}
		<-tick.C
	}
	for _, b := range batches[len(batches)-2:] {
		if _, err := c.RemoveMembers(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	churnEnd := time.Since(start)
	res := <-done
	if res.err != nil {
		t.Fatalf("download broke during churn: %v", res.err)
	}
	var before, during []float64
	for _, iv := range res.r.Intervals {
		switch {
		case iv.Start >= 2*time.Second && iv.End <= churnStart:
			before = append(before, iv.Sum)
		case iv.Start >= churnStart && iv.End <= churnEnd:
			during = append(during, iv.Sum)
		}
	}
	if len(before) < 2 || len(during) < 4 {
		t.Fatalf("intervals: %d before, %d during the churn (%v-%v)", len(before), len(during), churnStart, churnEnd)
	}
	mb, md := mean(before), mean(during)
	t.Logf("download: %.1f Mbit/s before, %.1f Mbit/s during churn of 1,000 members (%.1f %%), churn %v, %d retransmits",
		mb/1e6, md/1e6, 100*md/mb, churnEnd-churnStart, res.r.Retransmits)
	if md < 0.95*mb {
		t.Fatalf("download fell to %.1f %% of its rate during the churn", 100*md/mb)
	}
	if peers := devicePeers(t, n); len(peers) != 1 {
		t.Fatalf("device has %d peers after the churn, want alice only", len(peers))
	}
	if out, err := n.Exitctl(ctx, "member", "list"); err != nil || strings.Count(string(out), "\n") != 2 {
		t.Fatalf("registry after the churn:\n%s %v", out, err)
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// TestMembersDisabledRemovedQuarantine: a disabled member cannot connect
// (also with a fresh handshake) and keeps its address; enabled, it connects
// again; a removed member's address is not handed out within the quarantine,
// also across a restart. The member prefix holds five members.
func TestMembersDisabledRemovedQuarantine(t *testing.T) {
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: 1})
	serveWeb(t, l)
	n := startNode(t, l, harness.NodeOptions{IPv4: "10.99.0.0/29", IPv6: "fd00:99::/120"})
	ctx := context.Background()
	alice, err := n.AddMember(ctx, l.Members[0], "quara")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Down() })
	reachesInternet(t, alice.NS)
	key := func() string {
		out, err := alice.NS.Exec(ctx, "wg", "show", alice.Dev, "public-key")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}()
	confPath := filepath.Join(n.Opts.Dir, "quara.conf")

	t.Run("disabled member cannot connect", func(t *testing.T) {
		if conntrackFrom(t, l.Exit, alice.Addr4) == 0 {
			t.Fatal("no conntrack entries from the member before disabling: the check below would prove nothing")
		}
		if _, err := n.Exitctl(ctx, "member", "disable", "quara"); err != nil {
			t.Fatal(err)
		}
		// Revocation is immediate: the member's flows are gone from
		// conntrack (flushed within cutCoalesce), not left to their
		// (5-day TCP) timeouts.
		if err := netlab.WaitFor(ctx, 3*time.Second, func() bool { return conntrackFrom(t, l.Exit, alice.Addr4) == 0 }); err != nil {
			t.Fatalf("%d conntrack entries from the disabled member survive", conntrackFrom(t, l.Exit, alice.Addr4))
		}
		if devicePeers(t, n)[key] {
			t.Fatal("disabled member still in the device")
		}
		cannotReach(t, alice.NS)
		// A fresh client session does not help.
		alice.Down()
		if err := alice.Up(ctx, bins.WireguardGo, confPath); err != nil {
			t.Fatal(err)
		}
		cannotReach(t, alice.NS)
		out, _ := alice.NS.Exec(ctx, "wg", "show", alice.Dev, "latest-handshakes")
		if f := strings.Fields(string(out)); len(f) != 2 || f[1] != "0" {
			t.Fatalf("disabled member completed a handshake: %q", out)
		}
		out, err := n.Exitctl(ctx, "--json", "member", "show", "quara")
		var m control.Member
		if err != nil || json.Unmarshal(out, &m) != nil || !m.Disabled || m.IPv4.String() != alice.Addr4 {
			t.Fatalf("show: %s %v", out, err)
		}
	})
	t.Run("enabled member connects again", func(t *testing.T) {
		if _, err := n.Exitctl(ctx, "member", "enable", "quara"); err != nil {
			t.Fatal(err)
		}
		alice.Down()
		if err := alice.Up(ctx, bins.WireguardGo, confPath); err != nil {
			t.Fatal(err)
		}
		reachesInternet(t, alice.NS)
	})
	t.Run("removed member's address stays quarantined", func(t *testing.T) {
		for _, label := range []string{"bob", "carol", "dave", "erin"} { // slots 3-6: the prefix is full
			if _, err := n.Exitctl(ctx, "member", "add", "--label", label, "--keep-key"); err != nil {
				t.Fatal(err)
			}
		}
		reachesInternet(t, alice.NS)
		if _, err := n.Exitctl(ctx, "member", "remove", "quara"); err != nil {
			t.Fatal(err)
		}
		if err := netlab.WaitFor(ctx, 3*time.Second, func() bool { return conntrackFrom(t, l.Exit, alice.Addr4) == 0 }); err != nil {
			t.Fatalf("%d conntrack entries from the removed member survive", conntrackFrom(t, l.Exit, alice.Addr4))
		}
		cannotReach(t, alice.NS)
		_, err := n.Exitctl(ctx, "member", "add", "--label", "frank")
		if err == nil || !strings.Contains(err.Error(), "prefix_exhausted") {
			t.Fatalf("add after removal: %v (quara's address must stay quarantined)", err)
		}
		_, err = n.Exitctl(ctx, "member", "add", "--label", "frank", "--ipv4", alice.Addr4)
		if err == nil || !strings.Contains(err.Error(), "quarantined") {
			t.Fatalf("asking for quara's address: %v", err)
		}
		if code, err := n.Terminate(15 * time.Second); err != nil || code != 0 {
			t.Fatalf("stop: %d %v", code, err)
		}
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = n.Exitctl(ctx, "member", "add", "--label", "frank")
		if err == nil || !strings.Contains(err.Error(), "prefix_exhausted") {
			t.Fatalf("quarantine lost across a restart: %v", err)
		}
		if _, err := n.Exitctl(ctx, "member", "remove", "bob"); err != nil {
			t.Fatal(err)
		}
		if peers := devicePeers(t, n); len(peers) != 3 || peers[key] {
			t.Fatalf("device peers after restart: %v", peers)
		}
	})
}

// TestMembersImportWGQuick migrates a real wg-quick server config (keys made
// by wg) and connects a Debian wireguard-go client with one imported peer's
// private key.
func TestMembersImportWGQuick(t *testing.T) {
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: 1})
	serveWeb(t, l)
	n := startNode(t, l, harness.NodeOptions{})
	ctx := context.Background()
	wgKey := func() (priv, pub string) {
		out, err := exec.Command("wg", "genkey").Output()
		if err != nil {
			t.Fatal(err)
		}
		priv = strings.TrimSpace(string(out))
		cmd := exec.Command("wg", "pubkey")
		cmd.Stdin = strings.NewReader(priv)
		out, err = cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return priv, strings.TrimSpace(string(out))
	}
	serverPriv, _ := wgKey()
	alicePriv, alicePub := wgKey()
	_, bobPub := wgKey()
	_, carolPub := wgKey()
	psk, err := exec.Command("wg", "genpsk").Output()
	if err != nil {
		t.Fatal(err)
	}
	conf := `[Interface]
Address = 10.99.0.1/16, fd00:99::1/64
ListenPort = 51820
PrivateKey = ` + serverPriv + `
PostUp = iptables -A FORWARD -i %i -j ACCEPT; iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
PostDown = iptables -D FORWARD -i %i -j ACCEPT; iptables -t nat -D POSTROUTING -o eth0 -j MASQUERADE

[Peer]
# Name = alice-phone
PublicKey = ` + alicePub + `
AllowedIPs = 10.99.0.77/32, fd00:99::4d/128

### begin bob ###
[Peer]
PublicKey = ` + bobPub + `
PresharedKey = ` + strings.TrimSpace(string(psk)) + `
AllowedIPs = 10.99.0.78/32
### end bob ###

[Peer]
PublicKey = ` + carolPub + `
AllowedIPs = 10.8.0.5/32
Endpoint = 192.0.2.7:51820
`
	file := filepath.Join(n.Opts.Dir, "wg0.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := n.Exitctl(ctx, "member", "import", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"imported 3 peers, skipped 0; 1 got a new address", "PresharedKey not used", "import-1"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("import report lacks %q:\n%s", want, out)
		}
	}
	var ms []control.Member
	out, err = n.Exitctl(ctx, "--json", "member", "list", "--sort", "label")
	if err != nil || json.Unmarshal(out, &ms) != nil || len(ms) != 3 {
		t.Fatalf("list: %s %v", out, err)
	}
	got := map[string]string{}
	for _, m := range ms {
		got[m.Label] = m.PublicKey + " " + m.IPv4.String() + " " + m.IPv6.String()
	}
	if got["alice-phone"] != alicePub+" 10.99.0.77 fd00:99::4d" || got["bob"] != bobPub+" 10.99.0.78 fd00:99::4e" ||
		!strings.HasPrefix(got["import-1"], carolPub+" 10.99.0.2 ") {
		t.Fatalf("imported members: %v", got)
	}
	if again, err := n.Exitctl(ctx, "member", "import", file); err != nil || !strings.Contains(string(again), "imported 0 peers, skipped 3") {
		t.Fatalf("second import: %s %v", again, err)
	}
	priv, err := keys.Parse(alicePriv)
	if err != nil {
		t.Fatal(err)
	}
	alice := memberWithKey(t, n, l.Members[0], "alice-phone", priv)
	if alice.Addr4 != "10.99.0.77" {
		t.Fatalf("client address %s", alice.Addr4)
	}
	reachesInternet(t, alice.NS)
}

// TestMembersCrashDuringBulkAdd kills exitd (SIGKILL) during a bulk add of
// 5,000 members: after a restart every acknowledged member is present,
// whole, in the device and works; the batch in flight is all there or not
// at all.
func TestMembersCrashDuringBulkAdd(t *testing.T) {
	testenv.RequireRoot(t)
	l := netlab.NewT(t, netlab.Options{Members: 1})
	serveWeb(t, l)
	n := startNode(t, l, harness.NodeOptions{})
	ctx := context.Background()
	const total, batch = 5000, 250
	privs := genKeys(t, total)
	byKey := map[string]int{}
	reqs := make([]control.AddMemberRequest, total)
	for i, k := range privs {
		reqs[i] = control.AddMemberRequest{Label: fmt.Sprintf("bulk-%04d", i), PublicKey: k.Public().String()}
		byKey[reqs[i].PublicKey] = i
	}
	c := control.NewClient(n.Socket)
	var mu sync.Mutex
	var acked []control.Member
	stopped := make(chan error, 1)
	go func() {
		for lo := 0; lo < total; lo += batch {
			ms, err := c.AddMembers(ctx, control.AddMembersRequest{Members: reqs[lo : lo+batch]})
			if err != nil {
				stopped <- err
				return
			}
			mu.Lock()
			acked = append(acked, ms...)
			mu.Unlock()
		}
		stopped <- nil
	}()
	if err := netlab.WaitFor(ctx, 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 2000
	}); err != nil {
		t.Fatal(err)
	}
	if err := n.Proc.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-n.Proc.Done()
	if err := <-stopped; err == nil {
		t.Fatal("the bulk add finished before the kill")
	}
	mu.Lock()
	ack := slices.Clone(acked)
	mu.Unlock()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	present, _, err := c.ListMembers(ctx, control.ListQuery{NoStats: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d members acknowledged before the kill, %d present after the restart", len(ack), len(present))
	have := map[string]control.Member{}
	for _, m := range present {
		i, ok := byKey[m.PublicKey]
		if !ok || m.Label != reqs[i].Label || !m.IPv4.IsValid() || !m.IPv6.IsValid() {
			t.Fatalf("unknown or incomplete member after the crash: %+v", m)
		}
		have[m.PublicKey] = m
	}
	for _, a := range ack {
		m, ok := have[a.PublicKey]
		if !ok || m.IPv4 != a.IPv4 || m.IPv6 != a.IPv6 || m.Label != a.Label {
			t.Fatalf("acknowledged member %s lost or changed: %+v", a.Label, m)
		}
	}
	if extra := len(present) - len(ack); extra != 0 && extra != batch {
		t.Fatalf("%d members beyond the acknowledged ones: the batch in flight is half there", extra)
	}
	peers := devicePeers(t, n)
	if len(peers) != len(present) {
		t.Fatalf("device has %d peers, registry %d members", len(peers), len(present))
	}
	for k := range have {
		if !peers[k] {
			t.Fatalf("registry member %s not in the device after the restart", k)
		}
	}
	last := ack[len(ack)-1]
	m := memberWithKey(t, n, l.Members[0], last.Label, privs[byKey[last.PublicKey]])
	reachesInternet(t, m.NS)
}

// TestMembersBenchSmall runs `exitlab members-bench` reduced (2,000
// members, 300 simulated and handshaken, a restart storm): the benchmark
// command works and every simulated member connects, pings and reconnects.
// Its figures are logged, not judged.
func TestMembersBenchSmall(t *testing.T) {
	testenv.RequireRoot(t)
	if testing.Short() {
		t.Skip("-short: the reduced members benchmark takes a minute")
	}
	dir := t.TempDir()
	exitlab := filepath.Join(dir, "exitlab")
	if out, err := exec.Command("go", "build", "-o", exitlab, "exitd/cmd/exitlab").CombinedOutput(); err != nil {
		t.Fatalf("build exitlab: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exitlab, "members-bench", "--exitd", bins.Exitd, "--exitctl", bins.Exitctl,
		"--members", "2000", "--handshaken", "300", "--ping", "3s", "--timeout", "2m", "--out", dir,
		"--idle", "2s", "--bulk-seconds", "4", "--upstream-baseline")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "members.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Members           int     `json:"members"`
		AddSeconds        float64 `json:"add_seconds"`
		Connected         int     `json:"connected"`
		PingsAnswered     int     `json:"members_with_ping_answered"`
		StormReconnected  int     `json:"storm_reconnected"`
		StormPingAnswered int     `json:"storm_ping_answered"`
		RSSConfiguredMiB  float64 `json:"rss_configured_mib"`
		IdleSeconds       float64 `json:"idle_seconds"`
		BulkAloneMbps     float64 `json:"bulk_alone_mbps"`
		BulkRatio         float64 `json:"bulk_ratio"`
		Upstream          *struct {
			Connected     int     `json:"connected"`
			PingsAnswered int     `json:"members_with_ping_answered"`
			RSSConnected  float64 `json:"rss_connected_mib"`
			IdleSeconds   float64 `json:"idle_seconds"`
		} `json:"upstream"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	// The bulk member's figures are measured, not judged (a benchmark, not
	// a timed test): present, and not nonsense.
	if r.Members != 2000 || r.AddSeconds <= 0 || r.RSSConfiguredMiB <= 0 || r.Connected != 300 || r.PingsAnswered != 300 ||
		r.StormReconnected != 300 || r.StormPingAnswered != 300 || r.IdleSeconds < 2 ||
		r.BulkAloneMbps <= 0 || r.BulkRatio <= 0 || r.BulkRatio > 2 ||
		r.Upstream == nil || r.Upstream.Connected != 300 || r.Upstream.PingsAnswered != 300 ||
		r.Upstream.RSSConnected <= 0 || r.Upstream.IdleSeconds < 2 {
		t.Fatalf("report: %+v", r)
	}
}
