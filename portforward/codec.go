package portforward

// Wire formats of RFC 6886 §3 (fields big-endian):
//
//	public address request   2 bytes   vers=0 | op=0
//	mapping request         12 bytes   vers=0 | op=1 UDP, 2 TCP | reserved(16) |
//	                                   internal port(16) | suggested external port(16) |
//	                                   requested lifetime(32)
//	public address response 12 bytes   vers=0 | op=128 | result(16) | epoch(32) | IPv4(32)
//	mapping response        16 bytes   vers=0 | op=128+op | result(16) | epoch(32) |
//	                                   internal port(16) | external port(16) | lifetime(32)
//	unsupported version      8 bytes   vers=0 | op=128 | result=1 | epoch(32)
//	                                   (§3.5 as corrected by erratum 3618)
//	unsupported opcode               the request itself, op|128, bytes 2–3 = result 5

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// ServerPort is the UDP port NAT-PMP servers listen on.
const ServerPort = 5351

// Opcode is a request opcode; its response carries Opcode+128.
type Opcode uint8

// The opcodes of RFC 6886.
const (
	OpPublicAddress Opcode = 0 // §3.2: external IPv4 address
	OpMapUDP        Opcode = 1 // §3.3: UDP mapping
	OpMapTCP        Opcode = 2 // §3.3: TCP mapping
)

// opResponse is the opcode bit that marks a response.
const opResponse = 128

// ResultCode is the result of a request (§3.5).
type ResultCode uint16

// The result codes of RFC 6886 §3.5.
const (
	ResultSuccess            ResultCode = 0
	ResultUnsupportedVersion ResultCode = 1
	ResultRefused            ResultCode = 2 // Not Authorized/Refused
	ResultNetworkFailure     ResultCode = 3
	ResultOutOfResources     ResultCode = 4
	ResultUnsupportedOpcode  ResultCode = 5

	numResults = 6
)

func (r ResultCode) String() string {
	switch r {
	case ResultSuccess:
		return "success"
	case ResultUnsupportedVersion:
		return "unsupported version"
	case ResultRefused:
		return "not authorized/refused"
	case ResultNetworkFailure:
		return "network failure"
	case ResultOutOfResources:
		return "out of resources"
	case ResultUnsupportedOpcode:
		return "unsupported opcode"
	}
	return "result " + strconv.Itoa(int(r))
}

// Message sizes.
const (
	publicRequestLen  = 2
	mapRequestLen     = 12
	publicResponseLen = 12
	mapResponseLen    = 16
	versionErrorLen   = 8
	// maxPacket bounds a datagram read (PCP's maximum message size);
	// anything longer is truncated by the read, which only matters for the
	// echo of an unsupported opcode.
	maxPacket = 1100
)

// Request is a parsed NAT-PMP request.
type Request struct {
	Op Opcode
	// The fields below belong to mapping requests (OpMapUDP, OpMapTCP).
	// Reserved must be ignored on reception (§3.3); it is kept so a request
	// re-encodes to the bytes it came from.
	Reserved      uint16
	InternalPort  uint16 // 0 with Lifetime 0: delete all of the client's mappings
	SuggestedPort uint16 // suggested external port; 0: no preference
	Lifetime      uint32 // requested lifetime in seconds; 0: delete
}

// ParseError is why ParseRequest rejected a datagram, and what to answer.
type ParseError struct {
	// Result is the result code to answer with: ResultUnsupportedVersion
	// (answer with AppendVersionError) or ResultUnsupportedOpcode (answer
	// with AppendOpcodeError). ResultSuccess means: drop the datagram
	// without an answer.
	Result ResultCode
	Reason string
}

func (e *ParseError) Error() string { return "nat-pmp: " + e.Reason }

// The parse errors, shared so that a rejected datagram costs no allocation.
// They are never modified.
var (
	errTooShort  = &ParseError{Reason: "datagram shorter than 2 bytes"}
	errResponse  = &ParseError{Reason: "a response (opcode ≥ 128), not a request"}
	errMapShort  = &ParseError{Reason: "mapping request shorter than 12 bytes"}
	errVersion   = &ParseError{Result: ResultUnsupportedVersion, Reason: "unsupported version"}
	errOpcode    = &ParseError{Result: ResultUnsupportedOpcode, Reason: "unsupported opcode"}
	errRespShort = &ParseError{Reason: "response too short"}
	errNotResp   = &ParseError{Reason: "not a version 0 response"}
)

// ParseRequest parses a request datagram. Its errors are *ParseError, in
// this order of checks:
//
//   - shorter than 2 bytes: dropped (nothing identifies it);
//   - opcode ≥ 128 (a response, whatever the version): dropped, as §3.5
//     requires — which also keeps two servers from answering each other;
//   - version ≠ 0 (PCP is version 2): result 1;
//   - opcode other than 0, 1, 2: result 5;
//   - a mapping request shorter than 12 bytes: dropped, since a failure
//     answer must name the request's internal port (§3.5) and a truncated
//     request has none to trust.
//
// Bytes beyond a request's fixed length are ignored, as §3.5 asks of
// clients for responses: the request is answered, and re-encodes to the
// datagram's first 2 or 12 bytes.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 2 {
		return Request{}, errTooShort
	}
	op := b[1]
	switch {
	case op >= opResponse:
		return Request{}, errResponse
	case b[0] != 0:
		return Request{}, errVersion
	case Opcode(op) == OpPublicAddress:
		return Request{Op: OpPublicAddress}, nil
	case Opcode(op) != OpMapUDP && Opcode(op) != OpMapTCP:
		return Request{}, errOpcode
	case len(b) < mapRequestLen:
		return Request{}, errMapShort
	}
	return Request{
		Op:            Opcode(op),
		Reserved:      binary.BigEndian.Uint16(b[2:]),
		InternalPort:  binary.BigEndian.Uint16(b[4:]),
		SuggestedPort: binary.BigEndian.Uint16(b[6:]),
		Lifetime:      binary.BigEndian.Uint32(b[8:]),
	}, nil
}

