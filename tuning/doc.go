// Package tuning owns exitd's kernel profile: the bundled sysctl file
// (60-exitd.conf, embedded here and installed by the package as
// /usr/lib/sysctl.d/60-exitd.conf), a parser for sysctl.conf syntax, applying
// the profile in a safe order with read-back, checking which keys are in
// force, a linter for dangerous profiles, the boot-time resolution of the
// sysctl.d directories, and a Monitor that re-checks for drift.
//
// Pipeline, as the daemon uses it:
//
//	Bundled → WithConntrack(SizeConntrack(...)) → Apply (privileged, `exitd tune apply`)
//	                                            → EnsureForwarding, Check, Monitor (daemon)
//
// Every kernel access goes through Params (Sysctl on a host, a temp dir or a
// fake in tests), so nothing here touches /proc or /sys unless the caller
// says so. The package has no globals with state and does no I/O in init.
//
// It must import only the standard library: no exitd package, no netlink,
// no cobra.
package tuning
