package socks

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestReadGreeting(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		methods []byte
		err     error
	}{
		{"no auth", []byte{5, 1, 0}, []byte{0}, nil},
		{"three methods", []byte{5, 3, 0, 1, 2}, []byte{0, 1, 2}, nil},
		{"socks4", []byte{4, 1, 0}, nil, errVersion},
		{"zero methods", []byte{5, 0}, nil, errNoMethods},
		{"truncated methods", []byte{5, 2, 0}, nil, io.ErrUnexpectedEOF},
		{"empty", nil, nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf [255]byte
			m, err := readGreeting(bytes.NewReader(tt.in), buf[:])
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if !bytes.Equal(m, tt.methods) {
				t.Fatalf("methods %v, want %v", m, tt.methods)
			}
		})
	}
	if got := appendGreeting(nil, 0, 2); !bytes.Equal(got, []byte{5, 2, 0, 2}) {
		t.Errorf("appendGreeting = %v", got)
	}
}

func TestReadUserPass(t *testing.T) {
	tests := []struct {
		name       string
		in         []byte
		user, pass string
		err        error
	}{
		{"ok", []byte{1, 3, 'b', 'o', 'b', 2, 'p', 'w'}, "bob", "pw", nil},
		{"empty password", []byte{1, 1, 'a', 0}, "a", "", nil},
		{"bad version", []byte{5, 1, 'a', 1, 'b'}, "", "", errAuthVer},
		{"empty user", []byte{1, 0, 1, 'b'}, "", "", errEmptyUser},
		{"truncated user", []byte{1, 5, 'a'}, "", "", io.ErrUnexpectedEOF},
		{"truncated password", []byte{1, 1, 'a', 4, 'b'}, "", "", io.ErrUnexpectedEOF},
		{"missing password length", []byte{1, 1, 'a'}, "", "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, p, err := readUserPass(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.err) || u != tt.user || p != tt.pass {
				t.Fatalf("got %q %q %v, want %q %q %v", u, p, err, tt.user, tt.pass, tt.err)
			}
		})
	}
	long := strings.Repeat("x", 255)
	u, p, err := readUserPass(bytes.NewReader(appendUserPass(nil, long, long)))
	if err != nil || u != long || p != long {
		t.Errorf("255-byte round trip: %v", err)
	}
}

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want request
		err  error
	}{
		{"connect ipv4", []byte{5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90},
			request{cmd: cmdConnect, dst: addr{ip: lo4, port: 8080}}, nil},
		{"connect ipv6", append(append([]byte{5, 1, 0, 4}, lo6.AsSlice()...), 0, 80),
			request{cmd: cmdConnect, dst: addr{ip: lo6, port: 80}}, nil},
		{"ipv4-mapped ipv6 is ipv4", append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("::ffff:127.0.0.2").AsSlice()...), 0, 80),
			request{cmd: cmdConnect, dst: addr{ip: private, port: 80}}, nil},
		{"connect name", []byte{5, 1, 0, 3, 4, 'a', '.', 'b', 'c', 1, 187},
			request{cmd: cmdConnect, dst: addr{name: "a.bc", port: 443}}, nil},
		{"udp associate zero", []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0},
			request{cmd: cmdUDPAssociate, dst: addr{ip: netip.IPv4Unspecified()}}, nil},
		{"bind parses", []byte{5, 2, 0, 1, 1, 2, 3, 4, 0, 1},
			request{cmd: cmdBind, dst: addr{ip: netip.AddrFrom4([4]byte{1, 2, 3, 4}), port: 1}}, nil},
		{"atyp 5", []byte{5, 1, 0, 5, 1, 2, 3, 4, 0, 1}, request{}, errAddrType},
		{"atyp 0", []byte{5, 1, 0, 0}, request{}, errAddrType},
		{"empty name", []byte{5, 1, 0, 3, 0, 0, 80}, request{}, errBadName},
		{"name with space", []byte{5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80}, request{}, errBadName},
		{"name with nul", []byte{5, 1, 0, 3, 2, 'a', 0, 0, 80}, request{}, errBadName},
		{"version 4", []byte{4, 1, 0, 1, 127, 0, 0, 1, 0, 80}, request{}, errVersion},
		{"truncated header", []byte{5, 1}, request{}, io.ErrUnexpectedEOF},
		{"truncated ipv4", []byte{5, 1, 0, 1, 127, 0}, request{}, io.ErrUnexpectedEOF},
		{"truncated port", []byte{5, 1, 0, 1, 127, 0, 0, 1, 0}, request{}, io.ErrUnexpectedEOF},
		{"truncated name", []byte{5, 1, 0, 3, 9, 'a'}, request{}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readRequest(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// Building what was parsed gives the same bytes, except for
			// the mapped address, which parses as IPv4.
			if err == nil && tt.name != "ipv4-mapped ipv6 is ipv4" {
				if b := appendRequest(nil, got.cmd, got.dst); !bytes.Equal(b, tt.in) {
					t.Errorf("appendRequest = %v, want %v", b, tt.in)
				}
			}
		})
	}
}

