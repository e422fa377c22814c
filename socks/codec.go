package socks

// SOCKS5 wire format (RFC 1928 §3–7, RFC 1929 §2). Parsers take untrusted
// bytes and return errors, never panic (see fuzz_test.go); builders append to
// a caller's slice.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

const (
	socksVersion    = 0x05
	userPassVersion = 0x01 // RFC 1929 subnegotiation version

	methodNoAuth       = 0x00
	methodGSSAPI       = 0x01
	methodUserPass     = 0x02
	methodNoAcceptable = 0xFF

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04

	// maxUDPHeader is the longest header this server builds (IPv6).
	maxUDPHeader = 4 + 16 + 2
)

// reply is a SOCKS5 reply code (RFC 1928 §6).
type reply byte

const (
	replySucceeded           reply = 0x00
	replyGeneralFailure      reply = 0x01
	replyNotAllowed          reply = 0x02
	replyNetworkUnreachable  reply = 0x03
	replyHostUnreachable     reply = 0x04
	replyConnectionRefused   reply = 0x05
	replyTTLExpired          reply = 0x06
	replyCommandNotSupported reply = 0x07
	replyAddrNotSupported    reply = 0x08
)

var replyNames = [...]string{
	"succeeded", "general failure", "not allowed by ruleset",
	"network unreachable", "host unreachable", "connection refused",
	"TTL expired", "command not supported", "address type not supported",
}

func (r reply) String() string {
	if int(r) < len(replyNames) {
		return replyNames[r]
	}
	return fmt.Sprintf("reply(%#02x)", byte(r))
}

// Parse errors. errAddrType is the one a caller answers on the wire (0x08).
var (
	errVersion   = errors.New("socks: not SOCKS version 5")
	errNoMethods = errors.New("socks: greeting offers no methods")
	errAuthVer   = errors.New("socks: bad username/password subnegotiation version")
	errEmptyUser = errors.New("socks: empty username")
	errAddrType  = errors.New("socks: address type not supported")
	errBadName   = errors.New("socks: bad domain name")
	errShort     = errors.New("socks: message truncated")
)

// addr is a SOCKS destination: an IP address, or a domain name when name is
// set (then ip is invalid).
type addr struct {
	ip   netip.Addr
	name string
	port uint16
}

func (a addr) String() string {
	if a.name != "" {
		return fmt.Sprintf("%s:%d", a.name, a.port)
	}
	return netip.AddrPortFrom(a.ip, a.port).String()
}

type request struct {
	cmd byte
	dst addr
}

// readGreeting reads the version/method-selection message into buf (at
// least 255 bytes) and returns the offered methods, a sub-slice of buf.
func readGreeting(r io.Reader, buf []byte) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("socks: read greeting: %w", err)
	}
	if h[0] != socksVersion {
		return nil, errVersion
	}
	if h[1] == 0 {
		return nil, errNoMethods
	}
	m := buf[:h[1]]
	if _, err := io.ReadFull(r, m); err != nil {
		return nil, fmt.Errorf("socks: read greeting methods: %w", err)
	}
	return m, nil
}

// readUserPass reads an RFC 1929 username/password request.
func readUserPass(r io.Reader) (user, pass string, err error) {
	var buf [1 + 1 + 255 + 1 + 255]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return "", "", fmt.Errorf("socks: read auth: %w", err)
	}
	if buf[0] != userPassVersion {
		return "", "", errAuthVer
	}
	ulen := int(buf[1])
	if ulen == 0 {
		return "", "", errEmptyUser
	}
	// Username and the password length byte.
	if _, err := io.ReadFull(r, buf[2:2+ulen+1]); err != nil {
		return "", "", fmt.Errorf("socks: read auth: %w", err)
	}
	plen := int(buf[2+ulen])
	p := buf[3+ulen : 3+ulen+plen]
	if _, err := io.ReadFull(r, p); err != nil {
		return "", "", fmt.Errorf("socks: read auth: %w", err)
	}
	return string(buf[2 : 2+ulen]), string(p), nil
}

