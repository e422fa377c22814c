package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"exitd/control"
)

func newMemberSetCmd(f *flags, stdout io.Writer) *cobra.Command {
	var weight, maxConns int
	var rate string
	cmd := &cobra.Command{
		Use:   "set LABEL|KEY... [--weight N] [--rate DOWN[/UP]] [--max-conns N]",
		Short: "Change members' weight, rate cap or connection quota; their sessions continue",
		Long: `Change members' policy in place: sessions, queues and counters survive.

  --weight N        1-64: the member's share of the link under contention
                    relative to others (default 1)
  --rate DOWN[/UP]  rate cap, e.g. 50mbit/10mbit, 20mbit (both ways), 0 (none)
  --max-conns N     the member's own quota of tracked connections per address
                    family, 64-1000000; 0 returns to the node's quota
                    ([conntrack] max_conns_per_member). New connections beyond
                    it are dropped and counted (exitctl top, CONNS column).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req control.UpdateMemberRequest
			if cmd.Flags().Changed("weight") {
				req.Weight = &weight
			}
			if cmd.Flags().Changed("rate") {
				down, up, err := parseRatePair(rate)
				if err != nil {
					return fmt.Errorf("--rate: %w", err)
				}
				req.EgressLimit, req.IngressLimit = &down, &up
			}
			if cmd.Flags().Changed("max-conns") {
				req.MaxConns = &maxConns
			}
			if req == (control.UpdateMemberRequest{}) {
				return errors.New("nothing to change: give --weight, --rate and/or --max-conns")
			}
			return updateEach(cmd, f, stdout, args, req, "updated")
		},
	}
	cmd.Flags().IntVar(&weight, "weight", 1, "scheduler weight 1-64")
	cmd.Flags().StringVar(&rate, "rate", "", "rate cap DOWN[/UP] (0 = none)")
	cmd.Flags().IntVar(&maxConns, "max-conns", 0, "connection quota per family, 64-1000000 (0 = the node's)")
	return cmd
}

// newMemberEnableCmd is `member enable` (on) or `member disable`.
func newMemberEnableCmd(f *flags, stdout io.Writer, on bool) *cobra.Command {
	use, short := "enable", "Let disabled members connect again"
	if !on {
		use, short = "disable", "Stop members from connecting: their sessions end, entry and addresses stay"
	}
	return &cobra.Command{
		Use:   use + " LABEL|KEY...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			disabled := !on
			return updateEach(cmd, f, stdout, args, control.UpdateMemberRequest{Disabled: &disabled}, use+"d")
		},
	}
}

// updateEach applies req to every ref in order and stops at the first error.
func updateEach(cmd *cobra.Command, f *flags, stdout io.Writer, refs []string, req control.UpdateMemberRequest, verb string) error {
	c := f.client()
	var out []control.Member
	for _, ref := range refs {
		m, err := c.UpdateMember(cmd.Context(), ref, req)
		if err != nil {
			if len(out) > 0 {
				return fmt.Errorf("%s (%d members %s before)", err, len(out), verb)
			}
			return err
		}
		out = append(out, m)
		if !f.json {
			fmt.Fprintf(stdout, "%s %s: %s, weight %d, rate cap down %s up %s, connection quota %s\n", verb, m.Label,
				map[bool]string{true: "disabled", false: "enabled"}[m.Disabled], m.Weight,
				limitHuman(m.EgressLimit), limitHuman(m.IngressLimit), quotaHuman(m.MaxConns))
		}
	}
	if f.json {
		if len(out) == 1 {
			return writeJSON(stdout, out[0])
		}
		return writeJSON(stdout, out)
	}
	if len(out) > 0 && (out[0].EgressLimit != 0 || out[0].IngressLimit != 0) && !out[0].LimitsEnforced {
		fmt.Fprintln(cmd.ErrOrStderr(), "note: rate caps are stored, but this exitd runs the fifo discipline, which does not enforce them")
	}
	return nil
}

// quotaHuman shows a member's own connection quota ("node default" for 0).
func quotaHuman(n int) string {
	if n == 0 {
		return "node default"
	}
	return strconv.Itoa(n)
}
