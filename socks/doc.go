// Package socks is exitd's SOCKS5 server (RFC 1928, RFC 1929).
//
// It owns the SOCKS listeners on the tunnel gateway addresses (members are
// identified by their tunnel source address, no password) and on any extra
// listeners guarded by Dante-style client rules (source prefixes, optional
// username/password). It serves CONNECT and UDP ASSOCIATE; BIND is refused.
//
// Policy comes from outside: Options.Deny is the node's deny set (the one nat
// uses), checked after name resolution; Options.Identify maps a tunnel source
// to a member; Options.UploadLimit paces a member's uploads. Per-member limits
// (sessions, connect rate, idle and handshake timeouts) are enforced here and
// refusals are counted by reason in Stats. Nothing is logged per session or
// per datagram at info level.
//
// TCP is relayed with splice(2) through Go's net.TCPConn.ReadFrom, started
// only when the source has data queued, so an idle session holds its two
// sockets and nothing else (no user-space buffer, no pipe); see relay.go.
//
// Layering: this package imports the standard library only (a test checks
// it). It must not import nat, members, sched or node; they hand it plain
// functions instead.
package socks
