package nspawn

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
	"exitd/internal/testenv"
)

// maxStall is the longest a member's download may stop during a reload,
// restart, crash or upgrade.
const maxStall = 2 * time.Second

// pkgFormat is one package format of exitd: how the test builds it and
// installs, upgrades and erases it inside the container.
type pkgFormat struct {
	name    string   // make target and file extension: "deb", "rpm"
	spec    RootSpec // the root it is installed into
	tools   []string // host tools the test needs besides the common ones
	install []string // command; the package's path inside the container is appended
	upgrade []string // likewise, with the newer package
	erase   []string
}

var debFormat = pkgFormat{
	name: "deb", spec: DefaultSpec, tools: []string{"dpkg-deb"},
	install: []string{"dpkg", "-i"},
	upgrade: []string{"dpkg", "-i"},
	erase:   []string{"dpkg", "--purge", "exitd"},
}

// buildPackages builds two versions of f (for the upgrade) with `make`:
// dir/v1/exitd.<ext> (v1.0.1-e2e) and dir/v2/exitd.<ext> (v1.0.2-e2e).
func buildPackages(t *testing.T, f pkgFormat) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, v := range []string{"1", "2"} {
		out, err := exec.Command("make", "-C", "../..", f.name, "DIST="+filepath.Join(dir, "v"+v), "VERSION=v1.0."+v+"-e2e").CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", f.name, err, out)
		}
		pkgs, _ := filepath.Glob(filepath.Join(dir, "v"+v, "*."+f.name))
		if len(pkgs) != 1 {
			t.Fatalf("make %s made %v", f.name, pkgs)
		}
		if err := os.Rename(pkgs[0], filepath.Join(dir, "v"+v, "exitd."+f.name)); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(filepath.Join(dir, "v"+v, "bin"))
	}
	return dir
}

// download reads a long HTTP body and records the longest gap between reads.
type download struct {
	mu     sync.Mutex
	bytes  int64
	last   time.Time
	maxGap time.Duration
	err    error
	done   chan struct{}
}

func startDownload(ctx context.Context, t *testing.T, ns *netlab.NS, url string) *download {
	d := &download{done: make(chan struct{}), last: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(d.done)
		resp, err := ns.HTTPClient().Do(req)
		if err != nil {
			d.fail(err)
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			now := time.Now()
			d.mu.Lock()
			if n > 0 {
				d.maxGap = max(d.maxGap, now.Sub(d.last))
				d.last = now
				d.bytes += int64(n)
			}
			d.mu.Unlock()
			if err != nil {
				d.fail(err)
				return
			}
		}
	}()
	return d
}

func (d *download) fail(err error) {
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
}

// mark starts a new measurement of the longest gap.
func (d *download) mark() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maxGap = 0
	return d.bytes
}

func (d *download) state() (int64, time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bytes, max(d.maxGap, time.Since(d.last)), d.err
}

// waitBytes waits until more than n bytes arrived in total.
func (d *download) waitBytes(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	err := netlab.WaitFor(context.Background(), timeout, func() bool {
		b, _, err := d.state()
		return b > n || err != nil
	})
	b, _, derr := d.state()
	if derr != nil {
		t.Fatalf("download broke after %d bytes: %v", b, derr)
	}
	if err != nil {
		t.Fatalf("download stuck at %d bytes (want > %d)", b, n)
	}
}

// unit reads properties of exitd.service.
func unit(ctx context.Context, t *testing.T, c *Container, props ...string) map[string]string {
	t.Helper()
	out, err := c.Exec(ctx, "systemctl", "show", "exitd.service", "--property="+strings.Join(props, ","))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m
}

