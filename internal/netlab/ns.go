package netlab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"exitd/internal/testenv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/run/netns"

// NS is one named network namespace of a lab.
type NS struct {
	Name   string         // name under /run/netns, for `ip netns exec Name ...`
	Role   string         // "exit", "internet", "mgmt", "hub", "member1", ..., "exit1", ...
	Handle netns.NsHandle // open handle; valid until Lab.Close

	// Addr4 and Addr6 are the namespace's primary addresses: the underlay
	// address for the exit (what members dial) and for members, the
	// 203.0.113.2 / 2001:2:0:1::2 pair for the internet host, the LAN pair
	// for mgmt. The hub has none.
	Addr4, Addr6 netip.Addr
	// ExtraAddrs are the additional /32 underlay sources (member 1 only,
	// Options.ExtraMemberAddrs).
	ExtraAddrs []netip.Addr

	nl  *netlink.Handle // netlink socket inside the namespace
	tr  *tracker
	log *slog.Logger
}

// newNS creates the named namespace name with `ip netns add`, which also sets
// up /run/netns as a shared mount so `ip netns exec` sees later deletions.
// The calling thread never changes namespace.
func newNS(ctx context.Context, name, role string, tr *tracker, log *slog.Logger) (*NS, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("netlab: ip netns add %s: %w: %s", name, err, out)
	}
	n := &NS{Name: name, Role: role, Handle: -1, tr: tr, log: log}
	h, err := netns.GetFromName(name)
	if err != nil {
		return n, fmt.Errorf("netlab: open netns %s: %w", name, err)
	}
	n.Handle = h
	n.nl, err = netlink.NewHandleAt(h)
	if err != nil {
		return n, fmt.Errorf("netlab: netlink handle in %s: %w", name, err)
	}
	return n, nil
}

// Run calls fn on an OS thread switched into the namespace and restores the
// thread afterwards. Sockets (listeners, connections) created inside fn
// belong to the namespace and keep working from any goroutine afterwards.
func (n *NS) Run(fn func() error) error {
	var ferr error
	if err := testenv.Run(n.Handle, func() { ferr = fn() }); err != nil {
		return fmt.Errorf("netlab: enter netns %s: %w", n.Name, err)
	}
	return ferr
}

// Command returns a command that runs name inside the namespace (through
// `ip netns exec`, so the process is name itself, with /sys remounted for
// the namespace). It runs in its own process group, which is killed when
// ctx ends and (Pdeathsig) when the test process dies. Pass it to Start to have
// Lab.Close stop it, or run it to completion yourself.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", n.Name, name}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs name inside the namespace and returns its combined output; the
// error carries the output.
func (n *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: %s: %s %q: %w: %s", n.Name, name, args, err, out)
	}
	return out, nil
}

// sysctl writes value to /proc/sys/<key> (slash-separated) inside the
// namespace.
func (n *NS) sysctl(key, value string) error {
	return n.Run(func() error {
		// /proc/sys/net resolves against the calling thread's namespace.
		p := filepath.Join("/proc/sys", key)
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("netlab: %s: sysctl %s=%s: %w", n.Name, key, value, err)
		}
		return nil
	})
}

// close releases the namespace: it kills any process still inside it (the
// namespace is the lab's, so anything there was started for the lab),
// closes the handles and removes the name. It tries every step.
func (n *NS) close() error {
	var errs []error
	if n.Handle >= 0 {
		if err := killStray(n.Handle); err != nil {
			errs = append(errs, fmt.Errorf("netlab: %s: %w", n.Name, err))
		}
	}
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.Handle >= 0 {
		if err := n.Handle.Close(); err != nil {
			errs = append(errs, fmt.Errorf("netlab: close netns handle %s: %w", n.Name, err))
		}
		n.Handle = -1
	}
	if err := deleteNamed(n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteNamed is `ip netns del`: unmount the bind mount and remove the file.
// Missing pieces (a half-created namespace) are not errors.
func deleteNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("netlab: unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netlab: remove %s: %w", p, err)
	}
	return nil
}
