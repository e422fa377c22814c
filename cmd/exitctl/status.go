package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/control"
	"exitd/units"
)

func newStatusCmd(f *flags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the node at a glance",
		Long: `One screen: version, uptime, members connected and configured, throughput
in and out, the scheduler, nftables drops, conntrack use, kernel profile
drift, and warnings with what to do about them.

With --json, the status object with the current load figures under "load".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := f.client()
			s, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			l, lerr := c.Load(cmd.Context()) // absent on older nodes
			var lp *control.Load
			if lerr == nil {
				lp = &l
			}
			if f.json {
				return writeStatusJSON(stdout, s, lp)
			}
			writeStatus(stdout, s, lp, time.Now())
			return nil
		},
	}
}

// writeStatusJSON prints the status with the load figures added under
// "load", so scripts reading the status fields keep working.
func writeStatusJSON(w io.Writer, s control.Status, l *control.Load) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if l != nil {
		m["load"] = l
	}
	return writeJSON(w, m)
}

// rateHuman prints a rate in bits/s (every rate in the API is bits/s).
func rateHuman(bps float64) string { return units.FormatBitRate(bps) }

func writeStatus(w io.Writer, s control.Status, l *control.Load, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "version\t%s, up %s\n", s.Version, now.Sub(s.Started).Truncate(time.Second))
	fmt.Fprintf(tw, "public key\t%s\nendpoint\t%s (UDP %d, tunnel %s)\n", s.PublicKey, dash(s.Endpoint), s.ListenPort, s.Tunnel)
	fmt.Fprintf(tw, "members\t%d connected / %d configured", s.MembersConnected, s.MembersTotal)
	if l != nil {
		fmt.Fprintf(tw, " (active %d, idle %d, handshaking %d)", l.Active, l.Idle, l.Handshaking)
	}
	fmt.Fprintln(tw)
	if l != nil {
		fmt.Fprintf(tw, "throughput\tto members %s, from members %s (last %s)\n",
			rateHuman(l.RateOut), rateHuman(l.RateIn), (time.Duration(l.WindowMs) * time.Millisecond).String())
	}
	fmt.Fprintf(tw, "transferred\tto members %s, from members %s\n", bytesHuman(s.TxBytes), bytesHuman(s.RxBytes))
	if l != nil && l.Scheduler != nil {
		sc := l.Scheduler
		pace := "unpaced"
		if sc.EgressRate > 0 {
			pace = "egress " + bitsHuman(sc.EgressRate)
		}
		if sc.IngressRate > 0 {
			pace += ", ingress " + bitsHuman(sc.IngressRate)
		}
		fmt.Fprintf(tw, "scheduler\t%s, %s; queued %s down / %s up; p99 delay %.1f ms\n", sc.Discipline, pace,
			bytesHuman(uint64(max(sc.QueueBytesDown, 0))), bytesHuman(uint64(max(sc.QueueBytesUp, 0))), sc.SojournP99Ms)
		fmt.Fprintf(tw, "\tdrops %d (overflow %d, codel %d), CE marks %d\n", sc.OverflowDrops+sc.CoDelDrops, sc.OverflowDrops, sc.CoDelDrops, sc.CEMarks)
	}
	nat := "installed"
	if !s.NATPresent {
		nat = "MISSING"
	}
	if s.NATMode != "" {
		nat += ", mode " + s.NATMode
	}
	fmt.Fprintf(tw, "nftables\t%s; drops: %s\n", nat, joinCounts(s.Drops))
	for _, svc := range []struct {
		name string
		st   *control.ServiceStatus
	}{{"dns", s.DNS}, {"socks", s.SOCKS}, {"portforward", s.PortForward}} {
		if svc.st == nil {
			fmt.Fprintf(tw, "%s\toff\n", svc.name)
			continue
		}
		fmt.Fprintf(tw, "%s\ton %s; %s\n", svc.name, strings.Join(svc.st.Listen, ", "), svc.st.Summary)
	}
	if ct := s.Conntrack; ct != nil {
		quota := "off"
		if ct.Quota > 0 {
			quota = fmt.Sprintf("%d per member and family", ct.Quota)
		}
		fmt.Fprintf(tw, "connection quota	%s; %d tracked from members; %d members dropped at quota or rate\n", quota, ct.Members, len(ct.AtLimit))
		for i, m := range ct.AtLimit {
			if i == 5 {
				fmt.Fprintf(tw, "\t... %d more (exitctl status --json)\n", len(ct.AtLimit)-5)
				break
			}
			fmt.Fprintf(tw, "\t%s: %d tracked, %d dropped at quota, %d at rate\n", m.Label, m.Conns, m.QuotaDrops, m.RateDrops)
		}
	}
	if l != nil {
		if l.ConntrackMax > 0 {
			fmt.Fprintf(tw, "conntrack\t%d / %d (%.1f%%)\n", l.Conntrack, l.ConntrackMax, float64(l.Conntrack)*100/float64(l.ConntrackMax))
		}
		if l.UDPRcvbuf > 0 || sum(l.LinkDrops) > 0 {
			fmt.Fprintf(tw, "host drops\tUDP receive buffer %d; %s\n", l.UDPRcvbuf, joinCounts(l.LinkDrops))
		}
		kern := "not checked yet"
		if len(l.KernelKeys) > 0 {
			kern = joinCounts(intCounts(l.KernelKeys))
			if l.KernelCritical > 0 {
				kern += fmt.Sprintf("; %d SAFETY-CRITICAL", l.KernelCritical)
			}
		}
		fmt.Fprintf(tw, "kernel profile\t%s\n", kern)
		for i, d := range l.KernelDrift {
			if i == 3 {
				fmt.Fprintf(tw, "\t... %d more (exitd tune check)\n", len(l.KernelDrift)-3)
				break
			}
			fmt.Fprintf(tw, "\tdrift: %s\n", d)
		}
		if l.MetricsURL != "" {
			fmt.Fprintf(tw, "metrics\t%s\n", l.MetricsURL)
		}
	}
	tw.Flush()
	warnings := slices.Clone(s.Warnings)
	if l != nil {
		warnings = append(warnings, l.Warnings...)
	}
	for _, w2 := range warnings {
		fmt.Fprintf(w, "WARNING: %s\n", w2)
	}
}

func sum(m map[string]uint64) uint64 {
	var t uint64
	for _, v := range m {
		t += v
	}
	return t
}

func intCounts(m map[string]int) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = uint64(max(v, 0))
	}
	return out
}

// joinCounts prints "a 1, b 2" in key order; "none" when empty.
func joinCounts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
