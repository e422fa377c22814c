package tuning

import (
	"fmt"
	"strings"
)

// lintRule fires on a key it matches when check says the value is a problem.
// The first matching rule that fires wins, so specific rules come first.
type lintRule struct {
	match func(key string) bool
	check func(e Entry, p *Profile) (Finding, bool)
}

func keys(patterns ...string) func(string) bool {
	return func(key string) bool {
		for _, pat := range patterns {
			if keyMatches(pat, key) {
				return true
			}
		}
		return false
	}
}

// intValue is the single integer value of e, if it has one.
func intValue(e Entry) (int64, bool) { return parseKernelInt(NormalizeValue(e.Value)) }

// when fires f if cond holds for e's integer value.
func when(cond func(n int64) bool, f func(e Entry, n int64) Finding) func(Entry, *Profile) (Finding, bool) {
	return func(e Entry, _ *Profile) (Finding, bool) {
		n, ok := intValue(e)
		if !ok || !cond(n) {
			return Finding{}, false
		}
		return f(e, n), true
	}
}

func always(f func(e Entry) Finding) func(Entry, *Profile) (Finding, bool) {
	return func(e Entry, _ *Profile) (Finding, bool) { return f(e), true }
}

func eq(v int64) func(int64) bool    { return func(n int64) bool { return n == v } }
func ne(v int64) func(int64) bool    { return func(n int64) bool { return n != v } }
func below(v int64) func(int64) bool { return func(n int64) bool { return n < v } }
func above(v int64) func(int64) bool { return func(n int64) bool { return n > v } }

func finding(sev Severity, cat Category, safe, why string) func(Entry, int64) Finding {
	return func(Entry, int64) Finding { return Finding{Severity: sev, Category: cat, Why: why, Safe: safe} }
}

func duration(sec int64) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case sec >= 86400 && sec%86400 == 0:
		return unit(sec/86400, "day")
	case sec >= 3600 && sec%3600 == 0:
		return unit(sec/3600, "hour")
	case sec >= 60 && sec%60 == 0:
		return unit(sec/60, "minute")
	}
	return unit(sec, "second")
}

const (
	defaultBufMax       = 4194304 // rmem_max/wmem_max on recent kernels (212992 before)
	defaultFragHigh     = 4194304
	defaultFragLow      = 3145728
	maxDefaultBuckets   = 262144 // the largest hash size the kernel picks by itself
	sensibleBacklogCeil = 65536
)

