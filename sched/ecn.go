package sched

import "encoding/binary"

// markCE sets the ECN field of an ECN-capable (ECT(0) or ECT(1)) inner
// packet to CE and reports whether it did. Not-ECT and already-CE packets
// are left alone and get false, so CoDel drops them as Linux's
// INET_ECN_set_ce does (a sender cannot dodge AQM by pre-setting CE). The IPv4 header checksum is updated incrementally
// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
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
			return false
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
		ecn := pkt[1] >> 4 & 3
		if ecn == 0 || ecn == 3 {
			return false
		}
		pkt[1] |= 3 << 4
		return true
	}
	return false
}
