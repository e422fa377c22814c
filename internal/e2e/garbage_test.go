package e2e

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"exitd/internal/netlab"
)

// garbagePackets are malformed IP packets a hostile member can put into its
// tunnel: bad lengths, fragments, IPv6 extension chains, zero-length and
// jumbo payloads, unknown versions. Each carries the member's own source
// address so it passes the member's wireguard-go and reaches exitd.
func garbagePackets(src4, src6 netip.Addr, r *rand.Rand) [][]byte {
	dst4 := netip.MustParseAddr(netlab.Internet4).As4()
	dst6 := netip.MustParseAddr(netlab.Internet6).As16()
	v4 := func(totalLen uint16, flagsFrag uint16, proto byte, payload []byte) []byte {
		h := make([]byte, 20, 20+len(payload))
		h[0], h[8], h[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(h[2:], totalLen)
		binary.BigEndian.PutUint16(h[6:], flagsFrag)
		s := src4.As4()
		copy(h[12:], s[:])
		copy(h[16:], dst4[:])
		return append(h, payload...)
	}
	v6 := func(payloadLen uint16, next byte, payload []byte) []byte {
		h := make([]byte, 40, 40+len(payload))
		h[0], h[6], h[7] = 0x60, next, 64
		binary.BigEndian.PutUint16(h[4:], payloadLen)
		s := src6.As16()
		copy(h[8:], s[:])
		copy(h[24:], dst6[:])
		return append(h, payload...)
	}
	junk := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return b
	}
	// An IPv6 chain of hop-by-hop, routing, fragment and destination
	// options headers, each pointing at the next, ending in garbage.
	chain := []byte{43, 0, 0, 0, 0, 0, 0, 0, 44, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 1, 0, 0, 0, 7, 59, 0, 0, 0, 0, 0, 0, 0}
	return [][]byte{
		v4(10, 0, unix.IPPROTO_UDP, junk(30)),      // total length below the header
		v4(60000, 0, unix.IPPROTO_TCP, junk(40)),   // total length beyond the packet
		v4(48, 0x2000, unix.IPPROTO_UDP, junk(28)), // first fragment, more to come
		v4(48, 0x00ff, unix.IPPROTO_UDP, junk(28)), // a middle fragment with no first
		v4(20, 0, unix.IPPROTO_TCP, nil),           // zero-length TCP
		v4(20, 0, 253, nil),                        // experimental protocol, empty
		v6(uint16(len(chain)), 0, chain),           // extension header chain
		v6(0, unix.IPPROTO_UDP, nil),               // zero-length v6
		v6(65535, unix.IPPROTO_TCP, junk(20)),      // payload length beyond the packet
		v6(8, 44, []byte{17, 0, 0, 1, 1, 2, 3, 4}), // atomic fragment of nothing
		append([]byte{0x75}, junk(60)...),          // IP version 7
		{},                                         // empty
		v4(1400, 0, unix.IPPROTO_UDP, junk(1380)),  // large, plausible
		append(v6(1400, unix.IPPROTO_UDP, nil), junk(1400)...),
	}
}

// sendIntoTunnel writes raw IP packets to the member's WireGuard interface
// (AF_PACKET, SOCK_DGRAM): its wireguard-go encrypts them to exitd as if an
// application had sent them.
func sendIntoTunnel(ns *netlab.NS, dev string, pkts [][]byte, rounds int) error {
	return ns.Run(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for range rounds {
			for _, p := range pkts {
				proto := uint16(unix.ETH_P_IP)
				if len(p) > 0 && p[0]>>4 == 6 {
					proto = unix.ETH_P_IPV6
				}
				sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(proto)}
				if err := unix.Sendto(fd, p, 0, sa); err != nil && err != syscall.EINVAL && err != syscall.EMSGSIZE {
					return err
				}
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestGarbageKeepsForwarding: random UDP payloads at UDP/443 from the
// members' network, and malformed IP packets from inside a connected
// member's tunnel; exitd keeps forwarding for the other member, counts
// drops, and never panics.
func TestGarbageKeepsForwarding(t *testing.T) {
	l := newLab(t, 2, "")
	ctx := context.Background()
	evil, err := l.node.AddMember(ctx, l.Members[0], "evil")
	if err != nil {
		t.Fatal(err)
	}
	good, err := l.node.AddMember(ctx, l.Members[1], "good")
	if err != nil {
		t.Fatal(err)
	}
	reachesInternet(t, evil.NS)
	reachesInternet(t, good.NS)
	hdrErrors := func() float64 {
		mfs := scrape(t, l.Lab)
		return value(mfs, "exitd_ip_header_errors_total", map[string]string{"family": "ipv4"}) +
			value(mfs, "exitd_ip_header_errors_total", map[string]string{"family": "ipv6"})
	}
	before := hdrErrors()
	r := rand.New(rand.NewPCG(1, 2))

	// Random UDP to the exit's port 443 from the underlay, bounded: 20,000
	// datagrams of 0-1500 bytes.
	if err := evil.NS.Run(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(netlab.ExitUnderlay4+":443")))
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 1500)
		for i := range 20000 {
			n := r.IntN(len(buf))
			for j := range n {
				buf[j] = byte(r.UintN(256))
			}
			if i%4 == 0 && n >= 4 { // valid WireGuard message types, garbage bodies
				binary.LittleEndian.PutUint32(buf, uint32(1+i%4))
			}
			c.Write(buf[:n])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Malformed packets from inside the tunnel, with the member's own
	// addresses (anything else is dropped by allowed-IPs already).
	pkts := garbagePackets(netip.MustParseAddr(evil.Addr4), netip.MustParseAddr(evil.Addr6), r)
	if err := sendIntoTunnel(evil.NS, evil.Dev, pkts, 200); err != nil {
		t.Fatal(err)
	}

	// The good member still works, the daemon answers, nothing panicked.
	reachesInternet(t, good.NS)
	out, err := l.node.Exitctl(ctx, "status")
	if err != nil {
		t.Fatalf("status after garbage: %v", err)
	}
	if !strings.Contains(string(out), "2 connected") {
		t.Fatalf("status after garbage:\n%s", out)
	}
	if strings.Contains(l.node.Proc.Output(), "panic") {
		t.Fatalf("exitd panicked:\n%s", l.node.Proc.Output())
	}
	// The kernel drops what it cannot parse; exitd exports the count.
	// The packets cross two userspace WireGuard devices: on a loaded
	// machine the last ones arrive after the good member's check.
	var after float64
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool { after = hdrErrors(); return after > before }); err != nil {
		t.Errorf("exitd_ip_header_errors_total did not rise (%v -> %v) within 10 s of %d malformed packets", before, after, len(pkts)*200)
	}
}