var lintRules = []lintRule{
	// --- breaks users
	{keys(KeyIPForward, "net.ipv4.conf.all.forwarding", KeyIPv6Forward), when(eq(0),
		finding(SeverityError, CategoryBreaksUsers, "1",
			"Forwarding is off: the node stops passing member traffic to the internet — every member loses connectivity."))},
	{keys("net.netfilter.nf_conntrack_tcp_timeout_established"), when(below(7200), func(e Entry, n int64) Finding {
		return Finding{Severity: SeverityError, Category: CategoryBreaksUsers, Safe: "86400 (1 day; the kernel default is 432000, 5 days)",
			Why: fmt.Sprintf("Connection tracking forgets an established TCP connection after %s without a packet. "+
				"Any SSH session, database pool, IMAP IDLE or chat connection that stays quiet longer than that hangs: "+
				"its next packet no longer matches the NAT mapping and is dropped. TCP keepalives start after 2 hours, "+
				"so this must be much longer than that.", duration(n))}
	})},
	{keys("net.netfilter.nf_conntrack_tcp_timeout_fin_wait", "net.netfilter.nf_conntrack_tcp_timeout_close_wait"), when(below(60), func(e Entry, n int64) Finding {
		return Finding{Severity: SeverityWarning, Category: CategoryBreaksUsers, Safe: "remove the line (defaults: fin_wait 120, close_wait 60)",
			Why: fmt.Sprintf("A half-closed TCP connection (one side has sent FIN and the other is still sending, as in "+
				"downloads and `ssh host command`) is forgotten after %s, and the rest of the transfer is dropped.", duration(n))}
	})},

	// --- unsafe
	{keys("net.ipv4.conf.*.rp_filter"), when(eq(0), finding(SeverityError, CategoryUnsafe, "1 (strict)",
		"Reverse-path filtering is off: the node accepts and forwards packets whose source address could never be "+
			"routed back through the interface they came in on, so anyone — a member or a host on the WAN side — "+
			"can push traffic with forged source addresses through the exit."))},
	{keys("net.ipv4.conf.*.accept_source_route"), when(ne(0), finding(SeverityError, CategoryUnsafe, "0",
		"Source routing is accepted: a remote sender can choose the path its packets take through the node, "+
			"steering them around filters to destinations it should not reach."))},
	{keys("net.ipv6.conf.*.accept_source_route"), when(above(0), finding(SeverityError, CategoryUnsafe, "0 (only type 2, Mobile IPv6; the default)",
		"Asks the node to honour IPv6 routing headers chosen by the sender — the same path-steering risk as IPv4 "+
			"source routing (RFC 5095 deprecated type 0 headers for this reason)."))},
	{keys("net.ipv4.conf.*.accept_redirects", "net.ipv6.conf.*.accept_redirects"), when(ne(0), finding(SeverityError, CategoryUnsafe, "0",
		"ICMP redirects are accepted: any host on a shared network segment can rewrite the node's routes and "+
			"divert members' traffic through itself."))},
	{keys("net.ipv4.conf.*.send_redirects"), when(ne(0), finding(SeverityError, CategoryUnsafe, "0",
		"The node sends ICMP redirects, telling neighbours about its routes. Members reach an exit through a "+
			"tunnel and never need a redirect; sending them only leaks routing topology."))},
	{keys("net.ipv4.tcp_syncookies"), when(eq(0), finding(SeverityError, CategoryUnsafe, "1",
		"Without SYN cookies a SYN flood against any port the node listens on (SSH, metrics) fills the listen queue "+
			"and locks out real connections. Cookies engage only when the queue overflows, so turning them off "+
			"gains no throughput."))},
	{keys("net.ipv4.icmp_echo_ignore_broadcasts"), when(eq(0), finding(SeverityWarning, CategoryUnsafe, "1",
		"The node answers pings sent to broadcast addresses, which makes it usable as an amplifier (smurf attack)."))},

	// --- mis-sized
	{keys(KeyConntrackMax, "net.nf_conntrack_max"), conntrackMaxRule},
	{keys("net.core.rmem_max", "net.core.wmem_max"), when(below(defaultBufMax), func(e Entry, n int64) Finding {
		dir := "receive"
		if strings.HasSuffix(e.Key, "wmem_max") {
			dir = "send"
		}
		return Finding{Severity: SeverityWarning, Category: CategoryMisSized, Safe: "33554432 (32 MiB)",
			Why: fmt.Sprintf("Caps every socket's %s buffer at %s — below the kernel's own default (208 KiB on older "+
				"kernels, 4 MiB on recent ones). The WireGuard UDP socket cannot get the few MiB it needs to absorb "+
				"bursts, so member packets are dropped under load.", dir, humanBytes(n))}
	})},
	{keys("net.ipv4.ipfrag_high_thresh"), when(below(defaultFragHigh), func(e Entry, n int64) Finding {
		return Finding{Severity: SeverityWarning, Category: CategoryMisSized, Safe: "remove the line (default 4194304, 4 MiB)",
			Why: fmt.Sprintf("Limits the memory for reassembling IP fragments to %s, below the 4 MiB default. When it "+
				"fills, fragments are dropped: large DNS answers and UDP over paths with a small MTU fail.", humanBytes(n))}
	})},
	{keys("net.ipv4.ipfrag_low_thresh"), when(below(defaultFragLow), func(e Entry, n int64) Finding {
		return Finding{Severity: SeverityWarning, Category: CategoryMisSized, Safe: "remove the line (default 3145728, 3 MiB)",
			Why: fmt.Sprintf("Goes with ipfrag_high_thresh: once the reassembly limit is hit, fragments are dropped until "+
				"usage falls to %s, below the 3 MiB default.", humanBytes(n))}
	})},
	{keys("net.ipv4.udp_mem", "net.ipv4.tcp_mem"), always(func(e Entry) Finding {
		f := strings.Fields(e.Value)
		why := "Counted in 4 KiB pages, not bytes. The kernel sizes this from the machine's memory at boot; a fixed " +
			"value copied from another machine overrides that — too low and sockets drop packets (WireGuard itself " +
			"uses UDP), too high and they can exhaust memory."
		if n, ok := lastInt(f); ok && len(f) == 3 {
			why = fmt.Sprintf("Counted in 4 KiB pages, not bytes: the hard limit %d pages is %s for all sockets "+
				"together, whatever this machine's memory. The kernel sizes it from RAM at boot; a fixed value "+
				"overrides that — too low and sockets drop packets (WireGuard itself uses UDP), too high and they "+
				"can exhaust memory.", n, humanBytes(n*4096))
		}
		return Finding{Severity: SeverityWarning, Category: CategoryMisSized, Safe: "remove the line (the kernel sizes it from memory)", Why: why}
	})},
	{keys("fs.file-max"), when(below(1048576), func(e Entry, n int64) Finding {
		return Finding{Severity: SeverityWarning, Category: CategoryMisSized, Safe: "remove the line (the kernel sizes it from memory)",
			Why: fmt.Sprintf("The kernel sizes the system-wide open-file limit from memory (millions on a server, the "+
				"maximum under systemd); a fixed %d can lower it, and the daemon then fails with \"too many open "+
				"files\" under load.", n)}
	})},
	{keys("net.core.netdev_max_backlog"), when(above(sensibleBacklogCeil), func(e Entry, n int64) Finding {
		return Finding{Severity: SeverityWarning, Category: CategoryMisSized, Safe: "8192",
			Why: fmt.Sprintf("A per-CPU input queue of %d packets (up to %s per CPU at 1500 bytes) does not prevent "+
				"loss; under overload it turns into seconds of queueing delay for every member (bufferbloat).", n, humanBytes(n*1500))}
	})},

	// --- no effect on forwarded traffic
	{keys("net.ipv4.tcp_sack", "net.ipv4.tcp_dsack"), when(eq(0), finding(SeverityWarning, CategoryNoEffect, "remove the line (default 1)",
		"Forwarded TCP is negotiated end to end between the member and the server, so this gains nothing for "+
			"members; it only makes the node's own connections recover from loss one segment per round trip."))},
	{keys("net.ipv4.tcp_timestamps"), when(eq(0), finding(SeverityWarning, CategoryNoEffect, "remove the line (default 1)",
		"Forwarded TCP is negotiated end to end, so this gains nothing for members; it only takes PAWS and "+
			"accurate round-trip measurement away from the node's own connections."))},
	{keys("net.ipv4.tcp_window_scaling"), when(eq(0), finding(SeverityWarning, CategoryNoEffect, "remove the line (default 1)",
		"Forwarded TCP is negotiated end to end, so this gains nothing for members; it only limits the node's own "+
			"connections to 64 KiB in flight."))},
	{keys("net.ipv4.tcp_moderate_rcvbuf"), when(eq(0), finding(SeverityWarning, CategoryNoEffect, "remove the line (default 1)",
		"Forwarded TCP is negotiated end to end, so this gains nothing for members; it only turns off receive-buffer "+
			"autotuning for the node's own connections, which then stay slow."))},
	{keys("net.ipv4.tcp_congestion_control"), always(func(Entry) Finding {
		return Finding{Severity: SeverityInfo, Category: CategoryNoEffect, Safe: "remove the line",
			Why: "Congestion control runs at the endpoints: forwarded member traffic uses the member's and the " +
				"server's algorithm. This changes only the node's own connections."}
	})},

	// --- obsolete
	{keys("net.ipv4.route.flush", "net.ipv6.route.flush"), always(func(Entry) Finding {
		return Finding{Severity: SeverityInfo, Category: CategoryObsolete, Safe: "remove the line",
			Why: "A trigger, not a setting: writing it flushes routing caches (IPv4 has had none since Linux " +
				"3.6). At boot there is nothing to flush, and new values apply without it."}
	})},
	{keys("net.ipv4.tcp_fack"), always(func(Entry) Finding {
		return Finding{Severity: SeverityInfo, Category: CategoryObsolete, Safe: "remove the line",
			Why: "Ignored since Linux 4.15 (RACK replaced FACK loss recovery); the key only remains so old files do not fail."}
	})},
	{keys("net.ipv4.tcp_tw_recycle"), always(func(Entry) Finding {
		return Finding{Severity: SeverityWarning, Category: CategoryObsolete, Safe: "remove the line",
			Why: "Removed in Linux 4.12 because it broke clients behind NAT — on an exit node, every member. " +
				"Writing it fails on current kernels."}
	})},
	{keys("net.ipv4.tcp_low_latency"), always(func(Entry) Finding {
		return Finding{Severity: SeverityInfo, Category: CategoryObsolete, Safe: "remove the line",
			Why: "Ignored since Linux 4.14 (the prequeue it controlled is gone)."}
	})},

	// --- syntax the parser accepts but the kernel will not
	{func(string) bool { return true }, func(e Entry, _ *Profile) (Finding, bool) {
		before, _, found := strings.Cut(e.Value, "#")
		if !found {
			return Finding{}, false
		}
		return Finding{Severity: SeverityError, Category: CategorySyntax, Safe: strings.TrimSpace(before),
			Why: "sysctl files have no inline comments: the \"#\" and everything after it are part of the value " +
				"written to the kernel, which rejects it or stores it."}, true
	}},
}

