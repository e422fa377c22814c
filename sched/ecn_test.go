package sched

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestMarkCE(t *testing.T) {
	m6 := netip.MustParseAddr("fd00::1")
	s6 := netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		name    string
		pkt     []byte
		want    bool
		wantECN byte
	}{
		{"ipv4 not-ect", ipv4Packet(serverAddr, memberAddr(1), protoTCP, 1, 2, 60, 0xb8), false, 0},
		{"ipv4 ect1", ipv4Packet(serverAddr, memberAddr(1), protoTCP, 1, 2, 60, 0xb8|1), true, 3},
		{"ipv4 ect0", ipv4Packet(serverAddr, memberAddr(1), protoTCP, 1, 2, 60, 0xb8|2), true, 3},
		// Already CE: left as CE and reported marked, as Linux's
		// IP_ECN_set_ce and IP6_ECN_set_ce do (CoDel delivers it).
		{"ipv4 ce", ipv4Packet(serverAddr, memberAddr(1), protoTCP, 1, 2, 60, 0xb8|3), true, 3},
		{"ipv6 not-ect", ipv6Packet(s6, m6, protoTCP, 1, 2, 60, 0xb8), false, 0},
		{"ipv6 ect0", ipv6Packet(s6, m6, protoTCP, 1, 2, 60, 0xb8|2), true, 3},
		{"ipv6 ect1", ipv6Packet(s6, m6, protoTCP, 1, 2, 60, 1), true, 3},
		{"ipv6 ce", ipv6Packet(s6, m6, protoTCP, 1, 2, 60, 0xb8|3), true, 3},
		{"short ipv4", []byte{0x45, 2, 0}, false, 2},
		{"garbage", []byte{0xff}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]byte(nil), tc.pkt...)
			if got := markCE(tc.pkt); got != tc.want {
				t.Fatalf("markCE = %v, want %v", got, tc.want)
			}
			if len(tc.pkt) < 20 {
				return
			}
			var ecn byte
			switch tc.pkt[0] >> 4 {
			case 4:
				ecn = tc.pkt[1] & 3
				if sum := ipv4Checksum(tc.pkt[:20]); sum != binary.BigEndian.Uint16(tc.pkt[10:]) {
					t.Fatalf("IPv4 checksum %#04x after marking, want %#04x", binary.BigEndian.Uint16(tc.pkt[10:]), sum)
				}
				if tc.pkt[1]&^3 != before[1]&^3 {
					t.Fatal("DSCP changed")
				}
				if before[1]&3 == 3 && string(tc.pkt) != string(before) {
					t.Fatal("already-CE packet changed")
				}
			case 6:
				ecn = tc.pkt[1] >> 4 & 3
				if tc.pkt[0] != before[0] || tc.pkt[1]&0xcf != before[1]&0xcf {
					t.Fatal("bits outside ECN changed")
				}
			}
			if ecn != tc.wantECN {
				t.Fatalf("ECN %d, want %d", ecn, tc.wantECN)
			}
		})
	}
}

// RFC 1624's incremental update must agree with a full recomputation for
// every starting checksum, including the 0x0000/0xffff corner.
func TestMarkCEChecksumExhaustive(t *testing.T) {
	pkt := ipv4Packet(serverAddr, memberAddr(1), protoUDP, 1, 2, 40, 2)
	for id := range 1 << 16 {
		binary.BigEndian.PutUint16(pkt[4:], uint16(id))
		pkt[1] = 2
		binary.BigEndian.PutUint16(pkt[10:], ipv4Checksum(pkt[:20]))
		markCE(pkt)
		if want := ipv4Checksum(pkt[:20]); binary.BigEndian.Uint16(pkt[10:]) != want {
			t.Fatalf("id %#04x: checksum %#04x, want %#04x", id, binary.BigEndian.Uint16(pkt[10:]), want)
		}
	}
}
