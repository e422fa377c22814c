package nspawn

import (
	"os"
	"strings"
	"testing"

	"exitd/internal/netlab"
)

// rpmFormat installs the RPM with Debian's rpm inside the same Debian root.
// That rpm's database is empty: systemd (the RPM's one Requires) and the rest
// of the system belong to dpkg, so install and upgrade need --nodeps.
// --force-debian only silences Debian's "use alien instead" warning.
var rpmFormat = pkgFormat{
	name: "rpm", spec: RPMSpec,
	install: []string{"rpm", "-i", "--nodeps", "--force-debian"},
	upgrade: []string{"rpm", "-U", "--nodeps", "--force-debian"},
	erase:   []string{"rpm", "-e", "--force-debian", "exitd"},
}

// TestPackagedRPMUnderSystemd is the .deb test's install, start, member,
// upgrade and erase with the RPM: rpm runs the scriptlets with its own
// arguments (counts: 1 install, 2 upgrade, 0 erase) and in its own order on
// `rpm -U` (new %pre/%post, then the old %preun/%postun, whose try-restart
// restarts exitd).
func TestPackagedRPMUnderSystemd(t *testing.T) {
	n := bootPackaged(t, rpmFormat)
	n.installAndStart()
	n.connectMember()
	n.upgrade()
	if q := n.exec("rpm", "-q", "exitd"); !strings.HasPrefix(q, "exitd-1.0.2+e2e-1.") || strings.Count(q, "\n") != 1 {
		t.Errorf("rpm -q after upgrade: %q", q)
	}
	n.erase()
	if out, err := n.c.Exec(n.ctx, "rpm", "-q", "exitd"); err == nil {
		t.Errorf("rpm -q after erase: %s", out)
	}
	// The edited %config(noreplace) file is kept as .rpmsave.
	if conf, err := os.ReadFile(n.c.Path("/etc/exitd/exitd.toml.rpmsave")); err != nil || !strings.Contains(string(conf), netlab.ExitUnderlay4+":443") {
		t.Errorf("edited config not kept as exitd.toml.rpmsave: %v", err)
	}
}