// conntrackMaxRule: a big table needs a matching hash table and memory.
func conntrackMaxRule(e Entry, p *Profile) (Finding, bool) {
	n, ok := intValue(e)
	if !ok {
		return Finding{}, false
	}
	_, hasBuckets := p.Lookup(KeyBuckets)
	var why []string
	if n > maxDefaultBuckets && !hasBuckets {
		chain := 2 * n / maxDefaultBuckets
		why = append(why, fmt.Sprintf("%d entries share the default hash table (at most %d buckets; every "+
			"connection is hashed twice), so a full table means chains of about %d entries searched for every packet",
			n, maxDefaultBuckets, chain))
	}
	if n > ConntrackCap {
		why = append(why, fmt.Sprintf("a full table pins about %s of kernel memory that cannot be swapped",
			humanBytes(n*ConntrackEntryBytes)))
	}
	if len(why) == 0 {
		return Finding{}, false
	}
	return Finding{Severity: SeverityWarning, Category: CategoryMisSized,
		Safe: "remove the line: `exitd tune apply` sizes the table from memory with matching buckets (8 GiB → 1048576)",
		Why:  capitalize(strings.Join(why, "; and ")) + "."}, true
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func lastInt(fields []string) (int64, bool) {
	if len(fields) == 0 {
		return 0, false
	}
	return parseKernelInt(fields[len(fields)-1])
}
