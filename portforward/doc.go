// Package portforward is exitd's NAT-PMP server (RFC 6886): members ask the
// exit, over the tunnel, for an inbound port on its WAN address, and get a
// DNAT mapping from that port to their inner address for a limited time.
//
// It owns three things and nothing else:
//
//   - the wire format (codec.go): requests and responses of RFC 6886 §3,
//     parsed and appended into caller buffers;
//   - the mapping table and its policy (table.go; the Mapping type and the
//     Installer and Store interfaces are in mapping.go): an external port range
//     shared by all members, a per-member maximum, a maximum lifetime, a
//     per-member creation rate, renewal, deletion and expiry per §3.3 and
//     §3.4, persisted through a Store (store.go: a JSON file written
//     atomically) so mappings survive a restart;
//   - the UDP server (server.go): one goroutine per socket the caller hands
//     it, plus one expiry goroutine.
//
// What it does not do: it opens no socket (the daemon opens UDP 5351 on
// each gateway address and passes the sockets in), writes no firewall rule
// (Installer.Apply receives the whole mapping set after every change; the
// nat side replaces its DNAT map atomically), and knows no member list
// (ServerOptions.Identify maps a tunnel source address to a member, and the
// daemon calls Table.RemoveMember when a member goes away). PCP (RFC 6887)
// is not implemented: PCP requests carry version 2 and are answered with
// result 1 (Unsupported Version), which PCP clients take as "speak NAT-PMP".
// NAT-PMP is IPv4 only, and so is this package: requests from IPv6 sources
// are dropped. The unsolicited address-change announcements of §3.2.1 (to
// 224.0.0.1:5350) are optional for this deployment and not sent: the WAN
// address rarely changes, members are not on a multicast-capable link, and
// clients renew well before their mappings expire.
//
// Epoch: "seconds since start of epoch" counts from NewServer. Mappings
// survive a restart (they are restored from the Store and reinstalled), but
// the epoch still restarts from zero, so clients see a reboot and renew
// every mapping (§3.6); a renewal of a restored mapping keeps its external
// port.
//
// Goroutines: Server.Start runs routineServe for each socket (read, answer,
// repeat; no allocation for requests that do not change the set) and one
// routineExpire (a ticker calls Table.Expire, which also retries a failed
// Apply and saves renewals). Server.Close closes the sockets, stops both,
// waits for them and saves pending renewals. The Table is safe for
// concurrent use; it calls the Installer and the Store with its lock held,
// one call at a time, so they must not call back into the Table.
//
// Logging: nothing per packet; foreign sources, malformed packets and
// answers are counted in Stats. Creating and deleting a mapping is logged
// at info level (it opens or closes a port to the internet; creation is
// rate limited per member), Installer and Store failures once per run of
// failures.
//
// Layering: portforward imports the standard library only (a test checks
// it); it must not import nat, members, config or node, which hand it plain
// functions and interfaces instead.
package portforward
