// Package packaging holds exitd's package definition (nfpm.yaml, the
// systemd unit, sysusers, modules-load, firewalld, scriptlets, the default
// config) and these tests, which build the RPM and the .deb with the
// Makefile targets and inspect them.
package packaging

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"exitd/config"
	"exitd/internal/testenv"
)

const repo = ".."

// defaultConfigWith fills in the two values the shipped config leaves empty.
func defaultConfigWith(t *testing.T, endpoint, wan string) []byte {
	t.Helper()
	data, err := os.ReadFile("exitd.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, r := range [][2]string{{`public_endpoint = ""`, `public_endpoint = "` + endpoint + `"`}, {`interface = ""`, `interface = "` + wan + `"`}} {
		if strings.Count(s, r[0]) != 1 {
			t.Fatalf("packaging/exitd.toml: want exactly one %q line", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	return []byte(s)
}

func TestDefaultConfig(t *testing.T) {
	data, err := os.ReadFile("exitd.toml")
	if err != nil {
		t.Fatal(err)
	}
	// As shipped, the strict loader names what is missing.
	if _, err := config.Parse("/etc/exitd/exitd.toml", data); err == nil || !strings.Contains(err.Error(), "wan.interface") {
		t.Fatalf("shipped config: %v, want a wan.interface error", err)
	}
	c, err := config.Parse("/etc/exitd/exitd.toml", defaultConfigWith(t, "vpn.example.com:443", "eth0"))
	if err != nil {
		t.Fatalf("config with wan.interface and public_endpoint set: %v", err)
	}
	if c.Listen.Port != 443 || c.StateDir != "/var/lib/exitd" || c.Control.Socket != "/run/exitd/control.sock" ||
		c.Control.Group != "exitd" || c.Tunnel.Name != "exit0" || !c.Tunnel.Prefix4.IsValid() || !c.Tunnel.Prefix6.IsValid() {
		t.Fatalf("defaults: %+v", c)
	}
	// Every commented default is a real key with a valid value: uncomment
	// them all (except the snat examples, valid only with nat = "snat").
	var lines []string
	for _, l := range strings.Split(string(defaultConfigWith(t, "vpn.example.com:443", "eth0")), "\n") {
		if strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# ") && strings.Contains(l, " = ") && !strings.HasPrefix(l, "#snat_") {
			l = l[1:]
		}
		lines = append(lines, l)
	}
	if _, err := config.Parse("uncommented", []byte(strings.Join(lines, "\n"))); err != nil {
		t.Fatalf("a commented default is wrong: %v", err)
	}
}

// unitDirectives parses the unit into key → values (in order).
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile("exitd.service")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("unit line %q", l)
		}
		if strings.Contains(v, " #") {
			t.Fatalf("unit line %q: systemd has no inline comments", l)
		}
		out[k] = append(out[k], v)
	}
	return out
}

func TestUnitDirectives(t *testing.T) {
	d := unitDirectives(t)
	want := map[string]string{
		"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s", "Restart": "on-failure",
		"User": "exitd", "Group": "exitd", "StateDirectory": "exitd", "RuntimeDirectory": "exitd wireguard",
		"ExecStartPre": "+/usr/sbin/exitd tune apply", "ExecReload": "/bin/kill -HUP $MAINPID",
		"CapabilityBoundingSet": "CAP_NET_ADMIN CAP_NET_BIND_SERVICE", "AmbientCapabilities": "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"ProtectSystem": "strict", "ProtectKernelTunables": "yes", "DevicePolicy": "closed", "DeviceAllow": "/dev/net/tun rw",
		"FileDescriptorStoreMax": "16", "NoNewPrivileges": "yes", "MemoryDenyWriteExecute": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_NETLINK AF_UNIX", "EnvironmentFile": "-/etc/sysconfig/exitd",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%v, want %s", k, got, v)
		}
	}
	if got := d["ExecStopPost"]; len(got) != 1 || !strings.HasPrefix(got[0], "+/usr/sbin/exitd cleanup ") || !strings.Contains(got[0], "--unit exitd.service") {
		t.Errorf("ExecStopPost=%v", got)
	}
	if _, ok := d["ProcSubset"]; ok {
		t.Error("ProcSubset= hides /proc/sys, which the daemon reads")
	}
}