// waitActive waits until exitd is active/running with a main PID other
// than notPID and at least minRestarts automatic restarts.
func waitActive(ctx context.Context, t *testing.T, c *Container, notPID string, minRestarts int, timeout time.Duration) map[string]string {
	t.Helper()
	var p map[string]string
	err := netlab.WaitFor(ctx, timeout, func() bool {
		p = unit(ctx, t, c, "ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "Result")
		n, _ := strconv.Atoi(p["NRestarts"])
		return p["ActiveState"] == "active" && p["SubState"] == "running" && p["MainPID"] != "0" && p["MainPID"] != notPID && n >= minRestarts
	})
	if err != nil {
		j, _ := c.Exec(ctx, "journalctl", "-u", "exitd", "--no-pager", "-n", "60")
		t.Fatalf("exitd not active: %v\n%s", p, j)
	}
	return p
}

// packagedNode is exitd installed from a package of one format in a booted
// container whose network is a lab's exit namespace, with one member.
type packagedNode struct {
	t   *testing.T
	ctx context.Context
	f   pkgFormat
	lab *netlab.Lab
	c   *Container

	dl           *download // the member's long download through the node
	stopDownload context.CancelFunc
}

// bootPackaged builds two versions of f, makes a lab with one member and an
// internet web server, and boots f's root in the lab's exit namespace with
// the packages at /pkgs/v1 and /pkgs/v2.
func bootPackaged(t *testing.T, f pkgFormat) *packagedNode {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, append([]string{"systemd-nspawn", "debootstrap", "nsenter", "make", "wireguard-go", "wg"}, f.tools...)...)
	n := &packagedNode{t: t, ctx: context.Background(), f: f}
	root, err := EnsureRoot(n.ctx, DefaultCache, f.spec, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := buildPackages(t, f)

	n.lab = netlab.NewT(t, netlab.Options{Members: 1, DownRate: 40_000_000})
	web, err := n.lab.Internet.ServeHTTP(n.ctx, netip.MustParseAddrPort(netlab.Internet4+":8080"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Close() })
	start := time.Now()
	n.c, err = Boot(n.ctx, Options{Root: root, NetNS: "/run/netns/" + n.lab.Exit.Name, BindRO: []string{pkgs + ":/pkgs"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.c.Close(); err != nil {
			t.Errorf("container close: %v", err)
		}
	})
	t.Logf("container booted in %v", time.Since(start).Round(time.Millisecond))
	return n
}

// exec runs a command in the container and fails the test if it fails.
func (n *packagedNode) exec(name string, args ...string) string {
	n.t.Helper()
	out, err := n.c.Exec(n.ctx, name, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return string(out)
}

// pkgCmd runs one of f's package commands, with the package of version v
// ("1", "2") appended when v is not "".
func (n *packagedNode) pkgCmd(cmd []string, v string) string {
	n.t.Helper()
	args := append([]string(nil), cmd[1:]...)
	if v != "" {
		args = append(args, "/pkgs/v"+v+"/exitd."+n.f.name)
	}
	out := n.exec(cmd[0], args...)
	n.t.Logf("%s %s:\n%s", cmd[0], strings.Join(args, " "), out)
	return out
}

// installAndStart installs version 1, sets the two required config values,
// runs `systemctl enable --now` and checks the running unit.
func (n *packagedNode) installAndStart() {
	t, ctx, c := n.t, n.ctx, n.c
	t.Helper()
	n.pkgCmd(n.f.install, "1")
	// The first-install branch of the post-install script ran `systemctl
	// preset` (Debian presets enable what they do not name); nothing started.
	if p := unit(ctx, t, c, "UnitFileState", "ActiveState"); p["UnitFileState"] != "enabled" || p["ActiveState"] != "inactive" {
		t.Errorf("after install: %v", p)
	}
	if got := n.exec("stat", "-c", "%a %U %G", "/etc/exitd", "/etc/exitd/exitd.toml", "/var/lib/exitd"); got != "750 root exitd\n640 root exitd\n700 exitd exitd\n" {
		t.Fatalf("installed owners and modes:\n%s", got)
	}
	conf, err := os.ReadFile("../../packaging/exitd.toml")
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.Replace(conf, []byte(`public_endpoint = ""`), []byte(`public_endpoint = "`+netlab.ExitUnderlay4+`:443"`), 1)
	conf = bytes.Replace(conf, []byte(`interface = ""`), []byte(`interface = "`+netlab.ExitWANIface+`"`), 1)
	if err := os.WriteFile(c.Path("/etc/exitd/exitd.toml"), conf, 0o640); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Exec(ctx, "systemctl", "enable", "--now", "exitd.service"); err != nil {
		j, _ := c.Exec(ctx, "journalctl", "-u", "exitd", "--no-pager", "-n", "80")
		t.Fatalf("%v\n%s", err, j)
	}
	p := waitActive(ctx, t, c, "", 0, 30*time.Second)
	t.Logf("enable --now: active in %v; status %q", time.Since(start).Round(time.Millisecond), p["StatusText"])
	if p := unit(ctx, t, c, "Type", "User", "WatchdogUSec"); p["Type"] != "notify" || p["User"] != "exitd" || p["WatchdogUSec"] != "30s" {
		t.Fatalf("unit: %v", p)
	}
	if out := n.exec("systemd-analyze", "verify", "/usr/lib/systemd/system/exitd.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify in the container:\n%s", out)
	}
	sec := n.exec("systemd-analyze", "security", "--no-pager", "exitd.service")
	if m := regexp.MustCompile(`Overall exposure level for exitd.service: ([0-9.]+)`).FindStringSubmatch(sec); m == nil {
		t.Errorf("no exposure level:\n%s", sec)
	} else if v, _ := strconv.ParseFloat(m[1], 64); v > 2.0 {
		t.Errorf("running unit's exposure %s > 2.0", m[1])
	} else {
		t.Logf("systemd-analyze security (running unit): %s", m[1])
	}
	if got := n.exec("stat", "-c", "%a %U %G", "/run/exitd", "/run/exitd/control.sock"); got != "750 exitd exitd\n660 exitd exitd\n" {
		t.Errorf("control socket: %s", got)
	}
	if out := n.exec("wg", "show", "exit0", "listen-port"); strings.TrimSpace(out) != "443" {
		t.Errorf("wg show exit0: %q", out)
	}
}

// connectMember adds member m1 with exitctl, brings it up with wireguard-go
// and starts a long download through the node.
func (n *packagedNode) connectMember() {
	t, ctx := n.t, n.ctx
	t.Helper()
	out := n.exec("exitctl", "member", "add", "--label", "m1")
	m := &harness.Member{NS: n.lab.Members[0], Label: "m1", Dev: harness.RandomName("wg"), Config: out}
	if err := m.Up(ctx, "", filepath.Join(t.TempDir(), "m1.conf")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Down() })
	var dctx context.Context
	dctx, n.stopDownload = context.WithCancel(ctx)
	t.Cleanup(n.stopDownload)
	n.dl = startDownload(dctx, t, n.lab.Members[0], fmt.Sprintf("http://%s:8080/bytes?n=%d", netlab.Internet4, int64(1)<<40))
	n.dl.waitBytes(t, 8<<20, 30*time.Second)
	// The node persists endpoints every 2 s; a crash right after a member
	// connects would find none.
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
		_, err := os.Stat(n.c.Path("/var/lib/exitd/endpoints.json"))
		return err == nil
	}); err != nil {
		t.Fatal("endpoints.json never written")
	}
}

