package netlab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// PingResult is a parsed `ping` run.
type PingResult struct {
	Sent, Received     int
	RTTs               []time.Duration // replies, in arrival order
	Min, P50, P99, Max time.Duration
}

// Loss is the fraction of probes without a reply (1 when none were sent).
func (r *PingResult) Loss() float64 {
	if r.Sent == 0 {
		return 1
	}
	return 1 - float64(r.Received)/float64(r.Sent)
}

// Ping runs iputils `ping` inside ns: count probes to dst every interval,
// waiting at most a second for each reply. A run that completes (even with
// no reply at all) returns its result and a nil error; an error means ping
// could not run (for example "Network is unreachable": no route).
func Ping(ctx context.Context, ns *NS, dst netip.Addr, count int, interval time.Duration) (*PingResult, error) {
	if count < 1 {
		return nil, fmt.Errorf("netlab: ping: count %d < 1", count)
	}
	if interval <= 0 {
		interval = time.Second
	}
	deadline := time.Duration(count)*interval + 2*time.Second
	out, err := ns.Command(ctx, "ping", "-n",
		"-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-W", "1",
		"-w", strconv.Itoa(int(math.Ceil(deadline.Seconds()))),
		dst.String()).CombinedOutput()
	res, perr := ParsePing(out)
	if perr != nil {
		if err != nil {
			return nil, fmt.Errorf("netlab: %s: ping %s: %w: %s", ns.Name, dst, err, bytes.TrimSpace(out))
		}
		return nil, fmt.Errorf("netlab: %s: ping %s: %w", ns.Name, dst, perr)
	}
	return res, nil // exit status 1 only says "no reply", which res shows
}

var (
	pingReplyRE = regexp.MustCompile(`bytes from .*time=([0-9.]+) ms`)
	pingStatsRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
)

// ParsePing parses iputils ping output (one line per reply and the
// statistics line). It fails when there is no statistics line.
func ParsePing(out []byte) (*PingResult, error) {
	r := &PingResult{}
	stats := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := pingReplyRE.FindStringSubmatch(line); m != nil {
			ms, err := strconv.ParseFloat(m[1], 64)
			if err != nil || ms < 0 || ms > 1e9 {
				return nil, fmt.Errorf("netlab: parse ping: bad rtt in %q", line)
			}
			r.RTTs = append(r.RTTs, time.Duration(ms*float64(time.Millisecond)))
			continue
		}
		if m := pingStatsRE.FindStringSubmatch(line); m != nil {
			var err1, err2 error
			r.Sent, err1 = strconv.Atoi(m[1])
			r.Received, err2 = strconv.Atoi(m[2])
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("netlab: parse ping: bad statistics %q", line)
			}
			stats = true
		}
	}
	if !stats {
		return nil, fmt.Errorf("netlab: parse ping: no statistics line in %q", bytes.TrimSpace(out))
	}
	if len(r.RTTs) > 0 {
		s := slices.Sorted(slices.Values(r.RTTs))
		r.Min, r.Max = s[0], s[len(s)-1]
		r.P50, r.P99 = percentile(s, 0.50), percentile(s, 0.99)
	}
	return r, nil
}

// percentile is the nearest-rank q-quantile of sorted, non-empty s.
func percentile(s []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
