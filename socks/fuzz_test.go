package socks

import (
	"bytes"
	"net/netip"
	"testing"
)

// The fuzz targets feed untrusted bytes to each parser: no panic, and what
// parses re-encodes to something that parses the same.

func FuzzGreeting(f *testing.F) {
	f.Add([]byte{5, 1, 0})
	f.Add([]byte{5, 2, 0, 2})
	f.Add([]byte{5, 0})
	f.Add([]byte{4, 1, 0})
	f.Add(appendUserPass(nil, "user", "pass"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf [255]byte
		r := bytes.NewReader(b)
		m, err := readGreeting(r, buf[:])
		if err == nil {
			if len(m) == 0 || !bytes.Equal(appendGreeting(nil, m...), b[:2+len(m)]) {
				t.Fatalf("greeting %v parsed as %v", b, m)
			}
		}
		// The subnegotiation follows the greeting on the wire.
		if u, p, err := readUserPass(bytes.NewReader(b)); err == nil {
			if u == "" || !bytes.Equal(appendUserPass(nil, u, p), b[:3+len(u)+len(p)]) {
				t.Fatalf("auth %v parsed as %q %q", b, u, p)
			}
		}
	})
}

func FuzzReadRequest(f *testing.F) {
	f.Add(appendRequest(nil, cmdConnect, addr{ip: lo4, port: 80}))
	f.Add(appendRequest(nil, cmdConnect, addr{ip: lo6, port: 443}))
	f.Add(appendRequest(nil, cmdUDPAssociate, addr{name: "example.org", port: 53}))
	f.Add([]byte{5, 1, 0, 5, 1, 2, 3, 4, 0, 1})
	f.Add([]byte{5, 1, 0, 3, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := readRequest(bytes.NewReader(b))
		if err != nil {
			if req != (request{}) {
				t.Fatalf("error %v with request %+v", err, req)
			}
			return
		}
		if req.dst.name == "" && !req.dst.ip.IsValid() {
			t.Fatalf("request without address: %+v", req)
		}
		again, err := readRequest(bytes.NewReader(appendRequest(nil, req.cmd, req.dst)))
		if err != nil || again != req {
			t.Fatalf("round trip of %+v: %+v, %v", req, again, err)
		}
	})
}

func FuzzParseUDPHeader(f *testing.F) {
	f.Add(append(appendUDPHeader(nil, netip.MustParseAddrPort("127.0.0.1:53")), "payload"...))
	f.Add(appendUDPHeader(nil, netip.MustParseAddrPort("[::1]:53")))
	f.Add([]byte{0, 0, 0, 3, 4, 'a', '.', 'b', 'c', 0, 53, 1})
	f.Add([]byte{0, 0, 1, 1, 127, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		dst, frag, payload, err := parseUDPHeader(b)
		if err != nil {
			return
		}
		if len(payload) > len(b) || (len(payload) > 0 && &payload[len(payload)-1] != &b[len(b)-1]) {
			t.Fatalf("payload is not the tail of the datagram")
		}
		hdr := appendAddr([]byte{0, 0, frag}, dst)
		d2, f2, p2, err := parseUDPHeader(append(hdr, payload...))
		if err != nil || d2 != dst || f2 != frag || !bytes.Equal(p2, payload) {
			t.Fatalf("round trip of %v: %v %v %v", dst, d2, f2, err)
		}
	})
}
