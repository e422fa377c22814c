package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/control"
)

// clearScreen moves the cursor home and clears the terminal, so each
// frame of top replaces the previous one.
const clearScreen = "\x1b[H\x1b[2J"

type topFlags struct {
	once     bool
	n        int
	sort     string
	interval time.Duration
}

func newTopCmd(f *flags, stdout io.Writer) *cobra.Command {
	tf := &topFlags{}
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live table of the busiest members (rate, queue delay, drops)",
		Long: `A live table of members by current rate (or queue delay, or drops),
refreshed in place every --interval until interrupted. Rates are averages
since the node's previous look at its counters (about --interval).

  exitctl top                       busiest 20 members, every 2 s
  exitctl top --sort drops -n 50    who loses packets
  exitctl top --once --json         one snapshot for scripts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := control.ParseTopQuery(map[string][]string{"n": {fmt.Sprint(tf.n)}, "sort": {tf.sort}}); err != nil {
				return err
			}
			if tf.interval < 200*time.Millisecond {
				return fmt.Errorf("--interval must be at least 200ms")
			}
			var ticks <-chan time.Time
			if !tf.once {
				t := time.NewTicker(tf.interval)
				defer t.Stop()
				ticks = t.C
			}
			return runTop(cmd.Context(), f, tf, stdout, ticks, time.Now)
		},
	}
	cmd.Flags().BoolVar(&tf.once, "once", false, "print one table and exit (for scripts)")
	cmd.Flags().IntVarP(&tf.n, "number", "n", 20, "members to show (1-1000)")
	cmd.Flags().StringVar(&tf.sort, "sort", control.SortRate, "order by rate, queue (delay) or drops")
	cmd.Flags().DurationVar(&tf.interval, "interval", 2*time.Second, "refresh period")
	return cmd
}

// runTop prints a frame now and one per tick until ctx ends or ticks is
// nil (--once) or closed.
func runTop(ctx context.Context, f *flags, tf *topFlags, w io.Writer, ticks <-chan time.Time, now func() time.Time) error {
	c := f.client()
	for {
		t, err := c.Top(ctx, tf.n, tf.sort)
		if err != nil {
			return err
		}
		switch {
		case f.json:
			if err := writeJSON(w, t); err != nil {
				return err
			}
		case ticks == nil:
			writeTop(w, t, now())
		default:
			io.WriteString(w, clearScreen)
			writeTop(w, t, now())
		}
		if ticks == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ticks:
			if !ok {
				return nil
			}
		}
	}
}

func writeTop(w io.Writer, t control.Top, now time.Time) {
	l := t.Load
	fmt.Fprintf(w, "exitd top · %s · %d active, %d idle, %d handshaking of %d members · to members %s, from members %s",
		now.Format("15:04:05"), l.Active, l.Idle, l.Handshaking, l.Configured, rateHuman(l.RateOut), rateHuman(l.RateIn))
	if sc := l.Scheduler; sc != nil {
		fmt.Fprintf(w, " · queued %s · drops %d", bytesHuman(uint64(max(sc.QueueBytesDown+sc.QueueBytesUp, 0))), sc.OverflowDrops+sc.CoDelDrops)
	}
	fmt.Fprintf(w, " · by %s\n\n", t.Sort)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tDOWN\tUP\tQUEUED\tDELAY\tDROPS/s\tDROPS\tCONNS\tCONN DROPS\tHANDSHAKE\t")
	for _, m := range t.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f ms\t%.1f\t%d\t%d\t%d\t%s\t\n",
			m.Label, m.State, rateHuman(m.RateOut), rateHuman(m.RateIn), bytesHuman(uint64(max(m.QueueBytes, 0))),
			m.QueueDelayMs, m.DropRate, m.Drops, m.Conns, m.ConnDrops, agoAt(m.LastHandshake, now))
	}
	tw.Flush()
	if len(t.Members) == 0 {
		fmt.Fprintln(w, "(no members)")
	}
	for _, warn := range l.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
}
