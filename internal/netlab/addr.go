package netlab

import (
	"fmt"
	"net/netip"
	"strconv"
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

	// FloatingUnderlay4 is a free underlay address no exit holds when the
	// lab is built: a test moves it between exits as a floating (cluster)
	// address would (NS.AddAddr, NS.DelAddr, NS.Announce).
	FloatingUnderlay4 = "198.18.0.254"
	// MgmtServicePrefix4 holds addresses a test puts on the mgmt host's lo
	// for services every exit reaches through its LAN link (the harness's
	// etcd cluster: 10.200.255.1, .2, ...); the test adds the exits'
	// routes to it.
	MgmtServicePrefix4 = "10.200.255.0/24"
)

// More exits (Options.Exits > 1). Exit 0 is the one above; exit i (from 1)
// is Lab.Exits[i], namespace role "exit<i>", with the same interface names
// inside its namespace and these addresses (ExitAddrs gives them parsed):
//
//	underlay  198.18.0.(i+1)/16, 2001:2:0:2::(i+1)/64 on mlan0, hub port hexit<i>
//	WAN       203.0.113.(2i+3)/31, 2001:2:0:1::(2i+3)/127 on wan0,
//	          router 203.0.113.(2i+2), 2001:2:0:1::(2i+2) on its port rexit<i>
//	LAN       10.200.i.1/24, fd00:200:0:i::1/64 on lan0,
//	          mgmt host 10.200.i.2, fd00:200:0:i::2 on its eth<i>
//
// Every exit's default routes go through the one WAN router, so the
// internet host tells the exits apart by source address (HTTP /ip).
const MaxExits = 8

// Limits on the options.
const (
	MaxMembers    = 127 * 254 // member addresses stay below ExtraPrefix4
	MaxExtraAddrs = 32766     // 198.18.128.1 .. 198.18.255.254
)

// ExitPlan is one exit's addressing (ExitAddrs).
type ExitPlan struct {
	Underlay4, Underlay6 netip.Addr // on mlan0: what members dial
	WAN4, WAN6           netip.Addr // on wan0: the exit's source on the internet
	LAN4, LAN6           netip.Addr // on lan0, towards the mgmt host
	Mgmt4, Mgmt6         netip.Addr // the mgmt host's end of the LAN link

	router4, router6 netip.Addr // the WAN router's end of the WAN link
	hubPort          string     // hub bridge port towards the exit
	routerPort       string     // WAN router interface towards the exit
	mgmtIface        string     // mgmt host interface towards the exit
}

// ExitAddrs returns exit i's addresses (i from 0; exit 0 is Lab.Exit, with
// the ExitUnderlay4, ExitWAN4, ExitLAN4 ... constants).
func ExitAddrs(i int) (ExitPlan, error) {
	if i < 0 || i >= MaxExits {
		return ExitPlan{}, fmt.Errorf("netlab: exit index %d out of range [0, %d)", i, MaxExits)
	}
	if i == 0 {
		return ExitPlan{
			Underlay4: netip.MustParseAddr(ExitUnderlay4), Underlay6: netip.MustParseAddr(ExitUnderlay6),
			WAN4: netip.MustParseAddr(ExitWAN4), WAN6: netip.MustParseAddr(ExitWAN6),
			LAN4: netip.MustParseAddr(ExitLAN4), LAN6: netip.MustParseAddr(ExitLAN6),
			Mgmt4: netip.MustParseAddr(Mgmt4), Mgmt6: netip.MustParseAddr(Mgmt6),
			router4: netip.MustParseAddr(routerWAN4), router6: netip.MustParseAddr(routerWAN6),
			hubPort: HubExitPort, routerPort: routerExitIface, mgmtIface: MgmtIface,
		}, nil
	}
	b := byte(i)
	v6 := func(prefix string, last byte) netip.Addr {
		a := netip.MustParseAddr(prefix).As16()
		a[15] = last
		return netip.AddrFrom16(a)
	}
	n := strconv.Itoa(i)
	return ExitPlan{
		Underlay4: netip.AddrFrom4([4]byte{198, 18, 0, b + 1}), Underlay6: v6("2001:2:0:2::", b+1),
		WAN4: netip.AddrFrom4([4]byte{203, 0, 113, 2*b + 3}), WAN6: v6("2001:2:0:1::", 2*b+3),
		LAN4: netip.AddrFrom4([4]byte{10, 200, b, 1}), LAN6: v6(fmt.Sprintf("fd00:200:0:%x::", i), 1),
		Mgmt4: netip.AddrFrom4([4]byte{10, 200, b, 2}), Mgmt6: v6(fmt.Sprintf("fd00:200:0:%x::", i), 2),
		router4: netip.AddrFrom4([4]byte{203, 0, 113, 2*b + 2}), router6: v6("2001:2:0:1::", 2*b+2),
		hubPort: HubExitPort + n, routerPort: routerExitIface + n, mgmtIface: "eth" + n,
	}, nil
}

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
