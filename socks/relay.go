package socks

// Relaying a CONNECT:
//
//	client ──up───▶ remote   RoutineSession (paced when UploadLimit > 0)
//	client ◀──down── remote  RoutineRelayDown
//
// Each direction waits until its source has data queued and then moves that
// much (at most maxChunk) to its destination: with splice(2) when both ends
// are *net.TCPConn on Linux (relay_linux.go), else with a small copy buffer.
// Waiting before splicing matters: Go's splice holds a pipe (two fds, up to
// 1 MiB of pipe pages) for as long as one ReadFrom call runs, so a plain
// io.Copy would pin a pipe per direction for the life of every idle session.
//
// End of stream on one side half-closes the other (CloseWrite) and the
// other direction carries on; any error ends both, and so does the end of
// the second stream (closing both sockets sends what a half-close would).
// Idle time is measured from the last chunk in either direction: each
// source has a read deadline, and on expiry the direction extends it from
// that last chunk or, after a full IdleTimeout without data, ends the
// session. Once one direction has finished, a timer (the watch) keeps the
// clock for the one still running, whose read deadline cannot fire while
// it is stuck writing to a peer that does not read. RoutineRelayDown exits
// when its direction ends; RoutineSession waits for both, since its return
// closes the session.

import (
	"io"
	"math"
	"net"
	"sync/atomic"
	"time"
)

// maxChunk bounds one step: at IdleTimeout 5 min a member reading at
// 7 kbit/s still completes a chunk before it counts as idle.
const maxChunk = 256 << 10

// direction moves data one way.
type direction interface {
	// step waits for data on the source and moves one chunk to the
	// destination, returning the bytes moved; io.EOF at the end of the
	// source, a deadline error when the source's read deadline expires.
	step() (int64, error)
}

type tcpRelay struct {
	ss         *session
	idle       time.Duration
	lastActive atomic.Int64 // unix nanoseconds of the last chunk either way
	running    atomic.Int32 // directions not yet finished
	bothDone   chan struct{}
	watch      atomic.Pointer[time.Timer] // set by the first direction to finish
}

func (ss *session) relay(remote net.Conn, p *pacer) {
	s := ss.srv
	r := &tcpRelay{ss: ss, idle: s.opts.IdleTimeout, bothDone: make(chan struct{})}
	now := time.Now()
	r.lastActive.Store(now.UnixNano())
	r.running.Store(2)
	ss.client.SetReadDeadline(now.Add(r.idle))
	remote.SetReadDeadline(now.Add(r.idle))

	up := newDirection(ss.client, remote, p, ss.done)
	down := newDirection(remote, ss.client, nil, ss.done)
	s.wg.Add(1) // RoutineSession is counted, so Close cannot be waiting at zero
	go r.RoutineRelayDown(down, remote)
	r.run(up, ss.client, remote, &s.stats.bytesUp)
	<-r.bothDone
}

// RoutineRelayDown relays remote → client.
func (r *tcpRelay) RoutineRelayDown(d direction, remote net.Conn) {
	defer r.ss.srv.wg.Done()
	r.run(d, remote, r.ss.client, &r.ss.srv.stats.bytesDown)
}

// run moves chunks until its source ends, then finishes the direction.
func (r *tcpRelay) run(d direction, src, dst net.Conn, bytes *atomic.Uint64) {
	var err error
	for {
		var n int64
		n, err = d.step()
		if n > 0 {
			bytes.Add(uint64(n))
			r.lastActive.Store(time.Now().UnixNano())
		}
		if err == nil || isTimeout(err) && r.extend(src) {
			continue
		}
		break
	}
	// At end of stream with the other direction still running, pass the
	// half-close on. Otherwise (error, idle, no half-close, or both streams
	// ended) close both sockets: for a second end of stream that sends the
	// same FIN without a shutdown(2) first.
	if err == io.EOF && r.running.Load() == 2 {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			r.finish()
			return
		}
	}
	r.ss.close()
	r.finish()
}

// extend moves src's read deadline to IdleTimeout after the last chunk
// either way; false when that is already past (the session is idle).
func (r *tcpRelay) extend(src net.Conn) bool {
	last := time.Unix(0, r.lastActive.Load())
	if time.Since(last) >= r.idle {
		return false
	}
	src.SetReadDeadline(last.Add(r.idle))
	return true
}

// finish marks one direction done. The first to finish starts the watch,
// which closes the session if no chunk moves for IdleTimeout; the last
// stops it and releases RoutineSession.
func (r *tcpRelay) finish() {
	if r.running.Add(-1) == 0 {
		r.stopWatch()
		close(r.bothDone)
		return
	}
	// Stored before it is armed: onWatch re-arms it through r.watch.
	t := time.AfterFunc(math.MaxInt64, r.onWatch)
	r.watch.Store(t)
	t.Reset(r.idle)
	if r.running.Load() == 0 {
		// The other direction finished in between and may have missed the
		// timer; Stop is idempotent.
		r.stopWatch()
	}
}

func (r *tcpRelay) stopWatch() {
	if t := r.watch.Load(); t != nil {
		t.Stop()
	}
}

// onWatch runs on the watch timer's own goroutine.
func (r *tcpRelay) onWatch() {
	if r.running.Load() == 0 {
		return
	}
	since := time.Since(time.Unix(0, r.lastActive.Load()))
	if since >= r.idle {
		r.ss.close()
		return
	}
	r.watch.Load().Reset(r.idle - since)
}

// newDirection picks splice when the platform and both conns allow it.
func newDirection(src, dst net.Conn, p *pacer, done <-chan struct{}) direction {
	if d := newSpliceDir(src, dst, p, done); d != nil {
		return d
	}
	return &copyDir{src: src, dst: dst, pace: p, done: done, buf: make([]byte, copyBufSize)}
}

const copyBufSize = 16 << 10

var _ direction = (*copyDir)(nil)

// copyDir is the portable direction: read into a buffer, write it out.
type copyDir struct {
	src, dst net.Conn
	pace     *pacer
	done     <-chan struct{}
	buf      []byte
}

func (d *copyDir) step() (int64, error) {
	b := d.buf
	if d.pace != nil {
		g := d.pace.grant(len(b), d.done)
		if g == 0 {
			return 0, net.ErrClosed
		}
		b = b[:g]
	}
	n, err := d.src.Read(b)
	if d.pace != nil {
		d.pace.refund(len(b) - n)
	}
	if n > 0 {
		w, werr := d.dst.Write(b[:n])
		if werr != nil {
			return int64(w), werr
		}
	}
	return int64(n), err
}
