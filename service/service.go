// Package service is exitd's systemd integration: sd_notify states (READY,
// STATUS, RELOADING, STOPPING, WATCHDOG), the watchdog interval, the file
// descriptor store (FDSTORE=1 with SCM_RIGHTS) and the files systemd hands
// back on the next start (LISTEN_FDS/LISTEN_FDNAMES).
//
// Without a service manager (no NOTIFY_SOCKET) every method is a cheap no-op,
// so the daemon runs the same code in a terminal and under systemd.
//
// It imports go-systemd and x/sys only, no exitd package. Only New reads the
// environment, and only when cmd/exitd calls it.
package service

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Manager talks to the service manager that started the process.
// It is safe for concurrent use.
type Manager struct {
	socket   string        // NOTIFY_SOCKET; "" means none
	watchdog time.Duration // WATCHDOG_USEC for this process; 0 = off

	mu        sync.Mutex
	inherited map[string][]*os.File // LISTEN_FDS by FDNAME, not yet taken
}

// Options build a Manager without looking at the environment (tests, or a
// caller that read the environment itself).
type Options struct {
	NotifySocket string
	Watchdog     time.Duration
	Inherited    []*os.File // named by (*os.File).Name(), as activation.Files names them
}

// NewFromOptions returns a Manager for opts.
func NewFromOptions(o Options) *Manager {
	m := &Manager{socket: o.NotifySocket, watchdog: o.Watchdog, inherited: map[string][]*os.File{}}
	for _, f := range o.Inherited {
		m.inherited[f.Name()] = append(m.inherited[f.Name()], f)
	}
	return m
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID and LISTEN_FDS (which
// it unsets, so children do not inherit them). A malformed WATCHDOG_USEC is
// an error; everything else absent simply means "no manager".
func New() (*Manager, error) {
	files := activation.Files(true)
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("service: watchdog: %w", err)
	}
	return NewFromOptions(Options{NotifySocket: os.Getenv("NOTIFY_SOCKET"), Watchdog: wd, Inherited: files}), nil
}

// Active reports whether a service manager listens.
func (m *Manager) Active() bool { return m.socket != "" }

// WatchdogInterval is how often systemd expects WATCHDOG=1 at the latest
// (WatchdogSec); 0 when the watchdog is off.
func (m *Manager) WatchdogInterval() time.Duration { return m.watchdog }

// Notify sends one sd_notify message (newline-separated assignments such as
// "READY=1\nSTATUS=ok"). Without a manager it does nothing.
func (m *Manager) Notify(state string) error {
	if m.socket == "" {
		return nil
	}
	return m.send(state, -1)
}

// Ready reports start-up (or a reload) complete, with a status line.
func (m *Manager) Ready(status string) error {
	return m.Notify(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Status updates the one-line status `systemctl status` shows.
func (m *Manager) Status(status string) error { return m.Notify("STATUS=" + status) }

// Reloading reports that a reload started; send Ready when it is done.
// MONOTONIC_USEC lets systemd ≥ 253 pair it with the reload job.
func (m *Manager) Reloading(monotonicUsec int64) error {
	return m.Notify(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, monotonicUsec))
}

// Stopping reports that shutdown started.
func (m *Manager) Stopping() error { return m.Notify(daemon.SdNotifyStopping) }

// Watchdog pings the watchdog: the process is healthy.
func (m *Manager) Watchdog() error { return m.Notify(daemon.SdNotifyWatchdog) }

// StoreFile hands a duplicate of c's descriptor to systemd's fd store under
// name (FDSTORE=1, FDNAME=name); after a restart it comes back in LISTEN_FDS
// and TakeFiles(name) returns it. The descriptor is reached through
// SyscallConn, never (*os.File).Fd, which would switch a live socket to
// blocking mode. Without a manager it does nothing and returns ErrNoManager.
func (m *Manager) StoreFile(name string, c syscall.Conn) error {
	if m.socket == "" {
		return ErrNoManager
	}
	if err := checkFDName(name); err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("service: store %s: %w", name, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = m.send("FDSTORE=1\nFDNAME="+name, int(fd))
	}); err != nil {
		return fmt.Errorf("service: store %s: %w", name, err)
	}
	if serr != nil {
		return fmt.Errorf("service: store %s: %w", name, serr)
	}
	return nil
}

// RemoveFiles drops every stored descriptor named name (FDSTOREREMOVE=1).
func (m *Manager) RemoveFiles(name string) error {
	if m.socket == "" {
		return nil
	}
	if err := checkFDName(name); err != nil {
		return err
	}
	return m.Notify("FDSTOREREMOVE=1\nFDNAME=" + name)
}

// TakeFiles returns the inherited files named name and hands them to the
// caller, who must close or keep them. They stay in the fd store: if this
// process dies before it stores their successors, the next one still
// inherits them (the TUN, with every member's route, survives a crash
// right after start). A caller that replaces them with new files removes
// the old ones first (RemoveFiles, then StoreFile); storing a file the
// store already holds is a no-op in systemd (duplicates are ignored).
func (m *Manager) TakeFiles(name string) []*os.File {
	m.mu.Lock()
	fs := m.inherited[name]
	delete(m.inherited, name)
	m.mu.Unlock()
	return fs
}

// CloseUnclaimed closes inherited files nobody took, returning their names.
func (m *Manager) CloseUnclaimed() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for name, fs := range m.inherited {
		for _, f := range fs {
			f.Close()
		}
		names = append(names, name)
	}
	clear(m.inherited)
	return names
}

// ErrNoManager is returned by StoreFile when no service manager listens.
var ErrNoManager = errors.New("service: no service manager (NOTIFY_SOCKET unset)")

// checkFDName enforces sd_pid_notify_with_fds' rules: at most 255
// printable ASCII characters, no colon.
func checkFDName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("service: fd name %q: want 1-255 characters", name)
	}
	for _, r := range name {
		if r <= ' ' || r > '~' || r == ':' {
			return fmt.Errorf("service: fd name %q: only printable ASCII without ':' or spaces", name)
		}
	}
	return nil
}

// send writes state to the notify socket from a fresh, unconnected
// datagram socket, with fd attached as SCM_RIGHTS when fd >= 0 (sendmsg on
// a connected socket cannot carry an address and fails).
func (m *Manager) send(state string, fd int) error {
	addr, err := notifyAddr(m.socket)
	if err != nil {
		return err
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("service: notify socket: %w", err)
	}
	defer unix.Close(s)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(s, []byte(state), oob, addr, 0); err != nil {
		return fmt.Errorf("service: notify %s: %w", m.socket, err)
	}
	return nil
}

// notifyAddr parses NOTIFY_SOCKET: a path, or "@name" for the abstract
// namespace (x/sys/unix maps a leading '@' to a NUL byte).
func notifyAddr(s string) (*unix.SockaddrUnix, error) {
	if s == "" || (s[0] != '/' && s[0] != '@') {
		return nil, fmt.Errorf("service: NOTIFY_SOCKET %q: want an absolute path or @abstract name", s)
	}
	return &unix.SockaddrUnix{Name: s}, nil
}
