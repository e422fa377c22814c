package tunnel

/* Sticky source addresses: a member is answered from the node address it
   dialled, as wireguard-go's StdNetBind (conn/sticky_linux.go, MIT licence,
   Copyright (C) 2017-2025 WireGuard LLC) and the kernel's WireGuard do.

   On a node with several addresses on the members' side (an SNAT pool, a
   floating IP, a second NIC) the routing table picks one source for every
   reply; a member that dialled another one sits behind a NAT or stateful
   firewall that drops the reply, and its handshake never completes.

     receive: IP_PKTINFO / IPV6_PKTINFO cmsg (beside UDP_GRO) ──▶ endpoint.src
     send:    endpoint.src ──▶ IP_PKTINFO / IPV6_PKTINFO cmsg (beside UDP_SEGMENT)

   wireguard-go passes Send the endpoint of the peer's last authenticated
   datagram, so replies follow the address the member last used. The IPv4
   source carries the arrival interface (the reply leaves where the
   datagram came in); IPv6 carries it only for a link-local source, which
   needs one. When the address has gone from the node, sendmmsg fails with
   EINVAL: Send clears the endpoint's source and sends the rest of the
   batch once more with the routing table's choice, as wireguard-go's
   former Linux bind did. wireguard-go's route listener, which clears
   sources on route changes, serves only its own StdNetBind.
*/

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"unsafe"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// oobSize holds the control messages of one datagram: UDP_GRO or
// UDP_SEGMENT (a 2- or 4-byte int) and an IPv4 or IPv6 PKTINFO.
var oobSize = unix.CmsgSpace(4) + unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// srcControlMax bounds a PKTINFO control message on any platform
// (unix.CmsgSpace(unix.SizeofInet6Pktinfo) is 40 on 64-bit, 32 on 32-bit).
const srcControlMax = 40

// endpoint is a member's address and, when sticky, the node address and
// interface its datagram arrived on. ap, src and ifindex are written before
// the endpoint is published and never again; only the sticky flag changes
// (ClearSrc runs under wireguard-go's peer lock while Send may be reading).
type endpoint struct {
	ap      netip.AddrPort
	src     [16]byte    // node address; IPv4 in the first 4 bytes
	ifindex int32       // arrival interface (IPv4, IPv6 link-local), else 0
	sticky  atomic.Bool // src is valid
	// strict keeps src through ClearSrc (Options.StrictSource):
	// wireguard-go clears it before a handshake retry, which would send the
	// retry from the routing table's source — the node's own address.
	strict bool
}

var _ conn.Endpoint = (*endpoint)(nil)

// ClearSrc forgets the sticky source: replies take the routing table's.
// A strict endpoint keeps it.
func (e *endpoint) ClearSrc() {
	if !e.strict {
		e.sticky.Store(false)
	}
}

// SrcToString is the sticky source address, or "" without one.
func (e *endpoint) SrcToString() string {
	if a := e.SrcIP(); a.IsValid() {
		return a.String()
	}
	return ""
}

func (e *endpoint) DstToString() string { return e.ap.String() }
func (e *endpoint) DstToBytes() []byte  { b, _ := e.ap.MarshalBinary(); return b }
func (e *endpoint) DstIP() netip.Addr   { return e.ap.Addr() }

// SrcIP is the sticky source address (invalid without one).
func (e *endpoint) SrcIP() netip.Addr {
	if !e.sticky.Load() {
		return netip.Addr{}
	}
	if e.ap.Addr().Is4() {
		return netip.AddrFrom4([4]byte(e.src[:4]))
	}
	return netip.AddrFrom16(e.src)
}

// setSrc makes c's destination the endpoint's sticky source; a missing or
// mismatched family (an IPv6 address for an IPv4 member) leaves none.
// Only before the endpoint is published.
func (e *endpoint) setSrc(c rxControl) {
	dst := c.dst()
	if !dst.IsValid() {
		return
	}
	dst = dst.Unmap()
	switch {
	case dst.Is4() && e.ap.Addr().Is4():
		a := dst.As4()
		copy(e.src[:], a[:])
		e.ifindex = c.ifindex
	case dst.Is6() && e.ap.Addr().Is6():
		e.src = dst.As16()
		if dst.IsLinkLocalUnicast() {
			e.ifindex = c.ifindex
		}
	default:
		return
	}
	e.sticky.Store(true)
}

