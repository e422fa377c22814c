package socks

import (
	"fmt"
	"io"
)

// The client side of the codec, for tests only.

// appendGreeting builds a client greeting (used by tests and fuzz seeds).
func appendGreeting(b []byte, methods ...byte) []byte {
	b = append(b, socksVersion, byte(len(methods)))
	return append(b, methods...)
}

// appendUserPass builds an RFC 1929 request; user and pass are at most 255
// bytes (the caller checks).
func appendUserPass(b []byte, user, pass string) []byte {
	b = append(b, userPassVersion, byte(len(user)))
	b = append(b, user...)
	b = append(b, byte(len(pass)))
	return append(b, pass...)
}

// appendRequest builds a request (tests and fuzz seeds).
func appendRequest(b []byte, cmd byte, dst addr) []byte {
	return appendAddr(append(b, socksVersion, cmd, 0), dst)
}

// readReply reads a reply (the test client's side of appendReply).
func readReply(r io.Reader) (reply, addr, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, addr{}, fmt.Errorf("socks: read reply: %w", err)
	}
	if h[0] != socksVersion {
		return 0, addr{}, errVersion
	}
	a, err := readAddr(r, h[3])
	return reply(h[1]), a, err
}
