package tuning

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nfpmSource finds the src of the contents entry whose dst is dst in an
// nfpm.yaml. A line scanner, not a YAML parser: tuning stays stdlib-only and
// the entry shape ("- src: …" / "dst: …" in one list item) is fixed.
func nfpmSource(t *testing.T, yaml []byte, dst string) string {
	t.Helper()
	var src, itemDst string
	flush := func() string {
		if itemDst == dst {
			return src
		}
		src, itemDst = "", ""
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(yaml))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "- ") {
			if s := flush(); s != "" {
				return s
			}
			line = strings.TrimSpace(line[2:])
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		switch strings.TrimSpace(k) {
		case "src":
			src = v
		case "dst":
			itemDst = v
		}
	}
	return flush()
}

// The embedded profile and the file the package installs are one file.
func TestBundledMatchesPackage(t *testing.T) {
	yaml, err := os.ReadFile("../packaging/nfpm.yaml")
	if err != nil {
		t.Fatalf("packaging must install the profile: %v", err)
	}
	src := nfpmSource(t, yaml, BundledPath)
	if src == "" {
		t.Fatalf("packaging/nfpm.yaml has no contents entry with dst %s", BundledPath)
	}
	installed, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(src)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(installed, BundledBytes()) {
		t.Fatalf("%s (installed as %s) differs from the embedded profile", src, BundledPath)
	}
}

func TestNfpmSource(t *testing.T) {
	yaml := []byte(`name: x
contents:
  - src: a
    dst: /a
  - dst: "/usr/lib/sysctl.d/60-exitd.conf"
    src: 'tuning/60-exitd.conf'
  - src: c
    dst: /c
`)
	if got := nfpmSource(t, yaml, BundledPath); got != "tuning/60-exitd.conf" {
		t.Fatalf("got %q", got)
	}
	if got := nfpmSource(t, yaml, "/nope"); got != "" {
		t.Fatalf("got %q for a missing dst", got)
	}
}

func TestBundledProfile(t *testing.T) {
	p, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Duplicates) != 0 {
		t.Errorf("duplicates: %+v", p.Duplicates)
	}
	if fs := Lint(p); len(fs) != 0 {
		t.Errorf("the bundled profile must lint clean: %+v", fs)
	}
	settings := p.Settings()
	if settings[0].Key != KeyIPForward {
		t.Errorf("first key = %s, want %s (forwarding first)", settings[0].Key, KeyIPForward)
	}
	for _, e := range settings {
		if len(e.Comment) < 20 {
			t.Errorf("%s (line %d) has no reason comment above it: %q", e.Key, e.Pos.Line, e.Comment)
		}
		// Kernel tests apply this profile inside a throwaway netns: only
		// net.* keys are namespaced, so nothing else may appear here.
		if !strings.HasPrefix(e.Key, "net.") {
			t.Errorf("%s is not a net.* key", e.Key)
		}
		if e.Key == KeyConntrackMax || e.Key == KeyBuckets {
			t.Errorf("%s must be sized by WithConntrack, not fixed in the file", e.Key)
		}
		if isConntrackKey(e.Key) && !e.IgnoreErrors {
			t.Errorf("%s needs a '-': nf_conntrack may not be loaded", e.Key)
		}
	}
	for _, k := range CriticalKeys() {
		if _, ok := p.Lookup(k); !ok && k != KeyConntrackMax {
			t.Errorf("critical key %s missing from the profile", k)
		}
	}
	for key, want := range map[string]string{
		KeyIPForward:                                         "1",
		KeyIPv6Forward:                                       "1",
		"net.ipv4.conf.all.rp_filter":                        "1",
		"net.ipv4.tcp_syncookies":                            "1",
		"net.core.netdev_max_backlog":                        "8192",
		"net.core.netdev_budget":                             "600",
		"net.core.rmem_max":                                  "33554432",
		"net.core.wmem_max":                                  "33554432",
		"net.ipv4.tcp_mtu_probing":                           "1",
		"net.netfilter.nf_conntrack_tcp_timeout_established": "86400",
	} {
		if e, ok := p.Lookup(key); !ok || e.Value != want {
			t.Errorf("%s = %q, want %q", key, e.Value, want)
		}
	}
	b := BundledBytes()
	b[0] = 'X'
	if BundledBytes()[0] == 'X' {
		t.Error("BundledBytes must return a copy")
	}
}