// event runs do and checks that exitd is active again (the same process when
// same, a new one otherwise) and that the member's download went on with
// no stall longer than maxStall.
func (n *packagedNode) event(name string, do func(), same bool) {
	t, ctx, c := n.t, n.ctx, n.c
	t.Helper()
	before := unit(ctx, t, c, "MainPID")["MainPID"]
	have := n.dl.mark()
	t0 := time.Now()
	do()
	notPID := before
	if same {
		notPID = ""
	}
	p := waitActive(ctx, t, c, notPID, 0, 30*time.Second)
	back := time.Since(t0)
	if same && p["MainPID"] != before {
		t.Errorf("%s replaced the process", name)
	}
	n.dl.waitBytes(t, have+8<<20, 30*time.Second)
	_, stall, err := n.dl.state()
	t.Logf("%s: active again after %v; longest download stall %v; status %q", name, back.Round(time.Millisecond), stall.Round(time.Millisecond), p["StatusText"])
	if err != nil {
		t.Fatalf("%s: the member's download broke: %v", name, err)
	}
	if stall > maxStall {
		j, _ := c.Exec(ctx, "journalctl", "-u", "exitd", "--no-pager", "-n", "40")
		t.Errorf("%s: download stalled %v > %v\n%s", name, stall, maxStall, j)
	}
}

