package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"exitd/control"
	"exitd/members"
)

// maxImportFile bounds the file `member import` reads (a 20,000-peer
// wg-quick file is about 3 MB).
const maxImportFile = 64 << 20

type importFlags struct {
	prefix      string
	dryRun      bool
	strictAddrs bool
}

func newMemberImportCmd(f *flags, stdout io.Writer) *cobra.Command {
	o := &importFlags{}
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import the peers of a wg-quick server config (e.g. /etc/wireguard/wg0.conf)",
		Long: `Migrate the [Peer] sections of an existing wg-quick (or ` + "`wg showconf`" + `)
server config: each peer becomes a member with its public key, so its
private key stays where it is. A peer keeps its /32 (or /128) address when
it lies in this node's member prefixes and is free; otherwise it gets a new
one (--strict-addresses makes that an error instead). Labels come from a
comment naming the peer ("# Name = alice", "### begin alice ###", "# alice"),
else PREFIX-N. Peers whose key is already a member are skipped, so an
import can be repeated. Batches of 1,000, with a progress bar.

Each member then needs a client config pointing at this node:
` + "`exitctl member show LABEL`" + ` prints it with a placeholder for their own
private key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImport(cmd, f, stdout, args[0], o)
		},
	}
	cmd.Flags().StringVar(&o.prefix, "label-prefix", "import", "label for peers without a name comment: PREFIX-N")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "show what would be imported and change nothing")
	cmd.Flags().BoolVar(&o.strictAddrs, "strict-addresses", false, "fail instead of giving a peer a new address")
	return cmd
}

// importPlan is what import does with one peer.
type importPlan struct {
	peer  members.ImportPeer
	req   control.AddMemberRequest
	skip  string // non-empty: why the peer is not imported
	notes []string
}

func runImport(cmd *cobra.Command, f *flags, stdout io.Writer, path string, o *importFlags) error {
	if err := members.CheckLabel(o.prefix + "-1"); err != nil {
		return fmt.Errorf("--label-prefix: %w", err)
	}
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	peers, err := members.ParseWGQuick(io.LimitReader(fh, maxImportFile))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(peers) == 0 {
		return fmt.Errorf("%s: no [Peer] sections", path)
	}
	c := f.client()
	existing, _, err := c.ListMembers(cmd.Context(), control.ListQuery{NoStats: true})
	if err != nil {
		return err
	}
	plans := planImport(peers, existing, o)
	var reqs []control.AddMemberRequest
	for _, p := range plans {
		if p.skip == "" {
			reqs = append(reqs, p.req)
		}
	}
	var added []control.Member
	if !o.dryRun && len(reqs) > 0 {
		added, err = addChunked(cmd.Context(), c, reqs, false, newProgress(cmd.ErrOrStderr(), "peers imported", len(reqs)))
		if err != nil {
			err = fmt.Errorf("%d of %d peers imported before: %w", len(added), len(reqs), err)
		}
	}
	if f.json {
		if jerr := writeJSON(stdout, added); jerr != nil {
			return jerr
		}
		return err
	}
	writeImportReport(stdout, plans, added, o.dryRun)
	return err
}

// planImport decides label, requested addresses and notes for each peer.
func planImport(peers []members.ImportPeer, existing []control.Member, o *importFlags) []importPlan {
	byKey := make(map[string]string, len(existing))
	labels := make(map[string]bool, len(existing)+len(peers))
	for _, m := range existing {
		byKey[m.PublicKey] = m.Label
		labels[m.Label] = true
	}
	out := make([]importPlan, 0, len(peers))
	n := 0
	for _, p := range peers {
		pl := importPlan{peer: p}
		if l, ok := byKey[p.PublicKey.String()]; ok {
			pl.skip = "already a member as " + l
			out = append(out, pl)
			continue
		}
		base := p.Label
		if base == "" {
			n++
			base = fmt.Sprintf("%s-%d", o.prefix, n)
		}
		label := uniqueLabel(base, labels)
		labels[label] = true
		pl.req = control.AddMemberRequest{Label: label, PublicKey: p.PublicKey.String(), AddressFallback: !o.strictAddrs}
		if a := p.Addr4(); a.IsValid() {
			pl.req.IPv4 = a.String()
		}
		if a := p.Addr6(); a.IsValid() {
			pl.req.IPv6 = a.String()
		}
		if p.PresharedKey {
			pl.notes = append(pl.notes, "PresharedKey not used by exitd: remove it from the member's config")
		}
		var extra []string
		for _, a := range p.Addrs {
			if !a.IsSingleIP() {
				extra = append(extra, a.String())
			}
		}
		if len(extra) > 0 {
			pl.notes = append(pl.notes, "routed prefixes dropped: "+strings.Join(extra, ", "))
		}
		out = append(out, pl)
	}
	return out
}

// uniqueLabel returns base, or base-2, base-3, ... when taken, within the
// label length limit.
func uniqueLabel(base string, taken map[string]bool) string {
	if !taken[base] {
		return base
	}
	for i := 2; ; i++ {
		suffix := fmt.Sprintf("-%d", i)
		b := base
		if len(b)+len(suffix) > 64 {
			b = b[:64-len(suffix)]
		}
		if l := b + suffix; !taken[l] {
			return l
		}
	}
}

func writeImportReport(w io.Writer, plans []importPlan, added []control.Member, dryRun bool) {
	byKey := make(map[string]control.Member, len(added))
	for _, m := range added {
		byKey[m.PublicKey] = m
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tPUBLIC KEY\tOLD ADDRESS\tNEW ADDRESS\tRESULT")
	var imported, skipped, moved int
	for _, p := range plans {
		old := strings.Join(nonEmpty(p.req.IPv4, p.req.IPv6), ", ")
		if p.skip != "" {
			skipped++
			fmt.Fprintf(tw, "-\t%s\t%s\t-\tskipped: %s\n", p.peer.PublicKey, dash(old), p.skip)
			continue
		}
		m, ok := byKey[p.req.PublicKey]
		newAddr, result := "-", "would be imported"
		if !dryRun {
			result = "not imported"
		}
		if ok {
			imported++
			newAddr = strings.Join(nonEmpty(addrCSV(m.IPv4.String()), addrCSV(m.IPv6.String())), ", ")
			result = "imported"
			if p.req.IPv4 != "" && !sameAddr(p.req.IPv4, m.IPv4) || p.req.IPv4 == "" && p.req.IPv6 != "" && !sameAddr(p.req.IPv6, m.IPv6) {
				moved++
				result = "imported, address changed"
			}
		}
		if len(p.notes) > 0 {
			result += "; " + strings.Join(p.notes, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.req.Label, p.peer.PublicKey, dash(old), newAddr, result)
	}
	tw.Flush()
	if dryRun {
		fmt.Fprintf(w, "dry run: %d peers would be imported, %d skipped\n", len(plans)-skipped, skipped)
		return
	}
	fmt.Fprintf(w, "imported %d peers, skipped %d", imported, skipped)
	if moved > 0 {
		fmt.Fprintf(w, "; %d got a new address", moved)
	}
	fmt.Fprintln(w, "\neach member needs a client config for this node: exitctl member show LABEL")
}

func sameAddr(s string, a netip.Addr) bool {
	b, err := netip.ParseAddr(s)
	return err == nil && b == a
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
