package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 3 * time.Second

// ErrClosed is returned when starting something on a closed lab.
var ErrClosed = errors.New("netlab: lab closed")

// tracker records what was started through a lab so Close can stop it.
type tracker struct {
	mu      sync.Mutex
	closed  bool
	procs   map[*Process]struct{}
	closers map[io.Closer]struct{} // keys must be comparable (pointers)
}

func newTracker() *tracker {
	return &tracker{procs: map[*Process]struct{}{}, closers: map[io.Closer]struct{}{}}
}

func (t *tracker) addCloser(c io.Closer) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.closers[c] = struct{}{}
	return nil
}

func (t *tracker) removeCloser(c io.Closer) {
	t.mu.Lock()
	delete(t.closers, c)
	t.mu.Unlock()
}

// close stops every tracked closer and process, concurrently, and refuses
// new ones.
func (t *tracker) close() error {
	t.mu.Lock()
	t.closed = true
	closers, procs := t.closers, t.procs
	t.closers, t.procs = map[io.Closer]struct{}{}, map[*Process]struct{}{}
	t.mu.Unlock()

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for c := range closers {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for p := range procs {
		wg.Go(func() {
			if err := p.Stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Process is a command started in a lab namespace with NS.Start.
type Process struct {
	Cmd  *exec.Cmd
	tr   *tracker
	done chan struct{}
	err  error // Wait's result, set before done closes
	out  *syncBuffer
}

// Start starts cmd (normally from NS.Command) and records it until it exits
// so Lab.Close stops it. If cmd has no Stdout/Stderr, both are captured and available
// from Output. The process is reaped in the background.
func (n *NS) Start(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Cmd: cmd, tr: n.tr, done: make(chan struct{})}
	if cmd.Stdout == nil && cmd.Stderr == nil {
		p.out = &syncBuffer{}
		cmd.Stdout, cmd.Stderr = p.out, p.out
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // Stop kills the group
	n.tr.mu.Lock()
	defer n.tr.mu.Unlock()
	if n.tr.closed {
		return nil, ErrClosed
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: %s: start %s: %w", n.Name, cmd.Path, err)
	}
	n.tr.procs[p] = struct{}{}
	n.log.Debug("netlab: started", "ns", n.Name, "pid", cmd.Process.Pid, "args", cmd.Args)
	go func() {
		p.err = cmd.Wait()
		p.tr.mu.Lock()
		delete(p.tr.procs, p) // exited: nothing left for Close to stop
		p.tr.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (the program itself: `ip netns exec` execs it).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the process exits and returns cmd.Wait's error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Output returns what the process wrote so far when Start captured it.
func (p *Process) Output() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// Stop sends SIGTERM to the process group, then SIGKILL after a grace
// period, and waits for the process to be reaped. Safe to call repeatedly.
// An exit caused by the signal is not an error.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pid := p.Pid()
	_ = killGroup(pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = killGroup(pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace + p.Cmd.WaitDelay):
		return fmt.Errorf("netlab: process %d did not exit after SIGKILL", pid)
	}
}

// killGroup signals process group pgid (our child made itself its leader).
func killGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 0 {
		return fmt.Errorf("netlab: bad process group %d", pgid)
	}
	if err := syscall.Kill(-pgid, sig); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("netlab: kill -%d %d: %w", sig, pgid, err)
	}
	return nil
}

// killStray SIGKILLs every process whose network namespace is ns, except
// this test process, and waits until they are gone. A lab namespace is
// private to the lab, so such processes were started for it (for example
// by a caller that ran NS.Command without Start).
func killStray(ns netns.NsHandle) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return fmt.Errorf("stat netns: %w", err)
	}
	want := "net:[" + strconv.FormatUint(st.Ino, 10) + "]"
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := pidsInNetns(want)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in the namespace", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond) // poll interval across processes
	}
}

// pidsInNetns lists processes whose /proc/PID/ns/net link reads want.
func pidsInNetns(want string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/ns/net")
		if err == nil && link == want && !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isZombie reports whether pid has exited but not been reaped; a zombie's
// namespace is already released.
func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// syncBuffer is a bytes.Buffer safe for a process's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
