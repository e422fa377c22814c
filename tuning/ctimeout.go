package tuning

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// conntrackTimeoutKeys are the conntrack timeouts (seconds) an entry can
// live for, per protocol and state.
func conntrackTimeoutKeys() []string {
	return []string{
		"net.netfilter.nf_conntrack_tcp_timeout_established",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
		"net.netfilter.nf_conntrack_tcp_timeout_last_ack",
		"net.netfilter.nf_conntrack_tcp_timeout_syn_recv",
		"net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait",
		"net.netfilter.nf_conntrack_tcp_timeout_close",
		"net.netfilter.nf_conntrack_tcp_timeout_max_retrans",
		"net.netfilter.nf_conntrack_tcp_timeout_unacknowledged",
		"net.netfilter.nf_conntrack_udp_timeout",
		"net.netfilter.nf_conntrack_udp_timeout_stream",
		"net.netfilter.nf_conntrack_icmp_timeout",
		"net.netfilter.nf_conntrack_icmpv6_timeout",
		"net.netfilter.nf_conntrack_generic_timeout",
		"net.netfilter.nf_conntrack_sctp_timeout_established",
		"net.netfilter.nf_conntrack_gre_timeout_stream",
	}
}

// LongestConntrackTimeout is the longest conntrack timeout in force: how
// long an idle tracked flow can outlive its owner. Absent keys (modules not
// loaded) are skipped; it is an error when none can be read.
func LongestConntrackTimeout(p Params) (time.Duration, error) {
	var longest time.Duration
	read := 0
	var errs []error
	for _, k := range conntrackTimeoutKeys() {
		v, err := p.Read(k)
		if errors.Is(err, ErrAbsent) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil || s < 0 {
			errs = append(errs, fmt.Errorf("tuning: %s = %q is not a number of seconds", k, v))
			continue
		}
		read++
		longest = max(longest, time.Duration(s)*time.Second)
	}
	if read == 0 {
		return 0, fmt.Errorf("tuning: no conntrack timeout readable (is nf_conntrack loaded?): %w", errors.Join(errs...))
	}
	return longest, nil
}
