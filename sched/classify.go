package sched

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// addrKey is a member's inner address as a fixed-size map key. IPv4 is
// stored as an IPv4-mapped IPv6 address so one map serves both families.
type addrKey struct{ hi, lo uint64 }

func keyFromAddr(a netip.Addr) addrKey {
	b := a.Unmap().As16() // IPv4 comes back IPv4-mapped
	return addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func keyFromV6(b []byte) addrKey {
	return addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])}
}

// flowKey is the per-process random key of the flow hash: SFQ's
// perturbation. Collisions only ever merge flows of the same member.
type flowKey struct{ k0, k1, k2 uint64 }

// mix is a wyhash-style 64-bit mixer: cheap, keyed through its inputs.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

const (
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoSCTP    = 132
	protoUDPLite = 136
)

func hasPorts(proto byte) bool {
	switch proto {
	case protoTCP, protoUDP, protoDCCP, protoSCTP, protoUDPLite:
		return true
	}
	return false
}

// classify parses an inner IP packet. It returns the member address (the
// destination for download, the source for upload), whether that address
// could be read, and the keyed hash of the flow: the 5-tuple for TCP, UDP,
// DCCP, SCTP and UDP-Lite, else (and for every fragment) the 3-tuple.
// It never panics and never allocates, whatever pkt holds; garbage gets
// ok == false and a hash of 0.
func classify(pkt []byte, byDst bool, k *flowKey) (member addrKey, ok bool, hash uint64) {
	if len(pkt) < 1 {
		return addrKey{}, false, 0
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return addrKey{}, false, 0
		}
		ihl := int(pkt[0]&0x0f) * 4
		src := uint64(binary.BigEndian.Uint32(pkt[12:]))
		dst := uint64(binary.BigEndian.Uint32(pkt[16:]))
		if byDst {
			member = addrKey{0, 0xffff<<32 | dst}
		} else {
			member = addrKey{0, 0xffff<<32 | src}
		}
		proto := pkt[9]
		frag := binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 // MF or offset
		var ports uint64
		if !frag && ihl >= 20 && hasPorts(proto) && len(pkt) >= ihl+4 {
			ports = uint64(binary.BigEndian.Uint32(pkt[ihl:]))
		}
		h := mix(src<<32|dst^k.k0, uint64(proto)<<32^ports^k.k1)
		return member, true, h
	case 6:
		if len(pkt) < 40 {
			return addrKey{}, false, 0
		}
		if byDst {
			member = keyFromV6(pkt[24:40])
		} else {
			member = keyFromV6(pkt[8:24])
		}
		proto, ports := v6Transport(pkt)
		s0 := binary.BigEndian.Uint64(pkt[8:])
		s1 := binary.BigEndian.Uint64(pkt[16:])
		d0 := binary.BigEndian.Uint64(pkt[24:])
		d1 := binary.BigEndian.Uint64(pkt[32:])
		h := mix(s0^k.k0, s1^k.k1)
		h = mix(h^d0, d1^k.k2)
		h = mix(h^uint64(proto)<<32^ports, k.k0^k.k1)
		return member, true, h
	}
	return addrKey{}, false, 0
}

// v6Transport walks at most eight IPv6 extension headers and returns the
// upper-layer protocol and, when present and not a fragment, the ports.
func v6Transport(pkt []byte) (proto byte, ports uint64) {
	proto = pkt[6]
	off := 40
	for range 8 {
		switch proto {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(pkt) < off+8 {
				return proto, 0
			}
			proto = pkt[off]
			off += (int(pkt[off+1]) + 1) * 8
		case 44: // fragment: 3-tuple for every fragment
			if len(pkt) < off+8 {
				return proto, 0
			}
			return pkt[off], 0
		default:
			if hasPorts(proto) && len(pkt) >= off+4 {
				return proto, uint64(binary.BigEndian.Uint32(pkt[off:]))
			}
			return proto, 0
		}
	}
	return proto, 0
}
