package portforward

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsStandardLibraryOnly: the package promises (doc.go) to import
// the standard library and nothing else, exitd packages included.
func TestImportsStandardLibraryOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "exitd/portforward").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "exitd/portforward" {
			t.Errorf("portforward depends on %s", p)
		}
	}
}
