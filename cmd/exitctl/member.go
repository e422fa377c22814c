package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/control"
	"exitd/keys"
)

func newMemberCmd(f *flags, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "member", Short: "Add, list and remove members"}
	cmd.AddCommand(newMemberAddCmd(f, stdout), newMemberListCmd(f, stdout),
		newMemberShowCmd(f, stdout), newMemberRemoveCmd(f, stdout))
	return cmd
}

func newMemberAddCmd(f *flags, stdout io.Writer) *cobra.Command {
	var label, pub, out string
	cmd := &cobra.Command{
		Use:   "add --label NAME [--public-key KEY]",
		Short: "Add a member and print its wg-quick client config",
		Long: `Add a member. The node allocates one IPv4 and one IPv6 address from the
member prefixes and adds the peer to the running device at once.

Without --public-key, exitctl generates the key pair here: the private key
goes into the printed config and nowhere else. With --public-key (the member
made their own key with ` + "`wg genkey | wg pubkey`" + `), the config has a
placeholder for it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if label == "" {
				return fmt.Errorf("--label is required (a name for the member, e.g. alice)")
			}
			var priv *keys.Key
			if pub == "" {
				k, err := keys.Generate(nil)
				if err != nil {
					return err
				}
				priv = &k
				pub = k.Public().String()
			} else if _, err := keys.Parse(pub); err != nil {
				return fmt.Errorf("--public-key: %w", err)
			}
			m, err := f.client().AddMember(cmd.Context(), control.AddMemberRequest{Label: label, PublicKey: pub})
			if err != nil {
				return err
			}
			if priv != nil {
				m.Config = fillPrivateKey(m.Config, *priv)
			}
			if out != "" {
				if err := os.WriteFile(out, []byte(m.Config), 0o600); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "member %s added (%s, %s); config written to %s\n", m.Label, m.IPv4, m.IPv6, out)
				if !f.json {
					return nil
				}
			}
			if f.json {
				return writeJSON(stdout, m)
			}
			_, err = io.WriteString(stdout, m.Config)
			return err
		},
	}
	cmd.Flags().StringVar(&label, "label", "", "member name (letters, digits, . _ - @)")
	cmd.Flags().StringVar(&pub, "public-key", "", "the member's WireGuard public key (base64)")
	cmd.Flags().StringVar(&out, "out", "", "write the client config to this file (mode 0600) instead of stdout")
	return cmd
}

// fillPrivateKey replaces the placeholder line the node writes when it does
// not hold the private key.
func fillPrivateKey(conf string, priv keys.Key) string {
	lines := strings.Split(conf, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "# PrivateKey = ") {
			lines[i] = "PrivateKey = " + priv.String()
		}
	}
	return strings.Join(lines, "\n")
}

func newMemberListCmd(f *flags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List members with addresses, last handshake and traffic",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := f.client().Members(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(stdout, ms)
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LABEL\tIPV4\tIPV6\tHANDSHAKE\tENDPOINT\tRX\tTX\tPUBLIC KEY")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Label, addrOr(m.IPv4.String()), addrOr(m.IPv6.String()),
					ago(m.LastHandshake), dash(m.Endpoint), bytesHuman(m.RxBytes), bytesHuman(m.TxBytes), m.PublicKey)
			}
			return tw.Flush()
		},
	}
}

func newMemberShowCmd(f *flags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "show LABEL|KEY",
		Short: "Show one member",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := f.client().Member(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(stdout, m)
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "label\t%s\npublic key\t%s\nipv4\t%s\nipv6\t%s\ncreated\t%s\nlast handshake\t%s\nendpoint\t%s\nrx / tx\t%s / %s\n",
				m.Label, m.PublicKey, addrOr(m.IPv4.String()), addrOr(m.IPv6.String()), m.Created.Format(time.RFC3339),
				ago(m.LastHandshake), dash(m.Endpoint), bytesHuman(m.RxBytes), bytesHuman(m.TxBytes))
			tw.Flush()
			if m.Config != "" {
				fmt.Fprintf(stdout, "\n%s", m.Config)
			}
			return nil
		},
	}
}

func newMemberRemoveCmd(f *flags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:     "remove LABEL|KEY",
		Aliases: []string{"rm"},
		Short:   "Remove a member; its session ends at once",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := f.client().RemoveMember(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if f.json {
				return writeJSON(stdout, m)
			}
			fmt.Fprintf(stdout, "removed %s (%s)\n", m.Label, m.PublicKey)
			return nil
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func addrOr(s string) string {
	if s == "invalid IP" {
		return "-"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Truncate(time.Second).String() + " ago"
}

func bytesHuman(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
