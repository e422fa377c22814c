package service

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listener is a fake systemd notify socket: a unixgram socket in a temp dir.
type listener struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func newListener(t *testing.T) *listener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &listener{t: t, conn: c, path: path}
}

// read returns the next message and the descriptors that came with it.
func (l *listener) read() (string, []int) {
	l.t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*8))
	l.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, oobn, _, _, err := l.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		l.t.Fatalf("read notify message: %v", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			l.t.Fatal(err)
		}
		for _, m := range msgs {
			rights, err := unix.ParseUnixRights(&m)
			if err != nil {
				l.t.Fatal(err)
			}
			fds = append(fds, rights...)
		}
	}
	for _, fd := range fds {
		l.t.Cleanup(func() { unix.Close(fd) })
	}
	return string(buf[:n]), fds
}

func TestNotifyMessages(t *testing.T) {
	l := newListener(t)
	m := NewFromOptions(Options{NotifySocket: l.path})
	if !m.Active() {
		t.Fatal("manager with a socket is not active")
	}
	tests := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", func() error { return m.Ready("2/3 members connected") }, "READY=1\nSTATUS=2/3 members connected"},
		{"status", func() error { return m.Status("rx 10 B") }, "STATUS=rx 10 B"},
		{"reloading", func() error { return m.Reloading(123456) }, "RELOADING=1\nMONOTONIC_USEC=123456"},
		{"stopping", m.Stopping, "STOPPING=1"},
		{"watchdog", m.Watchdog, "WATCHDOG=1"},
		{"raw", func() error { return m.Notify("EXTEND_TIMEOUT_USEC=5000000") }, "EXTEND_TIMEOUT_USEC=5000000"},
		{"remove", func() error { return m.RemoveFiles("tun") }, "FDSTOREREMOVE=1\nFDNAME=tun"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.send(); err != nil {
				t.Fatal(err)
			}
			got, fds := l.read()
			if got != tc.want || len(fds) != 0 {
				t.Fatalf("got %q with %d fds, want %q and none", got, len(fds), tc.want)
			}
		})
	}
}