// verifyCopy writes the unit with its commands pointing at binaries that
// exist here, so `systemd-analyze verify` checks everything else.
func verifyCopy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("exitd.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "exitd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(dir, "exitd.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(data, []byte("/usr/sbin/exitd"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return unit
}

func TestUnitVerify(t *testing.T) {
	testenv.RequireTools(t, "systemd-analyze")
	out, err := exec.Command("systemd-analyze", "verify", verifyCopy(t)).CombinedOutput()
	// verify exits 0 on many errors: any output is a failure.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// Exposure parses `systemd-analyze security` output.
func exposure(t *testing.T, out []byte) float64 {
	t.Helper()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestUnitSecurityScore(t *testing.T) {
	testenv.RequireTools(t, "systemd-analyze")
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", "exitd.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score := exposure(t, out)
	t.Logf("systemd-analyze security --offline=yes: %.1f", score)
	if score > 2.0 {
		t.Fatalf("exposure %.1f > 2.0:\n%s", score, out)
	}
}

// built holds the packages of one build (version "test-1").
type built struct{ dir, rpm, deb string }

var (
	buildOnce  sync.Once
	buildBase  string // removed by TestMain, even after a failed build
	builds     [2]built
	buildError error
)

// buildTwice builds the packages twice into separate directories with the
// Makefile's targets (once per test binary).
func buildTwice(t *testing.T) [2]built {
	t.Helper()
	testenv.RequireTools(t, "make", "rpm", "dpkg-deb")
	buildOnce.Do(func() {
		base, err := os.MkdirTemp("", "exitd-packages-")
		if err != nil {
			buildError = err
			return
		}
		buildBase = base
		for i := range builds {
			dir := filepath.Join(base, strconv.Itoa(i))
			out, err := exec.Command("make", "-C", repo, "packages", "DIST="+dir, "VERSION=v1.0.0-test").CombinedOutput()
			if err != nil {
				buildError = &buildErr{err, out}
				return
			}
			rpms, _ := filepath.Glob(filepath.Join(dir, "*.rpm"))
			debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
			if len(rpms) != 1 || len(debs) != 1 {
				buildError = &buildErr{os.ErrNotExist, out}
				return
			}
			builds[i] = built{dir, rpms[0], debs[0]}
		}
	})
	if buildError != nil {
		t.Fatal(buildError)
	}
	return builds
}

type buildErr struct {
	err error
	out []byte
}

func (e *buildErr) Error() string { return "make packages: " + e.err.Error() + "\n" + string(e.out) }

func TestMain(m *testing.M) {
	code := m.Run()
	if buildBase != "" {
		os.RemoveAll(buildBase)
	}
	os.Exit(code)
}

// file is one packaged path's metadata.
type file struct{ mode, owner, group string }

// expected is every path in the packages with its mode, owner and group.
var expected = map[string]file{
	"/usr/sbin/exitd":                               {"-rwxr-xr-x", "root", "root"},
	"/usr/bin/exitctl":                              {"-rwxr-xr-x", "root", "root"},
	"/usr/lib/systemd/system/exitd.service":         {"-rw-r--r--", "root", "root"},
	"/usr/lib/sysusers.d/exitd.conf":                {"-rw-r--r--", "root", "root"},
	"/usr/lib/sysctl.d/60-exitd.conf":               {"-rw-r--r--", "root", "root"},
	"/usr/lib/modules-load.d/exitd.conf":            {"-rw-r--r--", "root", "root"},
	"/usr/lib/firewalld/services/exitd.xml":         {"-rw-r--r--", "root", "root"},
	"/usr/share/doc/exitd/packaging.md":             {"-rw-r--r--", "root", "root"},
	"/usr/share/exitd/grafana/exitd-dashboard.json": {"-rw-r--r--", "root", "root"},
	"/etc/exitd":            {"drwxr-x---", "root", "exitd"},
	"/etc/exitd/exitd.toml": {"-rw-r-----", "root", "exitd"},
	"/etc/sysconfig/exitd":  {"-rw-r--r--", "root", "root"},
	"/var/lib/exitd":        {"drwx------", "exitd", "exitd"},
}

// sources maps packaged files to the repository files they must equal.
var sources = map[string]string{
	"/usr/lib/systemd/system/exitd.service": "packaging/exitd.service",
	"/usr/lib/sysusers.d/exitd.conf":        "packaging/sysusers.conf",
	"/usr/lib/sysctl.d/60-exitd.conf":       "tuning/60-exitd.conf",
	"/usr/lib/modules-load.d/exitd.conf":    "packaging/modules-load.conf",
	"/usr/lib/firewalld/services/exitd.xml": "packaging/firewalld.xml",
	"/etc/exitd/exitd.toml":                 "packaging/exitd.toml",
	"/etc/sysconfig/exitd":                  "packaging/sysconfig",
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRPMContents(t *testing.T) {
	p := buildTwice(t)[0].rpm
	got := map[string]file{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, "rpm", "-qplv", p)), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 {
			t.Fatalf("rpm -qplv line %q", l)
		}
		got[f[len(f)-1]] = file{f[0], f[2], f[3]}
	}
	compareFiles(t, got)

	conf := strings.Fields(run(t, "rpm", "-qp", "--configfiles", p))
	if strings.Join(conf, " ") != "/etc/exitd/exitd.toml /etc/sysconfig/exitd" {
		t.Errorf("config files %v", conf)
	}
	// config|noreplace: %config(noreplace) is flag bits "c" and "n".
	flags := run(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", p)
	for _, f := range []string{"/etc/exitd/exitd.toml cn", "/etc/sysconfig/exitd cn"} {
		if !strings.Contains(flags, f+"\n") {
			t.Errorf("%q not %%config(noreplace):\n%s", f, flags)
		}
	}
	scripts := run(t, "rpm", "-qp", "--scripts", p)
	for _, s := range []string{
		"preinstall scriptlet", "postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet",
		"systemd-sysusers", "systemctl --no-reload preset exitd.service", "systemctl --no-reload disable --now exitd.service",
		"systemctl try-restart exitd.service", "firewall-cmd --reload", "[ -d /run/systemd/system ]",
	} {
		if !strings.Contains(scripts, s) {
			t.Errorf("scriptlets lack %q", s)
		}
	}
	if req := run(t, "rpm", "-qpR", p); !regexp.MustCompile(`(?m)^systemd\s*$`).MatchString(req) {
		t.Errorf("Requires:\n%s", req)
	}
	if rec := run(t, "rpm", "-qp", "--recommends", p); !strings.Contains(rec, "firewalld") {
		t.Errorf("Recommends: %s", rec)
	}
	info := run(t, "rpm", "-qpi", p)
	for _, s := range []string{"Name        : exitd", "Version     : 1.0.0+test", "Release     : 1", "Architecture: x86_64", "Build Host  : exitd-build"} {
		if !strings.Contains(info, s) {
			t.Errorf("rpm -qpi lacks %q:\n%s", s, info)
		}
	}
	if cl := run(t, "rpm", "-qp", "--changelog", p); !strings.Contains(cl, "exitd maintainers") {
		t.Errorf("no changelog: %q", cl)
	}
}

func compareFiles(t *testing.T, got map[string]file) {
	t.Helper()
	for path, want := range expected {
		if g, ok := got[path]; !ok {
			t.Errorf("%s missing", path)
		} else if g != want {
			t.Errorf("%s: %v, want %v", path, g, want)
		}
	}
	for path := range got {
		if _, ok := expected[path]; !ok {
			t.Errorf("unexpected %s", path)
		}
	}
}

func TestDebContents(t *testing.T) {
	p := buildTwice(t)[0].deb
	got := map[string]file{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", p)), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", l)
		}
		owner, group, _ := strings.Cut(f[1], "/")
		path := strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")
		if path == "" || strings.Count(path, "/") < 2 && f[0][0] == 'd' && expected[path].mode == "" {
			continue // parent directories (/etc, /usr, ...) the deb lists
		}
		if _, ok := expected[path]; !ok && f[0][0] == 'd' {
			continue
		}
		got[path] = file{f[0], owner, group}
	}
	// nfpm writes the changelog as Debian's changelog.Debian.gz.
	if cl := got["/usr/share/doc/exitd/changelog.Debian.gz"]; cl.mode != "-rw-r--r--" {
		t.Errorf("changelog.Debian.gz: %v", cl)
	}
	delete(got, "/usr/share/doc/exitd/changelog.Debian.gz")
	compareFiles(t, got)
	control := run(t, "dpkg-deb", "-f", p)
	for _, s := range []string{"Package: exitd", "Version: 1.0.0+test-1", "Architecture: amd64", "Depends: systemd", "Recommends: firewalld"} {
		if !strings.Contains(control, s) {
			t.Errorf("control lacks %q:\n%s", s, control)
		}
	}
	dir := t.TempDir()
	run(t, "dpkg-deb", "-e", p, dir)
	conffiles, err := os.ReadFile(filepath.Join(dir, "conffiles"))
	if err != nil || strings.Join(strings.Fields(string(conffiles)), " ") != "/etc/exitd/exitd.toml /etc/sysconfig/exitd" {
		t.Errorf("conffiles %q %v", conffiles, err)
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if st, err := os.Stat(filepath.Join(dir, s)); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("maintainer script %s: %v", s, err)
		}
	}
	// The installed files are byte for byte the repository's.
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", p, root)
	for dst, src := range sources {
		a, err1 := os.ReadFile(filepath.Join(root, dst))
		b, err2 := os.ReadFile(filepath.Join(repo, src))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (%v %v)", dst, src, err1, err2)
		}
	}
	checkBinary(t, filepath.Join(root, "usr/sbin/exitd"))
	checkBinary(t, filepath.Join(root, "usr/bin/exitctl"))
	if out := run(t, filepath.Join(root, "usr/sbin/exitd"), "version"); !strings.HasPrefix(out, "exitd v1.0.0-test ") {
		t.Errorf("exitd version: %q", out)
	}
}

