// Package nat owns exitd's nftables ruleset: one inet table (default name
// "exitd") holding source NAT (masquerade or an SNAT pool) for the member
// prefixes, the forward filter (spoof, member-isolation and leak drops), the
// input filter that keeps members off the exit's own addresses, the TCP MSS
// clamp, and the named counters that prove each drop. On kernels without
// NAT in inet tables (before 5.2) the NAT chains live in an ip and an ip6
// table "<table>_nat" instead (Layout: probed at the first Apply, or forced).
//
// The chains judge only traffic entering or leaving the TUN; other
// forwarding on the host is left alone. Where members may not go is one
// DenySet (built-in lists, operator blocks, the WAN's connected prefixes,
// minus allow holes), shared by the ruleset and by user-space forwarders.
//
// The tables are replaced atomically in one netlink transaction (AddTable,
// DelTable, AddTable of each plus everything, one Flush), removed without
// touching any other table, and re-applied by Watch when someone else
// deletes or edits one. FlushConntrack forgets the members' flows at shutdown;
// FlushConntrackTo cuts member flows to destinations a new deny set blocks.
//
// Concurrency: a Manager serialises Apply, Remove and the re-apply done by
// Watch on one mutex; Present and Counters only read the kernel.
//
// nat talks to the kernel through github.com/google/nftables (pinned at
// v0.3.0; see docs/nat.md for its caveats) and vishvananda/netlink for
// conntrack. It must not import any other exitd package; its tests may import
// exitd/internal/testenv.
package nat
