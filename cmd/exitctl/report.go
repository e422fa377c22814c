package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"exitd/report"
)

type reportFlags struct {
	since time.Duration
	out   string
	from  string
	tz    string
}

func newReportCmd(f *flags, stdout io.Writer) *cobra.Command {
	rf := &reportFlags{}
	cmd := &cobra.Command{
		Use:   "report --since 48h --out DIR",
		Short: "Render the load report (plots and one HTML page) from the node's samples",
		Long: `Render the load report: exitd samples its load every 15 s and keeps the
last 50 hours in state_dir/load.ring. The report has the figures of a classic
load analysis — transfer rates in and out, in/out ratio, members by session
state, members versus bandwidth, cumulative bytes, memory, CPU (total and
exitd), free capacity (member addresses, conntrack), scheduler drops and
queueing delay, other drops — as SVG files plus index.html, which inlines
them and opens offline, and samples.csv with the raw series.

  exitctl report --since 48h --out /tmp/load && xdg-open /tmp/load/index.html
  exitctl report --from /var/lib/exitd/load.ring --out r   (node stopped)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rf.out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			loc, err := time.LoadLocation(rf.tz)
			if err != nil {
				return fmt.Errorf("--tz: %w", err)
			}
			now := time.Now()
			var since time.Time
			if rf.since > 0 {
				since = now.Add(-rf.since)
			}
			meta := report.Meta{Generated: now, Since: since, Location: loc}
			var samples []report.Sample
			if rf.from != "" {
				all, err := report.ReadRingFile(rf.from)
				if err != nil {
					return err
				}
				for _, s := range all {
					if s.TimeMs >= since.UnixMilli() {
						samples = append(samples, s)
					}
				}
				meta.Node = filepath.Base(rf.from)
			} else {
				c := f.client()
				st, err := c.Status(cmd.Context())
				if err != nil {
					return err
				}
				meta.Node, meta.Version = nodeName(st.Endpoint, st.PublicKey), st.Version
				if samples, err = c.Samples(cmd.Context(), since); err != nil {
					return err
				}
			}
			w, err := report.Write(rf.out, samples, meta)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(stdout, map[string]any{"dir": rf.out, "index": w.Index, "figures": w.Figures, "csv": w.CSV, "samples": len(samples)})
			}
			fmt.Fprintf(stdout, "wrote %s (%d figures, %d samples)\n", filepath.Join(rf.out, w.Index), len(w.Figures), len(samples))
			if len(samples) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: no samples in this period (the node samples every 15 s)")
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&rf.since, "since", 48*time.Hour, "report this far back (0: everything kept)")
	cmd.Flags().StringVar(&rf.out, "out", "", "directory for index.html, the SVG figures and samples.csv")
	cmd.Flags().StringVar(&rf.from, "from", "", "read a load.ring file instead of asking the node")
	cmd.Flags().StringVar(&rf.tz, "tz", "Local", "time zone of the time axes (e.g. UTC)")
	return cmd
}

func nodeName(endpoint, key string) string {
	if endpoint != "" {
		return "exit node " + endpoint
	}
	if len(key) > 8 {
		key = key[:8] + "…"
	}
	return "exit node " + key
}