func sameFile(t *testing.T, fd int, c syscall.Conn) bool {
	t.Helper()
	var a, b unix.Stat_t
	if err := unix.Fstat(fd, &a); err != nil {
		t.Fatal(err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(f uintptr) { serr = unix.Fstat(int(f), &b) })
	if serr != nil {
		t.Fatal(serr)
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func TestStoreFileSendsDescriptor(t *testing.T) {
	l := newListener(t)
	m := NewFromOptions(Options{NotifySocket: l.path})
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if err := m.StoreFile("udp4", udp); err != nil {
		t.Fatal(err)
	}
	got, fds := l.read()
	if got != "FDSTORE=1\nFDNAME=udp4" {
		t.Fatalf("message %q", got)
	}
	if len(fds) != 1 || !sameFile(t, fds[0], udp) {
		t.Fatalf("fds %v: want one descriptor of the same socket", fds)
	}
	// The stored descriptor is a live duplicate: it still receives.
	nfd, err := unix.Dup(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(nfd), "stored")
	dup, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer dup.Close()
	// The live socket stays non-blocking: a deadline still works on it.
	udp.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, _, err := udp.ReadFromUDP(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the original after StoreFile: %v, want a deadline error (socket switched to blocking?)", err)
	}

	// A file works too (the TUN is an *os.File).
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := m.StoreFile("tun", r); err != nil {
		t.Fatal(err)
	}
	got, fds = l.read()
	if got != "FDSTORE=1\nFDNAME=tun" || len(fds) != 1 || !sameFile(t, fds[0], r) {
		t.Fatalf("got %q fds %v", got, fds)
	}
}

func TestStoreFileErrors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := NewFromOptions(Options{}).StoreFile("tun", r); !errors.Is(err, ErrNoManager) {
		t.Fatalf("no manager: %v", err)
	}
	l := newListener(t)
	m := NewFromOptions(Options{NotifySocket: l.path})
	for _, name := range []string{"", "a:b", "has space", strings.Repeat("x", 256), "é"} {
		if err := m.StoreFile(name, r); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	gone := NewFromOptions(Options{NotifySocket: filepath.Join(t.TempDir(), "nobody")})
	if err := gone.StoreFile("tun", r); err == nil {
		t.Error("store to a missing socket succeeded")
	}
	bad := NewFromOptions(Options{NotifySocket: "relative"})
	if err := bad.Notify("READY=1"); err == nil {
		t.Error("relative NOTIFY_SOCKET accepted")
	}
}

func TestNoManagerIsNoop(t *testing.T) {
	m := NewFromOptions(Options{})
	if m.Active() {
		t.Fatal("active without socket")
	}
	for _, f := range []func() error{m.Watchdog, m.Stopping, func() error { return m.Ready("x") }, func() error { return m.RemoveFiles("tun") }} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAbstractSocket(t *testing.T) {
	name := "@exitd-test-" + strconv.Itoa(os.Getpid())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := &listener{t: t, conn: c}
	if err := NewFromOptions(Options{NotifySocket: name}).Ready("up"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.read(); got != "READY=1\nSTATUS=up" {
		t.Fatalf("got %q", got)
	}
}

func TestNewFromEnvironment(t *testing.T) {
	l := newListener(t)
	t.Setenv("NOTIFY_SOCKET", l.path)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_PID", "1") // not us: no files are taken
	t.Setenv("LISTEN_FDS", "2")
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if m.WatchdogInterval() != 30*time.Second {
		t.Fatalf("watchdog %v", m.WatchdogInterval())
	}
	if fs := m.TakeFiles("tun"); len(fs) != 0 {
		t.Fatalf("took %d files meant for another pid", len(fs))
	}
	if err := m.Watchdog(); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.read(); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}

	t.Setenv("WATCHDOG_PID", "1") // someone else's watchdog
	if m, err := New(); err != nil || m.WatchdogInterval() != 0 {
		t.Fatalf("other pid's watchdog: %v %v", m.WatchdogInterval(), err)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("WATCHDOG_USEC", "soon")
	if _, err := New(); err == nil {
		t.Fatal("malformed WATCHDOG_USEC accepted")
	}
}

// TestTakeFilesKeepsStore: taking the inherited files leaves them in the
// fd store, so a crash before their successors are stored loses nothing:
// the first message the manager sees is the next one the test sends.
func TestTakeFilesKeepsStore(t *testing.T) {
	l := newListener(t)
	m := NewFromOptions(Options{NotifySocket: l.path, Inherited: []*os.File{namedDevNull(t, "udp4")}})
	fs := m.TakeFiles("udp4")
	if len(fs) != 1 {
		t.Fatalf("%d files", len(fs))
	}
	defer fs[0].Close()
	m.Stopping()
	if got, _ := l.read(); got != "STOPPING=1" {
		t.Fatalf("taking files sent %q to the manager", got)
	}
}

func TestTakeFiles(t *testing.T) {
	open := func(name string) *os.File { return namedDevNull(t, name) }
	m := NewFromOptions(Options{Inherited: []*os.File{open("udp4"), open("tun"), open("udp4"), open("stale")}})
	if fs := m.TakeFiles("udp4"); len(fs) != 2 {
		t.Fatalf("udp4: %d files", len(fs))
	} else {
		for _, f := range fs {
			f.Close()
		}
	}
	if fs := m.TakeFiles("udp4"); len(fs) != 0 {
		t.Fatal("files handed out twice")
	}
	tun := m.TakeFiles("tun")
	if len(tun) != 1 || tun[0].Name() != "tun" {
		t.Fatalf("tun: %v", tun)
	}
	tun[0].Close()
	if got := m.CloseUnclaimed(); len(got) != 1 || got[0] != "stale" {
		t.Fatalf("unclaimed %v", got)
	}
	if got := m.CloseUnclaimed(); len(got) != 0 {
		t.Fatalf("unclaimed twice: %v", got)
	}
}

// namedDevNull is /dev/null under name, like activation.Files names
// inherited descriptors. One *os.File per descriptor: a second one would
// close the number again from its finalizer, after it may have been reused.
func namedDevNull(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), name)
}