func TestReplyBytes(t *testing.T) {
	tests := []struct {
		name string
		rep  reply
		bnd  netip.AddrPort
		want []byte
	}{
		{"success ipv4", replySucceeded, netip.MustParseAddrPort("127.0.0.1:1080"),
			[]byte{5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38}},
		{"success ipv6", replySucceeded, netip.MustParseAddrPort("[::1]:80"),
			append(append([]byte{5, 0, 0, 4}, lo6.AsSlice()...), 0, 80)},
		{"mapped bound address as ipv4", replySucceeded, netip.MustParseAddrPort("[::ffff:127.0.0.1]:80"),
			[]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 80}},
		{"refused, no address", replyConnectionRefused, netip.AddrPort{},
			[]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"atyp not supported", replyAddrNotSupported, netip.AddrPort{},
			[]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendReply(nil, tt.rep, tt.bnd)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("appendReply = %v, want %v", got, tt.want)
			}
			rep, a, err := readReply(bytes.NewReader(got))
			if err != nil || rep != tt.rep {
				t.Fatalf("readReply = %v, %v", rep, err)
			}
			if tt.bnd.IsValid() && (a.ip != tt.bnd.Addr().Unmap() || a.port != tt.bnd.Port()) {
				t.Fatalf("readReply address %v, want %v", a, tt.bnd)
			}
		})
	}
	for r := replySucceeded; r <= replyAddrNotSupported; r++ {
		if strings.HasPrefix(r.String(), "reply(") {
			t.Errorf("reply %d has no name", r)
		}
	}
	if got := reply(9).String(); got != "reply(0x09)" {
		t.Errorf("reply(9).String() = %q", got)
	}
}

func TestParseUDPHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		dst     addr
		frag    byte
		payload string
		err     error
	}{
		{"ipv4", []byte{0, 0, 0, 1, 127, 0, 0, 1, 0, 53, 'h', 'i'}, addr{ip: lo4, port: 53}, 0, "hi", nil},
		{"ipv6", append(append([]byte{0, 0, 0, 4}, lo6.AsSlice()...), 0, 53, 'x'), addr{ip: lo6, port: 53}, 0, "x", nil},
		{"name", []byte{0, 0, 0, 3, 1, 'a', 0, 7}, addr{name: "a", port: 7}, 0, "", nil},
		{"fragment", []byte{0, 0, 2, 1, 127, 0, 0, 1, 0, 53, 'z'}, addr{ip: lo4, port: 53}, 2, "z", nil},
		{"short", []byte{0, 0, 0}, addr{}, 0, "", errShort},
		{"short ipv4", []byte{0, 0, 0, 1, 127, 0, 0, 1, 0}, addr{}, 0, "", errShort},
		{"short name length", []byte{0, 0, 0, 3}, addr{}, 0, "", errShort},
		{"short name", []byte{0, 0, 0, 3, 5, 'a', 'b'}, addr{}, 0, "", errShort},
		{"empty name", []byte{0, 0, 0, 3, 0, 0, 7}, addr{}, 0, "", errBadName},
		{"atyp 5", []byte{0, 0, 0, 5, 1, 2, 3, 4, 0, 1}, addr{}, 0, "", errAddrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst, frag, p, err := parseUDPHeader(tt.in)
			if !errors.Is(err, tt.err) || dst != tt.dst || frag != tt.frag || string(p) != tt.payload {
				t.Fatalf("got %v %d %q %v, want %v %d %q %v", dst, frag, p, err, tt.dst, tt.frag, tt.payload, tt.err)
			}
		})
	}
}

func TestAppendUDPHeader(t *testing.T) {
	tests := []struct {
		src  netip.AddrPort
		want []byte
	}{
		{netip.MustParseAddrPort("127.0.0.1:53"), []byte{0, 0, 0, 1, 127, 0, 0, 1, 0, 53}},
		{netip.MustParseAddrPort("[::ffff:127.0.0.1]:53"), []byte{0, 0, 0, 1, 127, 0, 0, 1, 0, 53}},
		{netip.MustParseAddrPort("[::1]:53"), append(append([]byte{0, 0, 0, 4}, lo6.AsSlice()...), 0, 53)},
	}
	for _, tt := range tests {
		got := appendUDPHeader(nil, tt.src)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("appendUDPHeader(%v) = %v, want %v", tt.src, got, tt.want)
		}
		if n := udpHeaderLen(tt.src); n != len(got) {
			t.Errorf("udpHeaderLen(%v) = %d, want %d", tt.src, n, len(got))
		}
	}
}
