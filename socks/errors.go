package socks

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
)

// Sentinel errors callers act on.
var (
	// ErrServerClosed is returned by Serve and Start after Close.
	ErrServerClosed = errors.New("socks: server closed")

	// ErrDenied marks a destination refused by policy (reply 0x02). A
	// Resolver may return an error wrapping it for a name whose answer
	// pointed at a denied address (the daemon's resolver empties such
	// answers): the client then gets 0x02, as for a denied address.
	ErrDenied = errors.New("socks: destination not allowed")
	// errResolve marks a name that did not resolve (reply 0x04).
	errResolve = errors.New("socks: name resolution failed")
)

// replyFor maps a CONNECT failure to its reply code. Specific errnos are
// checked before the generic timeout test because ETIMEDOUT also reports
// Timeout() == true.
func replyFor(err error) reply {
	switch {
	case err == nil:
		return replySucceeded
	case errors.Is(err, ErrDenied):
		return replyNotAllowed
	case errors.Is(err, errResolve):
		return replyHostUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return replyNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return replyHostUnreachable
	case errors.Is(err, syscall.ECONNREFUSED):
		return replyConnectionRefused
	case errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		return replyTTLExpired
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return replyTTLExpired
	}
	return replyGeneralFailure
}

// isTimeout reports a deadline expiry on a socket operation.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// isNoFD reports accept errors caused by file-descriptor or memory
// exhaustion: the listener backs off instead of failing.
func isNoFD(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
