package portforward

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// The byte strings below are built by hand from the diagrams of RFC 6886
// §3.2, §3.3 and §3.5 (with erratum 3618): 6881 = 0x1ae1, 40000 = 0x9c40,
// 7200 = 0x1c20, epoch 1234 = 0x04d2.

func TestRequestWire(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  Request
		wire []byte
	}{
		{"public address", Request{Op: OpPublicAddress}, []byte{0, 0}},
		{"map UDP 6881, suggest 40000, 7200 s",
			Request{Op: OpMapUDP, InternalPort: 6881, SuggestedPort: 40000, Lifetime: 7200},
			[]byte{0, 1, 0, 0, 0x1a, 0xe1, 0x9c, 0x40, 0, 0, 0x1c, 0x20}},
		{"map TCP 22, no suggestion, max lifetime",
			Request{Op: OpMapTCP, InternalPort: 22, Lifetime: 0xffffffff},
			[]byte{0, 2, 0, 0, 0, 22, 0, 0, 0xff, 0xff, 0xff, 0xff}},
		{"delete TCP 6881", Request{Op: OpMapTCP, InternalPort: 6881},
			[]byte{0, 2, 0, 0, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0}},
		{"delete all UDP", Request{Op: OpMapUDP}, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"reserved bits kept", Request{Op: OpMapUDP, Reserved: 0xbeef, InternalPort: 1, Lifetime: 1},
			[]byte{0, 1, 0xbe, 0xef, 0, 1, 0, 0, 0, 0, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppendRequest(nil, tc.req); !bytes.Equal(got, tc.wire) {
				t.Errorf("AppendRequest = % x, want % x", got, tc.wire)
			}
			got, err := ParseRequest(tc.wire)
			if err != nil || got != tc.req {
				t.Errorf("ParseRequest = %+v, %v; want %+v", got, err, tc.req)
			}
			// Appending keeps what the buffer held.
			if got := AppendRequest([]byte{9}, tc.req); !bytes.Equal(got, append([]byte{9}, tc.wire...)) {
				t.Errorf("AppendRequest after a prefix = % x", got)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		wire   []byte
		result ResultCode // 0: dropped
	}{
		{"empty", nil, 0},
		{"one byte", []byte{0}, 0},
		{"one byte, other version", []byte{2}, 0},
		{"public address response", []byte{0, 128, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, 0},
		{"mapping response", []byte{0, 130, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1}, 0},
		{"response of another version", []byte{2, 129}, 0},
		{"version 1", []byte{1, 0}, ResultUnsupportedVersion},
		{"PCP (version 2) MAP", append([]byte{2, 1}, make([]byte, 58)...), ResultUnsupportedVersion},
		{"version 255, unknown opcode", []byte{255, 77}, ResultUnsupportedVersion},
		{"opcode 3", []byte{0, 3}, ResultUnsupportedOpcode},
		{"opcode 127 with body", []byte{0, 127, 0, 0, 1, 2, 3, 4}, ResultUnsupportedOpcode},
		{"UDP mapping of 2 bytes", []byte{0, 1}, 0},
		{"TCP mapping of 11 bytes", []byte{0, 2, 0, 0, 0x1a, 0xe1, 0x9c, 0x40, 0, 0, 0x1c}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest(tc.wire)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseRequest = %+v, %v; want a *ParseError", r, err)
			}
			if pe.Result != tc.result || r != (Request{}) {
				t.Errorf("result %v (request %+v), want %v", pe.Result, r, tc.result)
			}
			if pe.Error() == "" || pe.Reason == "" {
				t.Error("error without a reason")
			}
		})
	}
}

// TestParseRequestTrailing: bytes after the fixed fields are ignored.
func TestParseRequestTrailing(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire []byte
		want Request
	}{
		{"public address + 10", append([]byte{0, 0}, make([]byte, 10)...), Request{}},
		{"mapping + 4", []byte{0, 2, 0, 0, 0, 80, 0, 0, 0, 0, 0, 60, 1, 2, 3, 4},
			Request{Op: OpMapTCP, InternalPort: 80, Lifetime: 60}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.wire)
			if err != nil || got != tc.want {
				t.Fatalf("ParseRequest = %+v, %v; want %+v", got, err, tc.want)
			}
			if enc := AppendRequest(nil, got); !bytes.Equal(enc, tc.wire[:len(enc)]) {
				t.Errorf("re-encoded % x, not a prefix of % x", enc, tc.wire)
			}
		})
	}
}

