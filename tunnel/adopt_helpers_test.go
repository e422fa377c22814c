package tunnel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func dupCloexec(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

func parseCmsgs(oob []byte) ([]unix.SocketControlMessage, error) {
	return unix.ParseSocketControlMessage(oob)
}

// groControl builds the UDP_GRO control message the kernel attaches to a
// coalesced receive.
func groControl(seg int) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = uint16(seg)
	return b
}
