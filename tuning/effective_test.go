package tuning

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// writeTree creates files (target-system path → content) under a temp root;
// a content starting with "->" makes a symlink to the rest.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if len(content) > 2 && content[:2] == "->" {
			err = os.Symlink(content[2:], full)
		} else {
			err = os.WriteFile(full, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveEffective(t *testing.T) {
	root := writeTree(t, map[string]string{
		"/usr/lib/sysctl.d/50-default.conf":     "net.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\nkernel.sysrq = 16\n",
		"/usr/lib/sysctl.d/60-exitd.conf":       string(BundledBytes()),
		"/etc/sysctl.d/99-hardening.conf":       "# STIG\nnet.ipv4.ip_forward = 0\n",
		"/usr/lib/sysctl.d/10-shadowed.conf":    "kernel.shadowed = usr\n",
		"/etc/sysctl.d/10-shadowed.conf":        "kernel.shadowed = etc\n",
		"/run/sysctl.d/10-shadowed.conf":        "kernel.shadowed = run\n",
		"/usr/lib/sysctl.d/70-masked.conf":      "net.ipv4.tcp_syncookies = 0\n",
		"/etc/sysctl.d/70-masked.conf":          "->/dev/null",
		"/usr/local/lib/sysctl.d/80-local.conf": "kernel.local = 1\nbroken line\n",
		"/lib/sysctl.d/05-lib.conf":             "kernel.sysrq = 1\n",
		"/usr/lib/sysctl.d/README":              "net.ipv4.ip_forward = 0\n",
		"/etc/sysctl.conf":                      "kernel.sysrq = 0\n",
		"/etc/sysctl.d/dir.conf/x":              "ignored",
	})
	eff, err := ResolveEffective(root)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{
		"/lib/sysctl.d/05-lib.conf",
		"/etc/sysctl.d/10-shadowed.conf",
		"/usr/lib/sysctl.d/50-default.conf",
		"/usr/lib/sysctl.d/60-exitd.conf",
		"/usr/local/lib/sysctl.d/80-local.conf",
		"/etc/sysctl.d/99-hardening.conf",
		"/etc/sysctl.conf",
	}
	if !reflect.DeepEqual(eff.Files, wantFiles) {
		t.Fatalf("files:\n%v\nwant\n%v", eff.Files, wantFiles)
	}
	if !reflect.DeepEqual(eff.Masked, []string{"/etc/sysctl.d/70-masked.conf"}) {
		t.Errorf("masked = %v", eff.Masked)
	}
	if len(eff.Problems) != 1 {
		t.Errorf("problems = %v, want the broken line", eff.Problems)
	}
	tests := []struct{ key, value, file string }{
		{KeyIPForward, "0", "/etc/sysctl.d/99-hardening.conf"}, // the later file wins
		{"kernel.shadowed", "etc", "/etc/sysctl.d/10-shadowed.conf"},
		{"kernel.sysrq", "0", "/etc/sysctl.conf"},                           // sysctl.conf last
		{"net.ipv4.tcp_syncookies", "1", "/usr/lib/sysctl.d/60-exitd.conf"}, // masked file ignored
		{"net.ipv4.conf.default.rp_filter", "1", "/usr/lib/sysctl.d/60-exitd.conf"},
		{"net.ipv4.conf.all.rp_filter", "1", "/usr/lib/sysctl.d/60-exitd.conf"},    // explicit beats glob
		{"net.ipv4.conf.eth0.rp_filter", "2", "/usr/lib/sysctl.d/50-default.conf"}, // only the glob
	}
	for _, tt := range tests {
		s, ok := eff.Lookup(tt.key)
		if !ok || s.Value != tt.value || s.Pos.File != tt.file {
			t.Errorf("%s = %q from %s, want %q from %s", tt.key, s.Value, s.Pos, tt.value, tt.file)
		}
	}
	if _, ok := eff.Lookup("kernel.nope"); ok {
		t.Error("Lookup of an unset key")
	}
	fwd, _ := eff.Lookup(KeyIPForward)
	if len(fwd.Overridden) != 1 || fwd.Overridden[0].Pos.File != "/usr/lib/sysctl.d/60-exitd.conf" {
		t.Errorf("ip_forward overrides = %+v", fwd.Overridden)
	}
	sysrq, _ := eff.Lookup("kernel.sysrq")
	if len(sysrq.Overridden) != 2 {
		t.Errorf("sysrq overrides = %+v", sysrq.Overridden)
	}

	p, _ := Bundled()
	conflicts := eff.Against(p)
	if len(conflicts) != 1 {
		t.Fatalf("conflicts = %+v, want only ip_forward", conflicts)
	}
	c := conflicts[0]
	if c.Key != KeyIPForward || c.Value != "0" || !c.Critical || c.Safe || c.Unset || !c.Fights() || c.Pos.Line != 2 {
		t.Errorf("conflict = %+v", c)
	}
}

// Debian and RHEL link /etc/sysctl.d/99-sysctl.conf to ../sysctl.conf: it
// is read once, in that position.
func TestResolveEffectiveSysctlConfLink(t *testing.T) {
	root := writeTree(t, map[string]string{
		"/etc/sysctl.d/99-sysctl.conf": "->../sysctl.conf",
		"/etc/sysctl.conf":             "net.ipv4.ip_forward = 1\n",
		"/etc/sysctl.d/99-zz.conf":     "net.ipv4.ip_forward = 0\n",
	})
	eff, err := ResolveEffective(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/etc/sysctl.d/99-sysctl.conf", "/etc/sysctl.d/99-zz.conf"}; !reflect.DeepEqual(eff.Files, want) {
		t.Fatalf("files = %v, want %v", eff.Files, want)
	}
	if s, _ := eff.Lookup(KeyIPForward); s.Value != "0" {
		t.Errorf("ip_forward = %+v", s)
	}
}

func TestResolveEffectiveEmptyAndMissing(t *testing.T) {
	eff, err := ResolveEffective(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(eff.Files) != 0 || len(eff.Settings) != 0 || len(eff.Problems) != 0 {
		t.Fatalf("empty root: %+v", eff)
	}
	p, _ := Bundled()
	conflicts := eff.Against(p)
	if len(conflicts) != len(p.Settings()) {
		t.Fatalf("every key is unset: %d conflicts", len(conflicts))
	}
	for _, c := range conflicts {
		if !c.Unset || c.Fights() {
			t.Fatalf("unset key must not count as a fight: %+v", c)
		}
	}
	if _, err := ResolveEffective(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("a missing root must fail")
	}
}

func TestKeyMatches(t *testing.T) {
	for _, tt := range []struct {
		pat, key string
		want     bool
	}{
		{"net.ipv4.conf.*.rp_filter", "net.ipv4.conf.all.rp_filter", true},
		{"net.ipv4.conf.*.rp_filter", "net.ipv4.conf.eth0/100.rp_filter", true},
		{"net.ipv4.conf.*.rp_filter", "net.ipv4.conf.rp_filter", false},
		{"net.ipv4.ip_forward", "net.ipv4.ip_forward", true},
		{"net.ipv4.ip_forward", "net.ipv6.ip_forward", false},
	} {
		if got := keyMatches(tt.pat, tt.key); got != tt.want {
			t.Errorf("keyMatches(%s, %s) = %v", tt.pat, tt.key, got)
		}
	}
}