func TestResponseWire(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp Response
		wire []byte
		// parsed is what ParseResponse returns, if it differs from resp.
		parsed *Response
	}{
		{"public address", Response{Op: OpPublicAddress, Epoch: 1234, PublicAddr: wan},
			[]byte{0, 128, 0, 0, 0, 0, 0x04, 0xd2, 203, 0, 113, 1}, nil},
		{"public address, network failure: address zeroed",
			Response{Op: OpPublicAddress, Result: ResultNetworkFailure, Epoch: 1234, PublicAddr: wan},
			[]byte{0, 128, 0, 3, 0, 0, 0x04, 0xd2, 0, 0, 0, 0},
			&Response{Op: OpPublicAddress, Result: ResultNetworkFailure, Epoch: 1234, PublicAddr: netip.IPv4Unspecified()}},
		{"UDP mapped 6881 → 40000 for 7200 s",
			Response{Op: OpMapUDP, Epoch: 1234, InternalPort: 6881, ExternalPort: 40000, Lifetime: 7200},
			[]byte{0, 129, 0, 0, 0, 0, 0x04, 0xd2, 0x1a, 0xe1, 0x9c, 0x40, 0, 0, 0x1c, 0x20}, nil},
		{"TCP deleted", Response{Op: OpMapTCP, Epoch: 1, InternalPort: 6881},
			[]byte{0, 130, 0, 0, 0, 0, 0, 1, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0}, nil},
		{"TCP out of resources", Response{Op: OpMapTCP, Result: ResultOutOfResources, Epoch: 1, InternalPort: 6881},
			[]byte{0, 130, 0, 4, 0, 0, 0, 1, 0x1a, 0xe1, 0, 0, 0, 0, 0, 0}, nil},
		{"unsupported version (erratum 3618: opcode 128)",
			Response{Op: OpMapTCP, Result: ResultUnsupportedVersion, Epoch: 1234},
			[]byte{0, 128, 0, 1, 0, 0, 0x04, 0xd2},
			&Response{Op: OpPublicAddress, Result: ResultUnsupportedVersion, Epoch: 1234}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppendResponse(nil, tc.resp); !bytes.Equal(got, tc.wire) {
				t.Errorf("AppendResponse = % x, want % x", got, tc.wire)
			}
			want := tc.resp
			if tc.parsed != nil {
				want = *tc.parsed
			}
			got, err := ParseResponse(tc.wire)
			if err != nil || got != want {
				t.Errorf("ParseResponse = %+v, %v; want %+v", got, err, want)
			}
			// Clients tolerate longer responses (§3.5).
			got, err = ParseResponse(append(append([]byte(nil), tc.wire...), 1, 2, 3))
			if err != nil || got != want {
				t.Errorf("ParseResponse with trailing bytes = %+v, %v", got, err)
			}
			if _, err := ParseResponse(tc.wire[:len(tc.wire)-1]); err == nil {
				t.Error("ParseResponse accepted a truncated response")
			}
		})
	}
}

func TestVersionError(t *testing.T) {
	want := []byte{0, 128, 0, 1, 0, 0, 0x04, 0xd2}
	if got := AppendVersionError(nil, 1234); !bytes.Equal(got, want) {
		t.Errorf("AppendVersionError = % x, want % x", got, want)
	}
}

func TestOpcodeError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req, want []byte
	}{
		{"2 bytes padded", []byte{0, 3}, []byte{0, 131, 0, 5}},
		{"3 bytes padded", []byte{0, 100, 7}, []byte{0, 228, 0, 5}},
		{"whole request echoed", []byte{0, 7, 0xaa, 0xbb, 1, 2, 3, 4, 5}, []byte{0, 135, 0, 5, 1, 2, 3, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendOpcodeError([]byte{0xff}, tc.req)
			if !bytes.Equal(got, append([]byte{0xff}, tc.want...)) {
				t.Errorf("AppendOpcodeError = % x, want ff % x", got, tc.want)
			}
			r, err := ParseResponse(got[1:])
			if err != nil || r.Result != ResultUnsupportedOpcode || r.Op != Opcode(tc.req[1]) {
				t.Errorf("ParseResponse = %+v, %v", r, err)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire []byte
	}{
		{"empty", nil},
		{"3 bytes", []byte{0, 128, 0}},
		{"a request", []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"version 2", []byte{2, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"public address of 8 bytes", []byte{0, 128, 0, 0, 0, 0, 0, 1}},
		{"mapping of 12 bytes", []byte{0, 129, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1}},
		{"version error of 4 bytes", []byte{0, 128, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := ParseResponse(tc.wire); err == nil {
				t.Errorf("ParseResponse = %+v, want an error", r)
			}
		})
	}
}

func TestResultCodeString(t *testing.T) {
	for r, want := range map[ResultCode]string{
		ResultSuccess: "success", ResultUnsupportedVersion: "unsupported version",
		ResultRefused: "not authorized/refused", ResultNetworkFailure: "network failure",
		ResultOutOfResources: "out of resources", ResultUnsupportedOpcode: "unsupported opcode",
		9: "result 9",
	} {
		if got := r.String(); got != want {
			t.Errorf("ResultCode(%d) = %q, want %q", r, got, want)
		}
	}
}

// TestCodecAllocs: parsing (also rejecting) and encoding into a buffer with
// room allocate nothing.
func TestCodecAllocs(t *testing.T) {
	buf := make([]byte, 0, maxPacket+4)
	inputs := [][]byte{
		{0, 0}, {0, 1, 0, 0, 0x1a, 0xe1, 0x9c, 0x40, 0, 0, 0x1c, 0x20},
		{}, {1, 0}, {0, 9}, {0, 129}, {0, 1, 2},
	}
	n := testing.AllocsPerRun(100, func() {
		for _, in := range inputs {
			ParseRequest(in)
		}
		b := AppendResponse(buf[:0], Response{Op: OpMapUDP, InternalPort: 1, ExternalPort: 2, Lifetime: 3})
		b = AppendResponse(b[:0], Response{PublicAddr: wan})
		b = AppendVersionError(b[:0], 7)
		b = AppendOpcodeError(b[:0], inputs[4])
		b = AppendRequest(b[:0], Request{Op: OpMapTCP, InternalPort: 1})
		ParseResponse(b)
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}
