package sched

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	k := &flowKey{11, 22, 33}
	m4 := memberAddr(5)
	m6 := netip.MustParseAddr("fd00::5")
	s6 := netip.MustParseAddr("2001:db8::1")
	udp4 := ipv4Packet(serverAddr, m4, protoUDP, 53, 4000, 100, 0)
	frag4 := ipv4Packet(serverAddr, m4, protoUDP, 53, 4000, 100, 0)
	binary.BigEndian.PutUint16(frag4[6:], 0x2000) // MF
	frag4b := ipv4Packet(serverAddr, m4, protoUDP, 99, 99, 100, 0)
	binary.BigEndian.PutUint16(frag4b[6:], 185) // offset, no ports
	icmp4 := ipv4Packet(serverAddr, m4, 1, 0, 0, 84, 0)
	udp6 := ipv6Packet(s6, m6, protoUDP, 53, 4000, 100, 0)
	hbh6 := ipv6Packet(s6, m6, 0, 0, 0, 100, 0) // hop-by-hop then UDP
	hbh6[40], hbh6[41] = protoUDP, 0
	binary.BigEndian.PutUint16(hbh6[48:], 53)
	binary.BigEndian.PutUint16(hbh6[50:], 4000)
	frag6 := ipv6Packet(s6, m6, 44, 0, 0, 100, 0)
	frag6[40] = protoUDP

	for _, tc := range []struct {
		name   string
		pkt    []byte
		byDst  bool
		want   netip.Addr
		wantOK bool
	}{
		{"ipv4 udp by dst", udp4, true, m4, true},
		{"ipv4 udp by src", udp4, false, serverAddr, true},
		{"ipv6 udp by dst", udp6, true, m6, true},
		{"ipv6 by src", udp6, false, s6, true},
		{"ipv4 truncated header", udp4[:19], true, netip.Addr{}, false},
		{"ipv6 truncated header", udp6[:39], true, netip.Addr{}, false},
		{"empty", nil, true, netip.Addr{}, false},
		{"version 5", []byte{0x50, 0, 0, 0}, true, netip.Addr{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, _ := classify(tc.pkt, tc.byDst, k)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if ok && got != keyFromAddr(tc.want) {
				t.Fatalf("member key %v, want %v", got, keyFromAddr(tc.want))
			}
		})
	}

	hash := func(p []byte) uint64 { _, _, h := classify(p, true, k); return h }
	other := ipv4Packet(serverAddr, m4, protoUDP, 53, 4001, 100, 0)
	for _, tc := range []struct {
		name string
		a, b []byte
		same bool
	}{
		{"ports separate ipv4 flows", udp4, other, false},
		{"length does not matter", udp4, ipv4Packet(serverAddr, m4, protoUDP, 53, 4000, 1400, 0), true},
		{"fragments share the 3-tuple", frag4, frag4b, true},
		{"icmp is the 3-tuple", icmp4, ipv4Packet(serverAddr, m4, 1, 7, 7, 84, 0), true},
		{"ipv6 hop-by-hop reaches the ports", hbh6, ipv6Packet(s6, m6, 0, 0, 0, 100, 0), false},
		{"ipv6 ports separate flows", udp6, ipv6Packet(s6, m6, protoUDP, 53, 4001, 100, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hash(tc.a) == hash(tc.b); got != tc.same {
				t.Fatalf("same hash = %v, want %v", got, tc.same)
			}
		})
	}
	if _, _, h := classify(frag6, true, k); h == 0 {
		t.Fatal("ipv6 fragment hashed to 0")
	}
	// The key perturbs the hash.
	_, _, h1 := classify(udp4, true, &flowKey{1, 2, 3})
	_, _, h2 := classify(udp4, true, &flowKey{4, 5, 6})
	if h1 == h2 {
		t.Fatal("hash does not depend on the key")
	}
}

func TestClassifyAllocs(t *testing.T) {
	k := &flowKey{1, 2, 3}
	p4 := ipv4Packet(serverAddr, memberAddr(1), protoTCP, 80, 999, 1400, 0)
	p6 := ipv6Packet(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fd00::1"), protoTCP, 80, 999, 1400, 0)
	if a := testing.AllocsPerRun(100, func() {
		classify(p4, true, k)
		classify(p6, false, k)
	}); a != 0 {
		t.Fatalf("classify allocates %.1f", a)
	}
}

// FuzzClassify feeds arbitrary bytes to the inner-packet classifier: it
// must not panic, must be deterministic, and an address it reports must be
// the one at the header offset.
func FuzzClassify(f *testing.F) {
	m6 := netip.MustParseAddr("fd00::9")
	for _, p := range [][]byte{
		ipv4Packet(serverAddr, memberAddr(1), protoTCP, 80, 999, 60, 2),
		ipv4Packet(serverAddr, memberAddr(1), 1, 0, 0, 28, 0),
		ipv6Packet(netip.MustParseAddr("2001:db8::1"), m6, protoUDP, 53, 9, 48, 1),
		ipv6Packet(netip.MustParseAddr("2001:db8::1"), m6, 44, 0, 0, 48, 0),
		ipv6Packet(netip.MustParseAddr("2001:db8::1"), m6, 0, 0, 0, 48, 0),
		{0x45}, {0x60, 0, 0}, {0x4f, 0, 0, 20}, {},
	} {
		f.Add(p, true)
		f.Add(p, false)
	}
	k := &flowKey{1, 2, 3}
	f.Fuzz(func(t *testing.T, pkt []byte, byDst bool) {
		key, ok, h := classify(pkt, byDst, k)
		key2, ok2, h2 := classify(pkt, byDst, k)
		if key != key2 || ok != ok2 || h != h2 {
			t.Fatal("classify is not deterministic")
		}
		if !ok {
			if h != 0 || key != (addrKey{}) {
				t.Fatal("unclassifiable packet has a key or hash")
			}
			return
		}
		var want netip.Addr
		switch pkt[0] >> 4 {
		case 4:
			off := 12
			if byDst {
				off = 16
			}
			want = netip.AddrFrom4([4]byte(pkt[off : off+4]))
		case 6:
			off := 8
			if byDst {
				off = 24
			}
			want = netip.AddrFrom16([16]byte(pkt[off : off+16]))
		default:
			t.Fatalf("version %d classified", pkt[0]>>4)
		}
		if key != keyFromAddr(want) {
			t.Fatalf("key %v, want %v", key, want)
		}
		// CE marking is fuzzed alongside: it must not panic and must keep
		// an IPv4 header checksum valid if it was valid.
		cp := append([]byte(nil), pkt...)
		valid := pkt[0]>>4 == 4 && len(pkt) >= 20 && ipv4Checksum(cp[:20]) == binary.BigEndian.Uint16(cp[10:])
		if markCE(cp) && valid && ipv4Checksum(cp[:20]) != binary.BigEndian.Uint16(cp[10:]) {
			t.Fatal("markCE broke the IPv4 header checksum")
		}
	})
}
