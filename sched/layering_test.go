package sched

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sched may import only the standard library and wireguard-go's tun and
// conn packages (ARCHITECTURE.md); tests may add tuntest and bindtest.
func TestImportsLayering(t *testing.T) {
	allowed := map[string]bool{
		"golang.zx2c4.com/wireguard/tun":           true,
		"golang.zx2c4.com/wireguard/conn":          true,
		"golang.zx2c4.com/wireguard/tun/tuntest":   true,
		"golang.zx2c4.com/wireguard/conn/bindtest": true,
	}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			std := !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
			if std {
				continue
			}
			if !allowed[path] || (!strings.HasSuffix(f, "_test.go") && strings.HasSuffix(path, "test")) {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}

// Source must be gofmt-clean.
func TestGofmt(t *testing.T) {
	gofmt, err := exec.LookPath("gofmt")
	if err != nil {
		if gr := os.Getenv("GOROOT"); gr != "" {
			gofmt = filepath.Join(gr, "bin", "gofmt")
		} else {
			t.Skip("gofmt not in PATH")
		}
	}
	out, err := exec.Command(gofmt, "-l", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("gofmt: %v\n%s", err, out)
	}
	if len(out) > 0 {
		t.Fatalf("files need gofmt:\n%s", out)
	}
}
