package netlab

import (
	"fmt"
	"net/netip"
)

// Interface names inside the lab namespaces. Each namespace is private to
// one lab, so the names are fixed.
const (
	ExitUnderlayIface = "mlan0" // exit, towards the hub (members' internet)
	ExitWANIface      = "wan0"  // exit, towards the internet host
	ExitLANIface      = "lan0"  // exit, towards the mgmt host
	InternetIface     = "eth0"  // internet host, towards the exit
	MgmtIface         = "eth0"  // mgmt host, towards the exit
	MemberIface       = "eth0"  // member, towards the hub
	HubBridge         = "br0"   // hub bridge joining the exit and members
	HubExitPort       = "hexit" // hub port towards the exit (upload shaping)

	routerExitIface = "rexit" // WAN router, towards the exit
	routerInetIface = "rinet" // WAN router, towards the internet host
)

// Fixed lab addresses. They are strings so tests and configs can use them
// directly; the NS fields and helpers below carry the parsed forms.
const (
	UnderlayPrefix4 = "198.18.0.0/16"   // members' internet (IPv4)
	UnderlayPrefix6 = "2001:2:0:2::/64" // members' internet (IPv6)
	ExitUnderlay4   = "198.18.0.1"      // the address members dial
	ExitUnderlay6   = "2001:2:0:2::1"
	ExtraPrefix4    = "198.18.128.0/17" // extra load-generator sources on member 1

	WANPrefix4 = "203.0.113.0/24"
	WANPrefix6 = "2001:2:0:1::/64"
	ExitWAN4   = "203.0.113.1"
	ExitWAN6   = "2001:2:0:1::1"
	Internet4  = "203.0.113.2"
	Internet6  = "2001:2:0:1::2"
	Metadata4  = "169.254.169.254" // "cloud metadata", on the internet host's lo

	// WANPrefix4 and WANPrefix6 are cut into point-to-point links through
	// a router, as on a real network: the exit's WAN link (exit .1, router
	// .0) and the internet host's (internet host .2, router .3). exitd
	// denies members the WAN's connected prefixes, so the internet host
	// must not be on the exit's.
	wanLinkBits4 = 31
	wanLinkBits6 = 127
	routerWAN4   = "203.0.113.0" // the exit's next hop
	routerWAN6   = "2001:2:0:1::"
	routerInet4  = "203.0.113.3" // the internet host's next hop
	routerInet6  = "2001:2:0:1::3"

	LANPrefix4 = "10.200.0.0/24"
	LANPrefix6 = "fd00:200::/64"
	ExitLAN4   = "10.200.0.1"
	ExitLAN6   = "fd00:200::1"
	Mgmt4      = "10.200.0.2"
	Mgmt6      = "fd00:200::2"
)

// Limits on the options.
const (
	MaxMembers    = 127 * 254 // member addresses stay below ExtraPrefix4
	MaxExtraAddrs = 32766     // 198.18.128.1 .. 198.18.255.254
)

// MemberAddr4 returns member i's underlay address (i from 1): 198.18.1.1 for
// member 1, 198.18.1.254 for member 254, 198.18.2.1 for member 255.
func MemberAddr4(i int) (netip.Addr, error) {
	if i < 1 || i > MaxMembers {
		return netip.Addr{}, fmt.Errorf("netlab: member index %d out of range [1, %d]", i, MaxMembers)
	}
	hi, lo := 1+(i-1)/254, 1+(i-1)%254
	return netip.AddrFrom4([4]byte{198, 18, byte(hi), byte(lo)}), nil
}

// MemberAddr6 returns member i's IPv6 underlay address, which mirrors the
// IPv4 one: 2001:2:0:2::1:1 for 198.18.1.1.
func MemberAddr6(i int) (netip.Addr, error) {
	a4, err := MemberAddr4(i)
	if err != nil {
		return netip.Addr{}, err
	}
	b4 := a4.As4()
	var b [16]byte
	copy(b[:], netip.MustParseAddr("2001:2:0:2::").AsSlice())
	b[13], b[15] = b4[2], b4[3]
	return netip.AddrFrom16(b), nil
}

// ExtraAddr4 returns the k-th extra underlay address (k from 0):
// 198.18.128.1, 198.18.128.2, ... within ExtraPrefix4.
func ExtraAddr4(k int) (netip.Addr, error) {
	if k < 0 || k >= MaxExtraAddrs {
		return netip.Addr{}, fmt.Errorf("netlab: extra address index %d out of range [0, %d)", k, MaxExtraAddrs)
	}
	n := uint32(198)<<24 | uint32(18)<<16 | uint32(128)<<8 + uint32(k) + 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), nil
}
