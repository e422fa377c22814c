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

// buildDebs builds two .deb versions (for the upgrade) with `make deb`.
func buildDebs(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, v := range []string{"1", "2"} {
		out, err := exec.Command("make", "-C", "../..", "deb", "DIST="+filepath.Join(dir, "v"+v), "VERSION=v1.0."+v+"-e2e").CombinedOutput()
		if err != nil {
			t.Fatalf("make deb: %v\n%s", err, out)
		}
		debs, _ := filepath.Glob(filepath.Join(dir, "v"+v, "*.deb"))
		if len(debs) != 1 {
			t.Fatalf("make deb made %v", debs)
		}
		if err := os.Rename(debs[0], filepath.Join(dir, "v"+v, "exitd.deb")); err != nil {
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

func TestPackagedExitdUnderSystemd(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "systemd-nspawn", "debootstrap", "nsenter", "make", "wireguard-go", "wg", "dpkg-deb")
	ctx := context.Background()
	root, err := EnsureRoot(ctx, DefaultCache, DefaultSpec, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	debs := buildDebs(t)

	lab := netlab.NewT(t, netlab.Options{Members: 1, DownRate: 40_000_000})
	web, err := lab.Internet.ServeHTTP(ctx, netip.MustParseAddrPort(netlab.Internet4+":8080"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Close() })
	start := time.Now()
	c, err := Boot(ctx, Options{Root: root, NetNS: "/run/netns/" + lab.Exit.Name, BindRO: []string{debs + ":/pkgs"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("container close: %v", err)
		}
	})
	t.Logf("container booted in %v", time.Since(start).Round(time.Millisecond))
	exec := func(name string, args ...string) string {
		t.Helper()
		out, err := c.Exec(ctx, name, args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}

	// Install, configure, enable --now.
	exec("dpkg", "-i", "/pkgs/v1/exitd.deb")
	if got := exec("stat", "-c", "%a %U %G", "/etc/exitd", "/etc/exitd/exitd.toml", "/var/lib/exitd"); got != "750 root exitd\n640 root exitd\n700 exitd exitd\n" {
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
	start = time.Now()
	if _, err := c.Exec(ctx, "systemctl", "enable", "--now", "exitd.service"); err != nil {
		j, _ := c.Exec(ctx, "journalctl", "-u", "exitd", "--no-pager", "-n", "80")
		t.Fatalf("%v\n%s", err, j)
	}
	p := waitActive(ctx, t, c, "", 0, 30*time.Second)
	t.Logf("enable --now: active in %v; status %q", time.Since(start).Round(time.Millisecond), p["StatusText"])
	if p := unit(ctx, t, c, "Type", "User", "WatchdogUSec"); p["Type"] != "notify" || p["User"] != "exitd" || p["WatchdogUSec"] != "30s" {
		t.Fatalf("unit: %v", p)
	}
	if out := exec("systemd-analyze", "verify", "/usr/lib/systemd/system/exitd.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify in the container:\n%s", out)
	}
	sec := exec("systemd-analyze", "security", "--no-pager", "exitd.service")
	if m := regexp.MustCompile(`Overall exposure level for exitd.service: ([0-9.]+)`).FindStringSubmatch(sec); m == nil {
		t.Errorf("no exposure level:\n%s", sec)
	} else if v, _ := strconv.ParseFloat(m[1], 64); v > 2.0 {
		t.Errorf("running unit's exposure %s > 2.0", m[1])
	} else {
		t.Logf("systemd-analyze security (running unit): %s", m[1])
	}
	if got := exec("stat", "-c", "%a %U %G", "/run/exitd", "/run/exitd/control.sock"); got != "750 exitd exitd\n660 exitd exitd\n" {
		t.Errorf("control socket: %s", got)
	}
	if out := exec("wg", "show", "exit0", "listen-port"); strings.TrimSpace(out) != "443" {
		t.Errorf("wg show exit0: %q", out)
	}

	// A member with a long download through the node.
	out := exec("exitctl", "member", "add", "--label", "m1")
	m := &harness.Member{NS: lab.Members[0], Label: "m1", Dev: harness.RandomName("wg"), Config: out}
	if err := m.Up(ctx, "", filepath.Join(t.TempDir(), "m1.conf")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Down() })
	dctx, stopDownload := context.WithCancel(ctx)
	defer stopDownload()
	dl := startDownload(dctx, t, lab.Members[0], fmt.Sprintf("http://%s:8080/bytes?n=%d", netlab.Internet4, int64(1)<<40))
	dl.waitBytes(t, 8<<20, 30*time.Second)
	// The node persists endpoints every 2 s; a crash right after a member
	// connects would find none.
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
		_, err := os.Stat(c.Path("/var/lib/exitd/endpoints.json"))
		return err == nil
	}); err != nil {
		t.Fatal("endpoints.json never written")
	}

	events := []struct {
		name string
		do   func()
		same bool // the process stays (reload)
	}{
		{"reload", func() { exec("systemctl", "reload", "exitd.service") }, true},
		{"restart", func() { exec("systemctl", "restart", "exitd.service") }, false},
		{"kill -9", func() { exec("systemctl", "kill", "--signal=SIGKILL", "exitd.service") }, false},
		{"upgrade", func() { exec("dpkg", "-i", "/pkgs/v2/exitd.deb") }, false},
	}
	for _, ev := range events {
		before := unit(ctx, t, c, "MainPID")["MainPID"]
		have := dl.mark()
		t0 := time.Now()
		ev.do()
		notPID := before
		if ev.same {
			notPID = ""
		}
		p := waitActive(ctx, t, c, notPID, 0, 30*time.Second)
		back := time.Since(t0)
		if ev.same && p["MainPID"] != before {
			t.Errorf("%s replaced the process", ev.name)
		}
		dl.waitBytes(t, have+8<<20, 30*time.Second)
		_, stall, err := dl.state()
		t.Logf("%s: active again after %v; longest download stall %v; status %q", ev.name, back.Round(time.Millisecond), stall.Round(time.Millisecond), p["StatusText"])
		if err != nil {
			t.Fatalf("%s: the member's download broke: %v", ev.name, err)
		}
		if stall > maxStall {
			j, _ := c.Exec(ctx, "journalctl", "-u", "exitd", "--no-pager", "-n", "40")
			t.Errorf("%s: download stalled %v > %v\n%s", ev.name, stall, maxStall, j)
		}
	}
	if v := exec("/usr/sbin/exitd", "version"); !strings.Contains(v, "v1.0.2-e2e") {
		t.Errorf("after upgrade: %s", v)
	}
	if j := exec("journalctl", "-u", "exitd", "--no-pager"); !strings.Contains(j, "adopted the previous process's devices") {
		t.Errorf("no adoption in the journal:\n%s", j)
	}

	// A hung data path: no watchdog pings, systemd restarts the service.
	dropin := "[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n"
	if err := os.MkdirAll(c.Path("/etc/systemd/system/exitd.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path("/etc/systemd/system/exitd.service.d/zz-test-watchdog.conf"), []byte(dropin), 0o644); err != nil {
		t.Fatal(err)
	}
	exec("systemctl", "daemon-reload")
	exec("systemctl", "restart", "exitd.service") // resets NRestarts
	before := waitActive(ctx, t, c, "", 0, 30*time.Second)["MainPID"]
	have := dl.mark()
	t0 := time.Now()
	exec("systemctl", "kill", "--signal=SIGSTOP", "exitd.service")
	waitActive(ctx, t, c, before, 1, 60*time.Second)
	if r := exec("journalctl", "-u", "exitd", "--no-pager", "-n", "200"); !strings.Contains(r, "Failed with result 'watchdog'") {
		t.Errorf("restart was not the watchdog's:\n%s", r)
	}
	dl.waitBytes(t, have+4<<20, 30*time.Second)
	_, stall, _ := dl.state()
	t.Logf("watchdog: hung exitd restarted in %v; download stall %v (WatchdogSec=3s + TimeoutAbortSec=2s)", time.Since(t0).Round(time.Millisecond), stall.Round(time.Millisecond))
	os.Remove(c.Path("/etc/systemd/system/exitd.service.d/zz-test-watchdog.conf"))
	exec("systemctl", "daemon-reload")

	// Erase: stopped, disabled, and no nftables table or TUN left.
	stopDownload()
	exec("dpkg", "--purge", "exitd")
	if p := unit(ctx, t, c, "ActiveState", "LoadState"); p["ActiveState"] == "active" {
		t.Errorf("after erase: %v", p)
	}
	tables, err := lab.Exit.Exec(ctx, "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(tables), "exitd") {
		t.Errorf("nftables table left after erase:\n%s", tables)
	}
	if out, err := lab.Exit.Exec(ctx, "ip", "link", "show", "exit0"); err == nil {
		t.Errorf("TUN left after erase:\n%s", out)
	}
}