// AppendRequest appends the encoding of r (2 bytes for OpPublicAddress, 12
// for a mapping request) to dst.
func AppendRequest(dst []byte, r Request) []byte {
	dst = append(dst, 0, byte(r.Op))
	if r.Op == OpPublicAddress {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, r.Reserved)
	dst = binary.BigEndian.AppendUint16(dst, r.InternalPort)
	dst = binary.BigEndian.AppendUint16(dst, r.SuggestedPort)
	return binary.BigEndian.AppendUint32(dst, r.Lifetime)
}

// Response is a NAT-PMP response.
type Response struct {
	Op     Opcode // the request's opcode; the wire carries Op+128
	Result ResultCode
	Epoch  uint32 // seconds since start of epoch
	// PublicAddr is the external IPv4 address of an OpPublicAddress
	// response; it is sent as 0.0.0.0 when Result is not success (§3.2).
	PublicAddr netip.Addr
	// Mapping responses: the request's internal port, and the mapped
	// external port and granted lifetime (both 0 when no mapping exists
	// after the request: a deletion or a failure).
	InternalPort uint16
	ExternalPort uint16
	Lifetime     uint32
}

// AppendResponse appends the encoding of r to dst: 12 bytes for
// OpPublicAddress, 16 for a mapping, and the 8-byte form of §3.5 when
// r.Result is ResultUnsupportedVersion (whatever r.Op; the version error
// always carries opcode 128).
func AppendResponse(dst []byte, r Response) []byte {
	if r.Result == ResultUnsupportedVersion {
		r.Op = OpPublicAddress
	}
	dst = append(dst, 0, byte(r.Op)|opResponse)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.Result))
	dst = binary.BigEndian.AppendUint32(dst, r.Epoch)
	switch {
	case r.Result == ResultUnsupportedVersion:
		return dst
	case r.Op == OpPublicAddress:
		var a [4]byte
		if r.Result == ResultSuccess && r.PublicAddr.Unmap().Is4() {
			a = r.PublicAddr.Unmap().As4()
		}
		return append(dst, a[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, r.InternalPort)
	dst = binary.BigEndian.AppendUint16(dst, r.ExternalPort)
	return binary.BigEndian.AppendUint32(dst, r.Lifetime)
}

// AppendVersionError appends the Unsupported Version response of §3.5.
func AppendVersionError(dst []byte, epoch uint32) []byte {
	return AppendResponse(dst, Response{Result: ResultUnsupportedVersion, Epoch: epoch})
}

// AppendOpcodeError appends the answer to a request with an unsupported
// opcode (§3.5): the entire request, with the opcode's top bit set and
// result code 5 in bytes 2–3 (a request shorter than 4 bytes is padded).
func AppendOpcodeError(dst, req []byte) []byte {
	n := len(dst)
	dst = append(dst, req...)
	for len(dst) < n+4 {
		dst = append(dst, 0)
	}
	dst[n+1] |= opResponse
	binary.BigEndian.PutUint16(dst[n+2:], uint16(ResultUnsupportedOpcode))
	return dst
}

// ParseResponse parses a response, for clients and tests. It accepts the
// forms AppendResponse writes, ignores trailing bytes (§3.5: clients
// tolerate longer responses), and for any other opcode (an unsupported
// opcode echoed back) returns only Op and Result. An Unsupported Version
// response keeps the opcode it carries: servers that predate erratum 3618
// send 128 plus the request's opcode.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 4 {
		return Response{}, errRespShort
	}
	if b[0] != 0 || b[1] < opResponse {
		return Response{}, errNotResp
	}
	r := Response{Op: Opcode(b[1] - opResponse), Result: ResultCode(binary.BigEndian.Uint16(b[2:]))}
	var want int
	switch {
	case r.Result == ResultUnsupportedVersion:
		want = versionErrorLen
	case r.Op == OpPublicAddress:
		want = publicResponseLen
	case r.Op == OpMapUDP || r.Op == OpMapTCP:
		want = mapResponseLen
	default:
		return r, nil
	}
	if len(b) < want {
		return Response{}, errRespShort
	}
	r.Epoch = binary.BigEndian.Uint32(b[4:])
	switch want {
	case publicResponseLen:
		r.PublicAddr = netip.AddrFrom4([4]byte(b[8:12]))
	case mapResponseLen:
		r.InternalPort = binary.BigEndian.Uint16(b[8:])
		r.ExternalPort = binary.BigEndian.Uint16(b[10:])
		r.Lifetime = binary.BigEndian.Uint32(b[12:])
	}
	return r, nil
}
