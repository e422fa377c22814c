package dns

import (
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayering: dns imports only github.com/miekg/dns and the standard
// library (doc.go); in particular no other exitd package.
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(imp, "/")
		if imp != "github.com/miekg/dns" && strings.Contains(first, ".") || first == "exitd" {
			t.Errorf("dns imports %s", imp)
		}
	}
}

func TestGofmt(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := format.Source(src); err != nil || string(out) != string(src) {
			t.Errorf("%s is not gofmt-clean", f)
		}
	}
}
