package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/control"
	"exitd/keys"
	"exitd/members"
)

func newMemberListCmd(f *flags, stdout io.Writer) *cobra.Command {
	var q control.ListQuery
	var page int
	var wide bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List members with addresses, state, last handshake, traffic and rate",
		Long: `List members, sorted and filtered on the node.

  --sort KEY       ` + strings.Join(control.SortKeys, ", ") + `; -KEY for descending
  --match TEXT     label, public key or address contains TEXT
  --state STATE    ` + strings.Join(control.States, ", ") + `
  --limit N        at most N members (0 = all); --page P picks the P-th page
  --no-stats       registry only, no live session figures (fastest)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if page > 0 {
				if q.Limit == 0 {
					return fmt.Errorf("--page needs --limit (the page size)")
				}
				q.Offset = (page - 1) * q.Limit
			}
			ms, total, err := f.client().ListMembers(cmd.Context(), q)
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(stdout, ms)
			}
			writeMemberTable(stdout, ms, time.Now(), wide)
			if len(ms) < total {
				fmt.Fprintf(cmd.ErrOrStderr(), "members %d-%d of %d\n", q.Offset+1, q.Offset+len(ms), total)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Sort, "sort", "", "sort key ("+strings.Join(control.SortKeys, ", ")+"), - in front for descending")
	fl.StringVar(&q.Match, "match", "", "only members whose label, key or address contains this")
	fl.StringVar(&q.State, "state", "", "only members in this state ("+strings.Join(control.States, ", ")+")")
	fl.IntVar(&q.Limit, "limit", 0, "page size (0 = all)")
	fl.IntVar(&q.Offset, "offset", 0, "skip this many members")
	fl.IntVar(&page, "page", 0, "page number, 1-based (with --limit)")
	fl.BoolVar(&q.NoStats, "no-stats", false, "leave out live session figures (faster on big nodes)")
	fl.BoolVarP(&wide, "wide", "w", false, "also show IPv6, endpoint and public key")
	return cmd
}

func writeMemberTable(w io.Writer, ms []control.Member, now time.Time, wide bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "LABEL\tIPV4\tIPV6\tSTATE\tHANDSHAKE\tENDPOINT\tRX\tTX\tDOWN\tUP\tWEIGHT\tPUBLIC KEY")
	} else {
		fmt.Fprintln(tw, "LABEL\tIPV4\tSTATE\tHANDSHAKE\tRX\tTX\tDOWN\tUP\tWEIGHT")
	}
	for _, m := range ms {
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Label, addrStr(m.IPv4), addrStr(m.IPv6),
				state(m, now), agoAt(m.LastHandshake, now), dash(m.Endpoint), bytesHuman(m.RxBytes), bytesHuman(m.TxBytes),
				bitsHuman(m.TxRate), bitsHuman(m.RxRate), m.Weight, m.PublicKey)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", m.Label, addrStr(m.IPv4),
			state(m, now), agoAt(m.LastHandshake, now), bytesHuman(m.RxBytes), bytesHuman(m.TxBytes),
			bitsHuman(m.TxRate), bitsHuman(m.RxRate), m.Weight)
	}
	tw.Flush()
}

func newMemberExportCmd(f *flags, stdout io.Writer) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "export [--format wg|csv|json]",
		Short: "Export the member list (no private keys)",
		Long: `Export every member. Formats:

  wg    wg-quick [Peer] sections, each named by a "# Name = LABEL" comment, for
        a wg-quick server or for ` + "`exitctl member import`" + ` on another node
        (disabled members are written commented out)
  csv   label,public_key,ipv4,ipv6,created,weight,egress_limit,ingress_limit,disabled
  json  the members as the API shows them (also with --json)

Private keys never leave the node this way; ` + "`member show`" + ` prints a
kept key's config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.json {
				format = "json"
			}
			ms, _, err := f.client().ListMembers(cmd.Context(), control.ListQuery{NoStats: format != "json"})
			if err != nil {
				return err
			}
			return exportMembers(stdout, ms, format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "wg", "wg, csv or json")
	return cmd
}

func exportMembers(w io.Writer, ms []control.Member, format string) error {
	switch format {
	case "json":
		for i := range ms {
			ms[i].Config = ""
		}
		return writeJSON(w, ms)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"label", "public_key", "ipv4", "ipv6", "created", "weight", "egress_limit", "ingress_limit", "disabled"})
		for _, m := range ms {
			cw.Write([]string{m.Label, m.PublicKey, addrCSV(m.IPv4.String()), addrCSV(m.IPv6.String()), m.Created.Format(time.RFC3339),
				strconv.Itoa(m.Weight), strconv.FormatUint(m.EgressLimit, 10), strconv.FormatUint(m.IngressLimit, 10),
				strconv.FormatBool(m.Disabled)})
		}
		cw.Flush()
		return cw.Error()
	case "wg":
		out := make([]members.Member, 0, len(ms))
		for _, m := range ms {
			k, err := keys.Parse(m.PublicKey)
			if err != nil {
				return fmt.Errorf("member %s: %w", m.Label, err)
			}
			out = append(out, members.Member{Label: m.Label, PublicKey: k, IPv4: m.IPv4, IPv6: m.IPv6, Disabled: m.Disabled})
		}
		_, err := io.WriteString(w, members.ExportWGQuick(out))
		return err
	}
	return fmt.Errorf("--format %q: want wg, csv or json", format)
}

func addrCSV(s string) string {
	if s == "invalid IP" {
		return ""
	}
	return s
}