// upgrade installs version 2 over the running node: the member stays
// connected and the new exitd adopted the old one's TUN and socket.
func (n *packagedNode) upgrade() {
	n.t.Helper()
	n.event("upgrade", func() { n.pkgCmd(n.f.upgrade, "2") }, false)
	if p := unit(n.ctx, n.t, n.c, "UnitFileState"); p["UnitFileState"] != "enabled" {
		n.t.Errorf("after upgrade: %v", p)
	}
	if v := n.exec("/usr/sbin/exitd", "version"); !strings.Contains(v, "v1.0.2-e2e") {
		n.t.Errorf("after upgrade: %s", v)
	}
	if j := n.exec("journalctl", "-u", "exitd", "--no-pager"); !strings.Contains(j, "adopted the previous process's devices") {
		n.t.Errorf("no adoption in the journal:\n%s", j)
	}
}

// erase removes the package: the service is stopped and gone, no nftables
// table or TUN is left, and the node key and member registry in
// /var/lib/exitd are kept.
func (n *packagedNode) erase() {
	t, ctx, c := n.t, n.ctx, n.c
	t.Helper()
	n.stopDownload()
	key, err := os.ReadFile(c.Path("/var/lib/exitd/private.key"))
	if err != nil {
		t.Fatal(err)
	}
	n.pkgCmd(n.f.erase, "")
	if p := unit(ctx, t, c, "ActiveState", "LoadState"); p["ActiveState"] == "active" || p["LoadState"] != "not-found" {
		t.Errorf("after erase: %v", p)
	}
	if wants, _ := filepath.Glob(c.Path("/etc/systemd/system/*/exitd.service")); len(wants) > 0 {
		t.Errorf("still enabled after erase: %v", wants)
	}
	tables, err := n.lab.Exit.Exec(ctx, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(tables), "exitd") {
		t.Errorf("nftables table left after erase:\n%s", tables)
	}
	if out, err := n.lab.Exit.Exec(ctx, "ip", "link", "show", "exit0"); err == nil {
		t.Errorf("TUN left after erase:\n%s", out)
	}
	if after, err := os.ReadFile(c.Path("/var/lib/exitd/private.key")); err != nil || !bytes.Equal(after, key) {
		t.Errorf("node key not kept by erase: %v", err)
	}
	if db, err := os.ReadFile(c.Path("/var/lib/exitd/members.db")); err != nil || !bytes.Contains(db, []byte(`"label":"m1"`)) {
		t.Errorf("member registry not kept by erase (%d bytes): %v", len(db), err)
	}
}

func TestPackagedExitdUnderSystemd(t *testing.T) {
	n := bootPackaged(t, debFormat)
	n.installAndStart()
	n.connectMember()
	n.event("reload", func() { n.exec("systemctl", "reload", "exitd.service") }, true)
	n.event("restart", func() { n.exec("systemctl", "restart", "exitd.service") }, false)
	n.event("kill -9", func() { n.exec("systemctl", "kill", "--signal=SIGKILL", "exitd.service") }, false)
	n.upgrade()

	// A hung data path: no watchdog pings, systemd restarts the service.
	ctx, c, dl := n.ctx, n.c, n.dl
	dropin := "[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n"
	if err := os.MkdirAll(c.Path("/etc/systemd/system/exitd.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path("/etc/systemd/system/exitd.service.d/zz-test-watchdog.conf"), []byte(dropin), 0o644); err != nil {
		t.Fatal(err)
	}
	n.exec("systemctl", "daemon-reload")
	n.exec("systemctl", "restart", "exitd.service") // resets NRestarts
	before := waitActive(ctx, t, c, "", 0, 30*time.Second)["MainPID"]
	have := dl.mark()
	t0 := time.Now()
	n.exec("systemctl", "kill", "--signal=SIGSTOP", "exitd.service")
	waitActive(ctx, t, c, before, 1, 60*time.Second)
	if r := n.exec("journalctl", "-u", "exitd", "--no-pager", "-n", "200"); !strings.Contains(r, "Failed with result 'watchdog'") {
		t.Errorf("restart was not the watchdog's:\n%s", r)
	}
	dl.waitBytes(t, have+4<<20, 30*time.Second)
	_, stall, _ := dl.state()
	t.Logf("watchdog: hung exitd restarted in %v; download stall %v (WatchdogSec=3s + TimeoutAbortSec=2s)", time.Since(t0).Round(time.Millisecond), stall.Round(time.Millisecond))
	os.Remove(c.Path("/etc/systemd/system/exitd.service.d/zz-test-watchdog.conf"))
	n.exec("systemctl", "daemon-reload")

	// Erase: stopped, disabled, no nftables table or TUN left, state kept.
	n.erase()
}
