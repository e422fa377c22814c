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
// asks the kernel how much is queued (TIOCINQ), so the splice never blocks
// on the source and the pooled pipe goes back to the pool between chunks.
// A step allocates nothing.
type spliceDir struct {
	src, dst *net.TCPConn
	rc       syscall.RawConn
	ready    func(fd uintptr) bool // d.onReadable, bound once
	lr       io.LimitedReader
	pace     *pacer
	done     <-chan struct{}

	// Results of onReadable.
	avail int   // bytes queued; 0 at end of stream
	err   error // socket error found while waiting
	inq   int32
	peek  [1]byte
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
	n := min(d.avail, maxChunk)
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
// to wait for readability.
func (d *spliceDir) onReadable(fd uintptr) bool {
	for {
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&d.inq)))
		if e != 0 {
			d.err = os.NewSyscallError("ioctl", e)
			return true
		}
		if d.inq > 0 {
			d.avail = int(d.inq)
			return true
		}
		// Nothing queued: end of stream, a socket error, or no data yet.
		n, _, err := syscall.Recvfrom(int(fd), d.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			d.err = os.NewSyscallError("recvfrom", err)
			return true
		case n == 0:
			return true
		}
		// Data arrived between the two calls: count it.
	}
}
