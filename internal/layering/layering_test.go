package layering

import (
	"bufio"
	"bytes"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pkg is one package as `go list` shows it.
type pkg struct {
	path     string
	dir      string
	imports  []string // exitd packages only
	external []string // imports outside exitd and the standard library
}

// listPackages returns every package of the module with its direct exitd
// imports (production code; tests may use more).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{.Dir}} {{join .Imports " "}}`, "exitd/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var ps []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		p := pkg{path: f[0], dir: f[1]}
		for _, imp := range f[2:] {
			switch first, _, _ := strings.Cut(imp, "/"); {
			case imp == "exitd" || strings.HasPrefix(imp, "exitd/"):
				p.imports = append(p.imports, imp)
			case strings.Contains(first, "."):
				p.external = append(p.external, imp)
			}
		}
		ps = append(ps, p)
	}
	if len(ps) < 10 {
		t.Fatalf("go list found only %d packages", len(ps))
	}
	return ps
}

// rule forbids packages matching from to import packages matching to.
type rule struct {
	why      string
	from, to func(string) bool
}

func is(names ...string) func(string) bool {
	return func(p string) bool { return slices.Contains(names, p) }
}

func under(prefix string) func(string) bool {
	return func(p string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
}

func not(f func(string) bool) func(string) bool { return func(p string) bool { return !f(p) } }

func any(fs ...func(string) bool) func(string) bool {
	return func(p string) bool {
		for _, f := range fs {
			if f(p) {
				return true
			}
		}
		return false
	}
}

var anything = func(string) bool { return true }

// lab is code that only tests, the demo and benchmarks may use.
var lab = any(under("exitd/internal/netlab"), under("exitd/internal/harness"), under("exitd/internal/e2e"), under("exitd/internal/nspawn"), under("exitd/internal/testenv"),
	is("exitd/members/storetest"))

// production is code that ships in exitd and exitctl.
var production = not(any(under("exitd/internal"), is("exitd/cmd/exitlab")))

// leaves are the parts the node composes; they know nothing of it.
var leaves = is("exitd/sched", "exitd/nat", "exitd/tuning", "exitd/members", "exitd/members/etcdstore", "exitd/keys", "exitd/config",
	"exitd/control", "exitd/metrics", "exitd/report", "exitd/service", "exitd/tunnel", "exitd/units",
	"exitd/socks", "exitd/dns", "exitd/observability", "exitd/bounds")

func rules() []rule {
	return []rule{
		{"the scheduler knows nothing of the rest of exitd but the shared bounds", is("exitd/sched"), not(is("exitd/bounds"))},
		{"tuning, keys, units, socks, dns and portforward import no other exitd package",
			is("exitd/tuning", "exitd/keys", "exitd/units", "exitd/socks", "exitd/dns", "exitd/bounds", "exitd/portforward"), under("exitd")},
		{"nat imports no other exitd package but the shared bounds", is("exitd/nat"),
			func(p string) bool { return under("exitd")(p) && p != "exitd/bounds" }},
		{"members knows only keys and the shared bounds", is("exitd/members"), not(is("exitd/keys", "exitd/bounds"))},
		{"the etcd store knows only members and keys", is("exitd/members/etcdstore"), not(is("exitd/members", "exitd/keys"))},
		{"leaves do not import the node or the data plane", leaves, is("exitd/node", "exitd/dataplane")},
		{"nothing imports a command", anything, under("exitd/cmd")},
		{"production code does not import lab code", production, lab},
		{"node composes; sched and tunnel meet only in dataplane", is("exitd/node"), is("exitd/sched", "exitd/tunnel")},
		{"sched and tunnel meet only in dataplane", not(is("exitd/dataplane")), is("exitd/sched")},
	}
}

func TestLayering(t *testing.T) {
	ps := listPackages(t)
	for _, r := range rules() {
		for _, p := range ps {
			if !r.from(p.path) {
				continue
			}
			for _, imp := range p.imports {
				if r.to(imp) {
					t.Errorf("%s imports %s: %s", p.path, imp, r.why)
				}
			}
		}
	}
	// tunnel importers: dataplane, its own tests' helpers and the cleanup
	// command (which deletes a leftover TUN) only.
	for _, p := range ps {
		if slices.Contains(p.imports, "exitd/tunnel") && !is("exitd/dataplane", "exitd/cmd/exitd")(p.path) && production(p.path) {
			t.Errorf("%s imports exitd/tunnel: only dataplane drives the tunnel", p.path)
		}
	}
}

// TestRulesCatchViolations: each rule rejects an import it exists for, so
// the table cannot silently pass everything.
func TestRulesCatchViolations(t *testing.T) {
	bad := map[string][2]string{
		"the scheduler knows nothing of the rest of exitd but the shared bounds":        {"exitd/sched", "exitd/members"},
		"leaves do not import the node or the data plane":                               {"exitd/nat", "exitd/node"},
		"nothing imports a command":                                                     {"exitd/node", "exitd/cmd/exitd"},
		"production code does not import lab code":                                      {"exitd/node", "exitd/internal/netlab"},
		"node composes; sched and tunnel meet only in dataplane":                        {"exitd/node", "exitd/tunnel"},
		"sched and tunnel meet only in dataplane":                                       {"exitd/metrics", "exitd/sched"},
		"members knows only keys and the shared bounds":                                 {"exitd/members", "exitd/config"},
		"the etcd store knows only members and keys":                                    {"exitd/members/etcdstore", "exitd/node"},
		"tuning, keys, units, socks, dns and portforward import no other exitd package": {"exitd/socks", "exitd/nat"},
		"nat imports no other exitd package but the shared bounds":                      {"exitd/nat", "exitd/members"},
	}
	for _, r := range rules() {
		pair, ok := bad[r.why]
		if !ok {
			t.Errorf("rule %q has no violation case", r.why)
			continue
		}
		if !r.from(pair[0]) || !r.to(pair[1]) {
			t.Errorf("rule %q lets %s import %s", r.why, pair[0], pair[1])
		}
	}
	if !production("exitd/node") || production("exitd/cmd/exitlab") || production("exitd/internal/harness") {
		t.Error("production classifies wrongly")
	}
}

// externalAllowed lists, for the packages whose doc comment promises it,
// every module-path import their production code may have (beyond the
// standard library).
func externalAllowed() map[string][]string {
	return map[string][]string{
		"exitd/sched":       {"golang.zx2c4.com/wireguard/tun", "golang.zx2c4.com/wireguard/conn"},
		"exitd/tuning":      nil,
		"exitd/units":       nil,
		"exitd/portforward": nil,
		"exitd/socks":       {"golang.org/x/sys/unix"},
		"exitd/dns":         {"github.com/miekg/dns", "golang.org/x/sys/unix"},
		// The member registry and its embedded store; the etcd client stays
		// out of it, in the cluster store below.
		"exitd/members": {"go.etcd.io/bbolt"},
		"exitd/members/etcdstore": {
			"go.etcd.io/etcd/client/v3", "go.etcd.io/etcd/api/v3/v3rpc/rpctypes",
			"go.uber.org/zap", "go.uber.org/zap/zapcore", // the client's logger, bridged to slog
			"google.golang.org/grpc", "google.golang.org/grpc/backoff", "google.golang.org/grpc/codes", "google.golang.org/grpc/status",
			"go.etcd.io/bbolt", // the local cache
		},
	}
}

func TestExternalImports(t *testing.T) {
	allowed := externalAllowed()
	for _, p := range listPackages(t) {
		ok, checked := allowed[p.path]
		if !checked {
			continue
		}
		for _, imp := range p.external {
			if !slices.Contains(ok, imp) {
				t.Errorf("%s imports %s: it promises only %v beyond the standard library", p.path, imp, ok)
			}
		}
	}
}

// TestGofmt: every Go file of the module, tests included, is gofmt-clean.
func TestGofmt(t *testing.T) {
	n := 0
	for _, p := range listPackages(t) {
		files, _ := filepath.Glob(filepath.Join(p.dir, "*.go"))
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := format.Source(src)
			if err != nil || !bytes.Equal(out, src) {
				t.Errorf("%s is not gofmt-clean (run make fmt): %v", f, err)
			}
			n++
		}
	}
	if n < 100 {
		t.Fatalf("checked only %d files", n)
	}
}
