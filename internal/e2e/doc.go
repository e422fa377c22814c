// Package e2e holds the lab tests of the data-plane issue: the real exitd and
// exitctl binaries in a netlab exit namespace, Debian's wireguard-go + wg as
// members, and an internet host, checked from the outside (what the internet
// host sees, what leaks, what the counters say, what is left after stop).
//
// These are root tests (testenv.RequireRoot): `make test` runs them with
// EXITD_REQUIRE_ROOT=1 so a skip fails.
package e2e
