package control

import (
	"context"
	"net"

	"golang.org/x/sys/unix"
)

// Peer is the kernel-verified identity of a client (SO_PEERCRED), not
// something the client claims.
type Peer struct {
	PID      int32
	UID, GID uint32
}

type peerKey struct{}

// peerContext stores the connecting process's credentials in the request
// context; connections whose credentials cannot be read get none and are
// refused by the guard.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid})
}
