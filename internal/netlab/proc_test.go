package netlab

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostNS is an NS value good only for Start/Stop on host processes: the
// tracker logic needs no namespace, so these tests need no root.
func hostNS() *NS {
	return &NS{Name: "host", Handle: -1, tr: newTracker(), log: slog.New(slog.DiscardHandler)}
}

func TestProcessStopEscalates(t *testing.T) {
	n := hostNS()
	// Ignores SIGTERM; its background child is in the same group.
	p, err := n.Start(exec.Command("sh", "-c", `trap "" TERM; sleep 300 & echo child $!; wait`))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if err := WaitFor(t.Context(), 5*time.Second, func() bool {
		_, after, ok := strings.Cut(p.Output(), "child ")
		if !ok || !strings.HasSuffix(after, "\n") {
			return false
		}
		child, err = strconv.Atoi(strings.TrimSpace(after))
		return err == nil
	}); err != nil {
		t.Fatalf("no child pid in %q: %v", p.Output(), err)
	}
	start := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < stopGrace {
		t.Errorf("Stop returned after %v, before the SIGTERM grace of %v", d, stopGrace)
	}
	if err := WaitFor(t.Context(), 5*time.Second, func() bool { return gone(child) }); err != nil {
		t.Errorf("group member %d survived Stop", child)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// gone reports whether pid no longer runs (absent or a zombie of another
// parent).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || isZombie(pid)
}

func TestTrackerCloseStopsAll(t *testing.T) {
	n := hostNS()
	var procs []*Process
	for range 5 {
		p, err := n.Start(exec.Command("sleep", "300"))
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	exited, err := n.Start(exec.Command("true"))
	if err != nil {
		t.Fatal(err)
	}
	if err := exited.Wait(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := n.tr.close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("closed 5 processes in %v", time.Since(start))
	if d := time.Since(start); d > stopGrace {
		t.Errorf("closing 5 SIGTERM-able processes took %v: not concurrent or not SIGTERM", d)
	}
	for _, p := range procs {
		select {
		case <-p.Done():
		default:
			t.Errorf("pid %d still running", p.Pid())
		}
	}
	if _, err := n.Start(exec.Command("true")); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after close = %v, want ErrClosed", err)
	}
	if err := n.tr.addCloser(&closerFunc{func() error { return nil }}); !errors.Is(err, ErrClosed) {
		t.Errorf("addCloser after close = %v, want ErrClosed", err)
	}
}

// closerFunc is a pointer so it can key the tracker's set.
type closerFunc struct{ fn func() error }

func (c *closerFunc) Close() error { return c.fn() }

func TestTrackerCloseJoinsErrors(t *testing.T) {
	tr := newTracker()
	boom := errors.New("boom")
	calls := 0
	for _, err := range []error{nil, boom} {
		if err := tr.addCloser(&closerFunc{func() error { calls++; return err }}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.close(); !errors.Is(err, boom) || calls != 2 {
		t.Fatalf("close = %v after %d calls; want boom after 2", err, calls)
	}
	if err := tr.close(); err != nil || calls != 2 {
		t.Fatalf("second close = %v, %d calls", err, calls)
	}
}

func TestStartFailure(t *testing.T) {
	n := hostNS()
	_, err := n.Start(exec.Command("/nonexistent/netlab-test-binary"))
	if err == nil || !strings.HasPrefix(err.Error(), "netlab: host: start ") {
		t.Fatalf("Start of a missing binary = %v", err)
	}
	if len(n.tr.procs) != 0 {
		t.Fatalf("failed start left %d tracked processes", len(n.tr.procs))
	}
}

func TestStartKeepsCallerOutput(t *testing.T) {
	n := hostNS()
	var b syncBuffer
	cmd := exec.Command("echo", "hi")
	cmd.Stdout = &b
	p, err := n.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if b.String() != "hi\n" || p.Output() != "" {
		t.Fatalf("caller's stdout %q, captured %q", b.String(), p.Output())
	}
}

func TestKillGroupRejectsBadPgid(t *testing.T) {
	for _, pgid := range []int{0, -1} {
		if err := killGroup(pgid, syscall.SIGTERM); err == nil {
			t.Errorf("killGroup(%d) accepted: it would signal every process", pgid)
		}
	}
}

func TestIsZombie(t *testing.T) {
	if isZombie(os.Getpid()) {
		t.Fatal("this process reads as a zombie")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not reaped yet: it turns into a zombie once it exits.
	if err := WaitFor(t.Context(), 5*time.Second, func() bool { return isZombie(pid) }); err != nil {
		t.Fatalf("unreaped exited child %d never read as a zombie", pid)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !isZombie(pid) {
		t.Fatal("reaped pid reads as running")
	}
}
