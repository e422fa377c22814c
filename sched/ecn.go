package sched

import "encoding/binary"

// markCE sets the ECN field of an ECN-capable inner packet to CE and
// reports whether the packet now carries a congestion mark, as Linux's
// IP_ECN_set_ce and IP6_ECN_set_ce do: ECT(0) and ECT(1) become CE (true),
// CE stays CE (true: the signal reaches the receiver either way, so CoDel
// counts a mark and delivers it), Not-ECT is left alone (false: CoDel
// drops it). The IPv4 header checksum is updated incrementally (RFC 1624,
// eqn. 3: HC' = ~(~HC + ~m + m')).
func markCE(pkt []byte) bool {
	if len(pkt) < 1 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return false
		}
		tos := pkt[1]
		if tos&3 == 0 {
			return false
		}
		if tos&3 == 3 {
			return true
		}
		old := binary.BigEndian.Uint16(pkt[0:2])
		pkt[1] = tos | 3
		m := binary.BigEndian.Uint16(pkt[0:2])
		sum := uint32(^binary.BigEndian.Uint16(pkt[10:12])) + uint32(^old) + uint32(m)
		sum = sum&0xffff + sum>>16
		sum = sum&0xffff + sum>>16
		binary.BigEndian.PutUint16(pkt[10:12], ^uint16(sum))
		return true
	case 6:
		if len(pkt) < 40 {
			return false
		}
		// Traffic class spans the low nibble of byte 0 and the high nibble
		// of byte 1; ECN is its two low bits, bits 4-5 of byte 1.
		switch pkt[1] >> 4 & 3 {
		case 0:
			return false
		case 3:
			return true
		}
		pkt[1] |= 3 << 4
		return true
	}
	return false
}
