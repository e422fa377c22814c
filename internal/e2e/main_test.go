package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"exitd/internal/harness"
)

// bins are built once per test binary from the working tree.
var bins harness.Binaries

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "exitd-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins = harness.Binaries{Exitd: filepath.Join(dir, "exitd"), Exitctl: filepath.Join(dir, "exitctl")}
	for pkg, out := range map[string]string{"exitd/cmd/exitd": bins.Exitd, "exitd/cmd/exitctl": bins.Exitctl} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, err)
			return 1
		}
	}
	return m.Run()
}
