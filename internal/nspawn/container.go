package nspawn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure Boot.
type Options struct {
	// Root is the (cached, read-only) root; the container writes to an
	// overlay on top of it.
	Root string
	// NetNS is the network namespace the container joins
	// (/run/netns/NAME). Required: the container never uses the host's.
	NetNS string
	// BindRO are "host:container" read-only bind mounts.
	BindRO []string
	// Logf receives progress lines; nil is quiet.
	Logf func(string, ...any)
}

// Container is a booted systemd-nspawn container.
type Container struct {
	Name   string
	merged string // overlay mount: the container's / seen from the host
	tmp    string // upper, work, merged

	cmd    *exec.Cmd
	done   chan struct{}
	leader int // the container's PID 1 as seen from the host

	mu      sync.Mutex
	console bytes.Buffer

	closeOnce sync.Once
	closeErr  error
}

// Boot mounts an overlay over o.Root and boots it with systemd-nspawn in
// o.NetNS, waiting until systemd reports running (or degraded).
func Boot(ctx context.Context, o Options) (c *Container, err error) {
	if o.NetNS == "" {
		return nil, errors.New("nspawn: NetNS is required (the container must not use the host network)")
	}
	if _, err := os.Stat(o.NetNS); err != nil {
		return nil, fmt.Errorf("nspawn: network namespace: %w", err)
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var b [4]byte
	rand.Read(b[:])
	c = &Container{Name: "exitd-" + hex.EncodeToString(b[:]), done: make(chan struct{})}
	c.tmp, err = os.MkdirTemp("", "exitd-nspawn-")
	if err != nil {
		return nil, fmt.Errorf("nspawn: %w", err)
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	upper, work := filepath.Join(c.tmp, "upper"), filepath.Join(c.tmp, "work")
	c.merged = filepath.Join(c.tmp, "merged")
	for _, d := range []string{upper, work, c.merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("nspawn: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", o.Root, upper, work)
	if err := unix.Mount("overlay", c.merged, "overlay", 0, opts); err != nil {
		c.merged = ""
		return nil, fmt.Errorf("nspawn: mount overlay: %w", err)
	}
	// The container gets its own /dev/net/tun node, mode 0666 as udev makes
	// it on a real host: exitd runs as user exitd and must open it. Some
	// hosts keep theirs at 0600, and the host's node is not ours to change.
	tunNode := filepath.Join(c.tmp, "tun")
	if err := unix.Mknod(tunNode, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		return nil, fmt.Errorf("nspawn: make a TUN device node: %w", err)
	}
	if err := os.Chmod(tunNode, 0o666); err != nil { // past the umask
		return nil, fmt.Errorf("nspawn: %w", err)
	}
	args := []string{
		"-D", c.merged, "--boot", "--register=no", "--keep-unit",
		"--machine=" + c.Name, "--network-namespace-path=" + o.NetNS,
		"--console=pipe", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
		"--bind=" + tunNode + ":/dev/net/tun",
		// --network-namespace-path alone keeps CAP_NET_ADMIN out of the
		// container; it is confined to the lab namespace anyway.
		"--capability=CAP_NET_ADMIN",
	}
	for _, bnd := range o.BindRO {
		args = append(args, "--bind-ro="+bnd)
	}
	c.cmd = exec.Command("systemd-nspawn", args...)
	c.cmd.Stdout, c.cmd.Stderr = c, c
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("nspawn: start: %w", err)
	}
	go func() {
		c.cmd.Wait()
		close(c.done)
	}()
	logf("nspawn: booting %s (pid %d) in %s", c.Name, c.cmd.Process.Pid, o.NetNS)
	if err := c.waitBoot(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// Write collects the console output (for failure messages).
func (c *Container) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.console.Len() < 1<<20 {
		c.console.Write(p)
	}
	return len(p), nil
}

// Console returns what the container printed so far.
func (c *Container) Console() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.console.String()
}

func (c *Container) waitBoot(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var state string
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("nspawn: exited while booting:\n%s", tail([]byte(c.Console()), 3000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if c.leader == 0 {
			c.leader = findInit(c.cmd.Process.Pid)
			continue
		}
		out, _ := c.Exec(ctx, "systemctl", "is-system-running")
		state = strings.TrimSpace(string(out))
		if state == "running" || state == "degraded" {
			return nil
		}
	}
	return fmt.Errorf("%w (state %q):\n%s", errNotBooted, state, tail([]byte(c.Console()), 3000))
}

// findInit returns the child of the nspawn process that runs systemd (the
// container's PID 1), or 0.
func findInit(nspawn int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nspawn, nspawn))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(f)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "systemd" {
			return pid
		}
	}
	return 0
}

// Leader is the container's PID 1 as the host sees it.
func (c *Container) Leader() int { return c.leader }

// Command returns a command that runs name inside the container (all of
// its namespaces, via nsenter).
func (c *Container) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	a := append([]string{"--target", strconv.Itoa(c.leader), "--all", "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", a...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LANG=C.UTF-8", "TERM=dumb"}
	return cmd
}

// Exec runs name inside the container and returns its combined output.
func (c *Container) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := c.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("nspawn: %s %s: %w: %s", name, strings.Join(args, " "), err, tail(out, 2000))
	}
	return out, nil
}

// Path is the host path of p inside the container (the overlay).
func (c *Container) Path(p string) string { return filepath.Join(c.merged, p) }

// Close halts the container (SIGTERM to nspawn, SIGKILL after 30 s),
// unmounts the overlay and removes its directories. Idempotent.
func (c *Container) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		if c.cmd != nil && c.cmd.Process != nil {
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(30 * time.Second):
				syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
				<-c.done
				errs = append(errs, errors.New("nspawn: container did not halt within 30 s; killed"))
			}
		}
		if c.merged != "" {
			if err := unmount(c.merged); err != nil {
				errs = append(errs, err)
			}
		}
		if c.tmp != "" {
			if err := os.RemoveAll(c.tmp); err != nil {
				errs = append(errs, fmt.Errorf("nspawn: %w", err))
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

func unmount(dir string) error {
	var err error
	for range 50 {
		if err = unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // EBUSY right after the container's processes exit
	}
	if derr := unix.Unmount(dir, unix.MNT_DETACH); derr == nil {
		return nil
	}
	return fmt.Errorf("nspawn: unmount %s: %w", dir, err)
}
