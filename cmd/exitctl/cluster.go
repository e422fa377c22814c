package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/control"
)

func newClusterCmd(f *flags, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "The exit nodes that share this node's member store (etcd)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the cluster's live nodes as a table",
		Long: `Every live node of the cluster as it published itself in etcd (refreshed
every 5 s; a node disappears 10 s after it stops): endpoint, version,
members connected of configured, rates to and from members, free download
capacity (pacing rate less the rate out; the Dante report's "free
slots"), kernel profile and nftables table health, and when it last
reported. With --json, the cluster object.

A node whose etcd is unreachable says so (its members keep working from
the local cache; member changes are refused until etcd is back).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := f.client().Cluster(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(stdout, cl)
			}
			writeCluster(stdout, cl, time.Now())
			return nil
		},
	})
	return cmd
}

func writeCluster(w io.Writer, cl control.Cluster, now time.Time) {
	if !cl.StoreUp {
		fmt.Fprintf(w, "cluster %s: etcd unreachable (%s); this node (%s) serves its cached members, changes are refused\n", cl.Prefix, cl.Error, cl.Self)
		return
	}
	fmt.Fprintf(w, "cluster %s · %d nodes · this node: %s\n\n", cl.Prefix, len(cl.Nodes), cl.Self)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tENDPOINT\tVERSION\tMEMBERS\tDOWN\tUP\tFREE\tKERNEL\tTABLE\tREPORTED")
	ok := map[bool]string{true: "ok", false: "DRIFT"}
	table := map[bool]string{true: "ok", false: "MISSING"}
	for _, n := range cl.Nodes {
		name := n.Name
		if name == cl.Self {
			name += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\n", name, dash(n.Endpoint), dash(n.Version),
			n.MembersConnected, n.MembersTotal, rateHuman(float64(n.RateOut)), rateHuman(float64(n.RateIn)),
			rateHuman(float64(n.FreeRate)), ok[n.KernelOK], table[n.TableOK], agoAt(n.Updated, now))
	}
	tw.Flush()
}
