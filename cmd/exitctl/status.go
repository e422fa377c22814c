package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd(f *flags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the node at a glance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(stdout, s)
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "version\t%s\nuptime\t%s\npublic key\t%s\nendpoint\t%s (UDP %d, tunnel %s)\n",
				s.Version, time.Since(s.Started).Truncate(time.Second), s.PublicKey, dash(s.Endpoint), s.ListenPort, s.Tunnel)
			fmt.Fprintf(tw, "members\t%d connected / %d configured\ntraffic\trx %s  tx %s\n",
				s.MembersConnected, s.MembersTotal, bytesHuman(s.RxBytes), bytesHuman(s.TxBytes))
			nat := "installed"
			if !s.NATPresent {
				nat = "MISSING"
			}
			fmt.Fprintf(tw, "nftables table\t%s\n", nat)
			names := make([]string, 0, len(s.Drops))
			for k := range s.Drops {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(tw, "  %s\t%d packets\n", k, s.Drops[k])
			}
			tw.Flush()
			for _, w := range s.Warnings {
				fmt.Fprintf(stdout, "WARNING: %s\n", w)
			}
			return nil
		},
	}
}