// checkBinary: a position-independent executable without shared libraries.
func checkBinary(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Type != elf.ET_DYN {
		t.Errorf("%s: ELF type %v, want a PIE (ET_DYN)", path, f.Type)
	}
	if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
		t.Errorf("%s links shared libraries %v", path, libs)
	}
	if f.Section(".note.go.buildid") != nil {
		if data, _ := f.Section(".note.go.buildid").Data(); len(bytes.Trim(data[16:], "\x00")) > 0 {
			t.Errorf("%s has a Go build ID (want -buildid= for reproducibility)", path)
		}
	}
}

func TestReproducible(t *testing.T) {
	b := buildTwice(t)
	for _, pair := range [][2]string{{b[0].rpm, b[1].rpm}, {b[0].deb, b[1].deb}} {
		x, err1 := os.ReadFile(pair[0])
		y, err2 := os.ReadFile(pair[1])
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s and %s differ: the build is not reproducible", pair[0], pair[1])
		}
	}
}

func TestRPMLint(t *testing.T) {
	testenv.RequireTools(t, "rpmlint", "cpio")
	p := buildTwice(t)[0].rpm
	if os.Geteuid() == 0 {
		// rpmlint as root unpacks nfpm's absolute cpio names into /: the
		// shim must win, and nothing may appear in the real /.
		testenv.RequireRoot(t)
	}
	guard, err := filepath.Abs("tools")
	if err != nil {
		t.Fatal(err)
	}
	before := hostPaths()
	cmd := exec.Command("rpmlint", "-r", "rpmlintrc", p)
	cmd.Dir = "."
	cmd.Env = append(os.Environ(), "PATH="+guard+":"+os.Getenv("PATH"))
	out, _ := cmd.CombinedOutput() // rpmlint exits non-zero on findings; the text decides
	if after := hostPaths(); after != before {
		t.Fatalf("rpmlint wrote into /: %s", after)
	}
	if !regexp.MustCompile(`\b0 errors, 0 warnings\b`).Match(out) {
		t.Fatalf("rpmlint findings beyond packaging/rpmlintrc:\n%s", out)
	}
	t.Logf("rpmlint: %s", lastLine(out))
}

// hostPaths reports which of the package's paths exist in the real /.
func hostPaths() string {
	var have []string
	for p := range expected {
		if _, err := os.Lstat(p); err == nil {
			have = append(have, p)
		}
	}
	return strings.Join(have, " ")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
