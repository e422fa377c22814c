package socks

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// spliceDir moves data between two TCP sockets with splice(2) through Go's
// *net.TCPConn.ReadFrom (an io.LimitedReader over a *net.TCPConn source is
// spliced). Before each splice it waits for the source to be readable and
// asks the kernel how much is queued, so the splice never blocks on the
// source and the pooled pipe goes back to the pool between chunks. A step
// allocates nothing.
type spliceDir struct {
	src, dst *net.TCPConn
	rc       syscall.RawConn
	ready    func(fd uintptr) bool // d.onReadable, bound once
	lr       io.LimitedReader
	pace     *pacer
	done     <-chan struct{}

	// onReadable's state and results.
	started bool  // onReadable has run before
	inq     int32 // TIOCINQ's answer
	avail   int   // bytes queued (at most maxChunk); 0 at end of stream
	err     error // socket error found while waiting
}

var _ direction = (*spliceDir)(nil)

func newSpliceDir(src, dst net.Conn, p *pacer, done <-chan struct{}) direction {
	s, ok1 := src.(*net.TCPConn)
	d, ok2 := dst.(*net.TCPConn)
	if !ok1 || !ok2 {
		return nil
	}
	rc, err := s.SyscallConn()
	if err != nil {
		return nil
	}
	sd := &spliceDir{src: s, dst: d, rc: rc, pace: p, done: done}
	sd.ready = sd.onReadable
	sd.lr.R = s
	return sd
}

func (d *spliceDir) step() (int64, error) {
	d.avail, d.err = 0, nil
	if err := d.rc.Read(d.ready); err != nil {
		return 0, err
	}
	if d.err != nil {
		return 0, d.err
	}
	if d.avail == 0 {
		return 0, io.EOF
	}
	n := d.avail
	if d.pace != nil {
		if n = d.pace.grant(n, d.done); n == 0 {
			return 0, net.ErrClosed
		}
	}
	d.lr.N = int64(n)
	w, err := d.dst.ReadFrom(&d.lr)
	if d.pace != nil && w < int64(n) {
		d.pace.refund(n - int(w))
	}
	return w, err
}

// onReadable is the syscall.RawConn.Read callback: true when data is queued
// (d.avail > 0), at end of stream (d.avail == 0) or on error (d.err); false
// to wait for readability. ioctl(TIOCINQ) answers first: it only reads a
// counter, where a receive call, even a peek, may send the pending ACK
// early and so add an ACK (and its processing on the peer's socket) per
// chunk. It cannot tell end of stream from no data; when it says 0,
// queued does.
func (d *spliceDir) onReadable(fd uintptr) bool {
	if d.started {
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&d.inq)))
		if e != 0 {
			d.err = os.NewSyscallError("ioctl", e)
			return true
		}
		if d.inq > 0 {
			d.avail = min(int(d.inq), maxChunk)
			return true
		}
	}
	// The first call of a direction goes straight here: a new session's
	// source rarely has data yet, and one early ACK per session costs
	// nothing.
	d.started = true
	for {
		n, err := queued(fd)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			d.err = os.NewSyscallError("recvfrom", err)
		default:
			d.avail = n // 0: end of stream; > 0: data arrived after the ioctl
		}
		return true
	}
}

// queued returns how many bytes (at most maxChunk) a TCP socket has queued
// to read, 0 at end of stream, EAGAIN when it has none yet, or the socket's
// error: one recvfrom(2) with MSG_PEEK|MSG_TRUNC, which for TCP counts the
// queued bytes up to the length given and copies nothing (the buffer is
// nil; a kernel that copied would fail with EFAULT, not write anywhere).
func queued(fd uintptr) (int, error) {
	n, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, 0, maxChunk,
		syscall.MSG_PEEK|syscall.MSG_TRUNC|syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
