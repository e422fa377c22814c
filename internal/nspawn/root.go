// Package nspawn boots a Debian root under systemd-nspawn for end-to-end
// tests of exitd's packages under a real systemd: a debootstrapped root,
// cached between runs and keyed by its package list, an overlay per
// container so the cache stays clean, a boot into a given network
// namespace (a netlab namespace; never the host's), and commands run inside
// with nsenter.
//
// Everything it makes (overlay mount, upper directory, the nspawn process)
// is removed by Container.Close. It imports no exitd package.
package nspawn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// RootSpec describes a debootstrapped root.
type RootSpec struct {
	Suite    string   // e.g. "bookworm"
	Variant  string   // e.g. "minbase"
	Packages []string // --include
	Mirror   string   // "" = debootstrap's default
}

// DefaultSpec is the root the exitd tests boot: Debian 12's systemd 252.
var DefaultSpec = RootSpec{
	Suite: "bookworm", Variant: "minbase",
	Packages: []string{"systemd", "systemd-sysv", "dbus", "iproute2", "procps", "kmod", "nftables", "wireguard-tools"},
}

// RPMSpec is DefaultSpec plus rpm, for installing exitd's RPM under the same
// systemd; a cache entry of its own, so DefaultSpec's root stays as it is.
var RPMSpec = DefaultSpec.With("rpm")

// With returns s with more packages included (a different cache entry).
func (s RootSpec) With(pkgs ...string) RootSpec {
	s.Packages = append(append([]string(nil), s.Packages...), pkgs...)
	return s
}

// Key identifies the root's contents: the cache directory's name.
func (s RootSpec) Key() string {
	h := sha256.Sum256([]byte(strings.Join([]string{s.Suite, s.Variant, s.Mirror, strings.Join(s.Packages, ",")}, "\n")))
	return s.Suite + "-" + hex.EncodeToString(h[:6])
}

// DefaultCache is where roots are cached between runs.
const DefaultCache = "/var/cache/exitd-nspawn"

// completeMarker is written last; a root without it is rebuilt.
const completeMarker = ".exitd-nspawn-complete"

// EnsureRoot returns the cached root for spec under cacheDir, building it
// with debootstrap first when missing (about 3 minutes). Concurrent callers
// wait on a lock file instead of building twice.
func EnsureRoot(ctx context.Context, cacheDir string, spec RootSpec, logf func(string, ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir := filepath.Join(cacheDir, spec.Key())
	root := filepath.Join(dir, "root")
	if _, err := os.Stat(filepath.Join(root, completeMarker)); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("nspawn: cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("nspawn: cache lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("nspawn: cache lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(filepath.Join(root, completeMarker)); err == nil {
		return root, nil // built by whoever held the lock
	}
	tmp := root + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("nspawn: %w", err)
	}
	args := []string{"--variant=" + spec.Variant, "--include=" + strings.Join(spec.Packages, ","), spec.Suite, tmp}
	if spec.Mirror != "" {
		args = append(args, spec.Mirror)
	}
	logf("nspawn: debootstrap %s into %s (cached for later runs)", strings.Join(args, " "), dir)
	out, err := exec.CommandContext(ctx, "debootstrap", args...).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("nspawn: debootstrap: %w\n%s", err, tail(out, 2000))
	}
	// Quiet, fast boots: no getty on the console, no network waits.
	for _, u := range []string{"console-getty.service", "getty@tty1.service", "systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer"} {
		os.Symlink("/dev/null", filepath.Join(tmp, "etc/systemd/system", u))
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(spec.Key()+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("nspawn: %w", err)
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return "", fmt.Errorf("nspawn: %w", err)
	}
	return root, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// errNotBooted is returned when a container never reached a running state.
var errNotBooted = errors.New("nspawn: container did not finish booting")