// srcControl writes e's sticky source into buf as the PKTINFO control
// message for sendmsg and returns it; nil without a source.
func (e *endpoint) srcControl(buf *[srcControlMax]byte) []byte {
	if !e.sticky.Load() {
		return nil
	}
	*buf = [srcControlMax]byte{}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&buf[0]))
	data := unsafe.Pointer(&buf[unix.CmsgLen(0)])
	if e.ap.Addr().Is4() {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		info := (*unix.Inet4Pktinfo)(data)
		info.Ifindex = e.ifindex
		copy(info.Spec_dst[:], e.src[:4])
		return buf[:unix.CmsgSpace(unix.SizeofInet4Pktinfo)]
	}
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	info := (*unix.Inet6Pktinfo)(data)
	info.Addr = e.src
	info.Ifindex = uint32(e.ifindex)
	return buf[:unix.CmsgSpace(unix.SizeofInet6Pktinfo)]
}

// rxControl is what the kernel's control messages say about a received
// datagram.
type rxControl struct {
	gro     int      // GRO segment size; 0 when not coalesced
	family  int      // 4 or 6 when a PKTINFO arrived, else 0
	addr    [16]byte // the node address it was sent to; IPv4 in the first 4 bytes
	ifindex int32    // the interface it arrived on
}

func (c rxControl) dst() netip.Addr {
	switch c.family {
	case 4:
		return netip.AddrFrom4([4]byte(c.addr[:4]))
	case 6:
		return netip.AddrFrom16(c.addr)
	}
	return netip.Addr{}
}

// parseControl reads UDP_GRO and IP_PKTINFO / IPV6_PKTINFO from a
// datagram's control messages, ignoring others.
func parseControl(oob []byte) (rxControl, error) {
	var c rxControl
	for len(oob) > unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return c, fmt.Errorf("tunnel: parse control message: %w", err)
		}
		switch {
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2:
			c.gro = int(*(*uint16)(unsafe.Pointer(&data[0])))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			c.family, c.ifindex = 4, info.Ifindex
			copy(c.addr[:], info.Spec_dst[:])
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			c.family, c.ifindex, c.addr = 6, int32(info.Ifindex), info.Addr
		}
		oob = rest
	}
	return c, nil
}

// groSize returns the segment size of a GRO buffer (0 when not coalesced).
func groSize(oob []byte) (int, error) {
	c, err := parseControl(oob)
	return c.gro, err
}

// enablePktinfo asks the kernel for each datagram's destination address
// (IP_PKTINFO, IPV6_RECVPKTINFO); also on adopted sockets, which an older
// process may have opened without. Without it there is no sticky source.
func enablePktinfo(c *net.UDPConn, is6 bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { setPktinfo(int(fd), is6) })
}

func setPktinfo(fd int, is6 bool) error {
	if is6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

// writeSticky sends ms with src (e's PKTINFO control message, or empty)
// after each message's other control messages. When the kernel refuses the
// source (EINVAL: the address has gone from the node) it clears e's source
// and sends the rest of ms once more without it — unless strict: then the
// error is returned and the source kept (Options.StrictSource).
func writeSticky(bw batchWriter, ms []ipv6.Message, e *endpoint, src []byte, strict bool) error {
	for i := range ms {
		ms[i].OOB = append(ms[i].OOB, src...) // within oobSize: never allocates
	}
	sent, err := writeAll(bw, ms)
	if err == nil || len(src) == 0 || !errors.Is(err, unix.EINVAL) || strict {
		return err
	}
	e.ClearSrc()
	rest := ms[sent:]
	for i := range rest {
		rest[i].OOB = rest[i].OOB[:len(rest[i].OOB)-len(src)]
	}
	_, err = writeAll(bw, rest)
	return err
}
