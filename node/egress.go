package node

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"exitd/config"
)

// Fair out of the box: the scheduler forms the queue — and shares the
// link fairly — only where it paces below the real bottleneck. With
// egress_rate "auto" (the default) exitd paces downloads at the WAN
// link's reported speed less 5 %; a link that reports none (most virtual
// NICs) leaves downloads unpaced, which is said in the log, in exitctl
// status and in exitd_sched_egress_rate_source{source="unknown"}.

// Sources of the download pacing rate.
const (
	egressConfig  = "config"
	egressLink    = "link"
	egressOff     = "off"
	egressUnknown = "unknown"
	// egressFastLink: the link reports more than autoMaxLink, more than a
	// userspace exit forwards, so exitd itself is the bottleneck and its
	// queue forms in the scheduler (behind the in-flight bound) without
	// pacing; pacing at 9.5 Gbit/s cost 20 % of the download throughput
	// in the lab (exitlab bench, 2026-12-03: 0.80× upstream paced, 1.01×
	// unpaced).
	egressFastLink = "fast_link"
)

// autoMaxLink is the fastest link "auto" paces: above it exitd cannot
// fill the link on the machines it runs on.
const autoMaxLink = 2_500_000_000

// egressPercent of the link's speed is the auto rate: the queue must form
// here, a little below the link, not in the NIC or the provider.
const egressPercent = 95

// sysClassNet is where the kernel reports links' speeds.
const sysClassNet = "/sys/class/net"

// linkSpeed reads a link's speed in bits/s from dir/<ifname>/speed (Mb/s;
// virtual links report -1, or the read fails, when they have none).
func linkSpeed(dir, ifname string) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, ifname, "speed"))
	if err != nil {
		return 0, false
	}
	mbit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || mbit <= 0 || mbit > 400_000 {
		return 0, false
	}
	return uint64(mbit) * 1_000_000, true
}

// egressRate resolves [scheduler] egress_rate: the configured rate, none
// ("off"), or — auto — the WAN link's speed less 5 % when it reports one.
func egressRate(c *config.Config, speed func(ifname string) (uint64, bool)) (bitsPerSecond uint64, source string) {
	r := c.Scheduler.Egress
	switch {
	case r.Off:
		return 0, egressOff
	case !r.Auto():
		return r.BitsPerSecond, egressConfig
	}
	bps, ok := speed(c.WAN.Interface)
	switch {
	case !ok:
		return 0, egressUnknown
	case bps > autoMaxLink:
		return 0, egressFastLink
	}
	return bps / 100 * egressPercent, egressLink
}

// egressWarning is the status warning for an auto rate the link could not
// give ("" otherwise).
func egressWarning(source, wan string) string {
	if source != egressUnknown {
		return ""
	}
	return "fairness needs [scheduler] egress_rate: " + wan + " reports no link speed, so downloads are unpaced and the queue forms in the provider's buffer, not in exitd; set it to 90-95 % of the real bottleneck (docs/scheduler.md)"
}