// readRequest reads a request (RFC 1928 §4). An unknown ATYP returns
// errAddrType after the four-byte header, so the caller can reply 0x08.
// The command is not checked here.
func readRequest(r io.Reader) (request, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return request{}, fmt.Errorf("socks: read request: %w", err)
	}
	if h[0] != socksVersion {
		return request{}, errVersion
	}
	dst, err := readAddr(r, h[3])
	if err != nil {
		return request{}, err
	}
	return request{cmd: h[1], dst: dst}, nil
}

func readAddr(r io.Reader, atyp byte) (addr, error) {
	var buf [255 + 2]byte
	var n int
	switch atyp {
	case atypIPv4:
		n = 4
	case atypIPv6:
		n = 16
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return addr{}, fmt.Errorf("socks: read address: %w", err)
		}
		n = int(buf[0])
	default:
		return addr{}, errAddrType
	}
	b := buf[:n+2]
	if _, err := io.ReadFull(r, b); err != nil {
		return addr{}, fmt.Errorf("socks: read address: %w", err)
	}
	return decodeAddr(atyp, b[:n], b[n:])
}

func decodeAddr(atyp byte, a, port []byte) (addr, error) {
	p := binary.BigEndian.Uint16(port)
	switch atyp {
	case atypIPv4:
		return addr{ip: netip.AddrFrom4([4]byte(a)), port: p}, nil
	case atypIPv6:
		// An IPv4-mapped address is the IPv4 address; Deny sees it unmapped.
		return addr{ip: netip.AddrFrom16([16]byte(a)).Unmap(), port: p}, nil
	}
	if !validName(a) {
		return addr{}, errBadName
	}
	return addr{name: string(a), port: p}, nil
}

// validName accepts 1–255 printable ASCII bytes without spaces; the resolver
// decides the rest.
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// appendAddr appends ATYP, address and port. A name longer than 255 bytes
// is the caller's bug; it is truncated to keep the message well-formed.
func appendAddr(b []byte, a addr) []byte {
	switch {
	case a.name != "":
		n := a.name[:min(len(a.name), 255)]
		b = append(b, atypDomain, byte(len(n)))
		b = append(b, n...)
	case a.ip.Is4():
		v := a.ip.As4()
		b = append(b, atypIPv4)
		b = append(b, v[:]...)
	case a.ip.Is6():
		v := a.ip.As16()
		b = append(b, atypIPv6)
		b = append(b, v[:]...)
	default: // no address: 0.0.0.0
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, a.port)
}

// appendReply builds a reply with the bound address bnd (may be zero).
func appendReply(b []byte, rep reply, bnd netip.AddrPort) []byte {
	b = append(b, socksVersion, byte(rep), 0)
	return appendAddr(b, addr{ip: bnd.Addr().Unmap(), port: bnd.Port()})
}

// parseUDPHeader parses the header of a relayed datagram (RFC 1928 §7) and
// returns the destination, the fragment number and the payload (a sub-slice
// of b).
func parseUDPHeader(b []byte) (dst addr, frag byte, payload []byte, err error) {
	if len(b) < 4 {
		return addr{}, 0, nil, errShort
	}
	frag, atyp := b[2], b[3]
	rest := b[4:]
	var n int
	switch atyp {
	case atypIPv4:
		n = 4
	case atypIPv6:
		n = 16
	case atypDomain:
		if len(rest) < 1 {
			return addr{}, 0, nil, errShort
		}
		n, rest = int(rest[0]), rest[1:]
	default:
		return addr{}, 0, nil, errAddrType
	}
	if len(rest) < n+2 {
		return addr{}, 0, nil, errShort
	}
	dst, err = decodeAddr(atyp, rest[:n], rest[n:n+2])
	if err != nil {
		return addr{}, 0, nil, err
	}
	return dst, frag, rest[n+2:], nil
}

// appendUDPHeader appends the header for a datagram from src (RSV, FRAG 0).
func appendUDPHeader(b []byte, src netip.AddrPort) []byte {
	return appendAddr(append(b, 0, 0, 0), addr{ip: src.Addr().Unmap(), port: src.Port()})
}

// udpHeaderLen is len(appendUDPHeader(nil, src)).
func udpHeaderLen(src netip.AddrPort) int {
	if src.Addr().Unmap().Is6() {
		return maxUDPHeader
	}
	return 4 + 4 + 2
}
