package sched

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

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
