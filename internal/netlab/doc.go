// Package netlab builds the exitd lab out of network namespaces, for
// integration tests (the real exitd binary), the demo and benchmarks:
//
//	[member-i] --veth-- [hub: bridge br0] --veth mlan0-- [exit] --veth wan0-- [rtr] --veth-- [internet]
//	                                                        \--veth lan0-- [mgmt]
//
// With Options.Exits > 1 the lab holds a cluster's exits side by side
// (exit, exit1, exit2, ...): each has its own port on the hub, WAN link to
// the one router and LAN link to the one mgmt host, and addresses of its
// own (ExitAddrs); a floating address can be moved between them
// (floating.go).
//
// Every namespace is named (it appears in /run/netns, so `ip netns exec NAME`
// works for spawned programs such as wireguard-go, iperf3 and curl) and
// carries a random per-lab prefix, so labs run in parallel. Every veth is
// created inside one of the lab's namespaces with its peer placed directly in
// another: nothing ever touches the host's root network namespace, not even
// transiently, and sysctls are only written inside lab namespaces.
//
// Addressing is fixed (see the constants in addr.go): the member underlay is
// 198.18.0.0/16 and 2001:2:0:2::/64 (exit .0.1, member i 198.18.1.i, ...);
// the WAN side is 203.0.113.0/24 and 2001:2:0:1::/64, cut into two
// point-to-point links through a router namespace, as on a real network:
// the exit's WAN is 203.0.113.1/31 and 2001:2:0:1::1/127 (router .0), the
// internet host 203.0.113.2/31 and 2001:2:0:1::2/127 (router .3) — so the
// internet host is not an on-link neighbour of the exit's WAN, which exitd
// denies to members. The internet host also holds the cloud-metadata
// address 169.254.169.254. The exit's private LAN is 10.200.0.0/24 and
// fd00:200::/64 towards the mgmt host. The internet host has no route back
// to the member underlay.
//
// Lab.Close always runs to the end: it stops HTTP servers and processes
// started through the lab (and, as a safety net, any other process left in a
// lab namespace), closes handles and deletes every namespace, which removes
// its links. Close is idempotent.
//
// netlab knows nothing about exitd; it must not import any exitd package
// other than internal/testenv.
package netlab
