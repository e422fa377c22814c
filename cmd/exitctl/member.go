package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"exitd/config"
	"exitd/control"
	"exitd/keys"
	"exitd/units"
)

func newMemberCmd(f *flags, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Add, show, list, change, import, export and remove members",
		Long: `A member is one VPN client: a WireGuard public key, a label, one IPv4 and
one IPv6 address from the member prefixes, an optional weight and rate cap,
and an enabled/disabled flag. Changes reach the running node at once and
touch no other member's session.

  exitctl member add --label alice --qr           add, show the config as a QR code
  exitctl member add --count 500 --label-prefix guest --out-dir ./confs
  exitctl member list --state connected --sort -rate --limit 20
  exitctl member show alice                       details, live session, config if kept
  exitctl member set alice --weight 4 --rate 50mbit/10mbit
  exitctl member disable alice                    session ends, address kept
  exitctl member import /etc/wireguard/wg0.conf   migrate wg-quick peers
  exitctl member export > peers.conf              wg-quick [Peer] sections
  exitctl member remove alice bob                 sessions end, addresses quarantined`,
	}
	cmd.AddCommand(newMemberAddCmd(f, stdout), newMemberListCmd(f, stdout),
		newMemberShowCmd(f, stdout), newMemberRemoveCmd(f, stdout),
		newMemberSetCmd(f, stdout), newMemberEnableCmd(f, stdout, true), newMemberEnableCmd(f, stdout, false),
		newMemberImportCmd(f, stdout), newMemberExportCmd(f, stdout))
	return cmd
}

// addFlags are `member add`'s flags.
type addFlags struct {
	label, pub, out, ipv4, rate string
	qr, keepKey, disabled       bool
	weight                      int
	count                       int
	prefix, outDir              string
}

func newMemberAddCmd(f *flags, stdout io.Writer) *cobra.Command {
	a := &addFlags{}
	cmd := &cobra.Command{
		Use:   "add --label NAME [--public-key KEY] | --count N --label-prefix P",
		Short: "Add a member and print its wg-quick client config",
		Long: `Add a member. The node allocates one IPv4 and one IPv6 address from the
member prefixes and adds the peer to the running device at once.

Without --public-key, exitctl generates the key pair here: the private key
goes into the printed config and nowhere else. With --public-key (the member
made their own key with ` + "`wg genkey | wg pubkey`" + `), the config has a
placeholder for it. With --keep-key the node generates the pair and keeps
the private key, so ` + "`exitctl member show`" + ` can print the config again.

Bulk: --count N --label-prefix P adds P-00001 .. P-N in batches of 1,000
(one transaction and one device update each) with a progress bar. Give
--out-dir to write each client config there (mode 0600; keys generated
here), or --keep-key to let the node keep them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.count > 0 || a.prefix != "" || a.outDir != "" {
				return addBulk(cmd, f, stdout, a)
			}
			return addOne(cmd, f, stdout, a)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&a.label, "label", "", "member name (letters, digits, . _ - @)")
	fl.StringVar(&a.pub, "public-key", "", "the member's WireGuard public key (base64)")
	fl.StringVar(&a.out, "out", "", "write the client config to this file (mode 0600) instead of stdout")
	fl.BoolVar(&a.qr, "qr", false, "show the client config as a QR code (for the WireGuard mobile apps)")
	fl.BoolVar(&a.keepKey, "keep-key", false, "let the node generate and keep the private key (member show prints the config again)")
	fl.StringVar(&a.ipv4, "ipv4", "", "ask for this IPv4 address (its slot's IPv6 address comes with it)")
	fl.IntVar(&a.weight, "weight", 0, "scheduler weight 1-64: share of the link under contention (default 1)")
	fl.StringVar(&a.rate, "rate", "", "rate cap DOWN[/UP], e.g. 50mbit/10mbit (stored; see `member show`)")
	fl.BoolVar(&a.disabled, "disabled", false, "add the member disabled (it cannot connect until enabled)")
	fl.IntVar(&a.count, "count", 0, "bulk: add this many members")
	fl.StringVar(&a.prefix, "label-prefix", "", "bulk: labels are PREFIX-00001, PREFIX-00002, ...")
	fl.StringVar(&a.outDir, "out-dir", "", "bulk: write each member's client config to DIR/LABEL.conf (mode 0600)")
	return cmd
}

// policy turns the shared flags into an add request's policy fields.
func (a *addFlags) policy(req *control.AddMemberRequest) error {
	req.Weight, req.Disabled = a.weight, a.disabled
	if a.rate != "" {
		down, up, err := parseRatePair(a.rate)
		if err != nil {
			return fmt.Errorf("--rate: %w", err)
		}
		req.EgressLimit, req.IngressLimit = down, up
	}
	return nil
}

func addOne(cmd *cobra.Command, f *flags, stdout io.Writer, a *addFlags) error {
	if a.label == "" {
		return fmt.Errorf("--label is required (a name for the member, e.g. alice)")
	}
	if a.keepKey && a.pub != "" {
		return fmt.Errorf("--keep-key and --public-key exclude each other: the node can only keep a key it generated")
	}
	req := control.AddMemberRequest{Label: a.label, PublicKey: a.pub, IPv4: a.ipv4}
	if err := a.policy(&req); err != nil {
		return err
	}
	var priv *keys.Key
	switch {
	case a.keepKey:
	case a.pub == "":
		k, err := keys.Generate(nil)
		if err != nil {
			return err
		}
		priv = &k
		req.PublicKey = k.Public().String()
	default:
		if _, err := keys.Parse(a.pub); err != nil {
			return fmt.Errorf("--public-key: %w", err)
		}
	}
	m, err := f.client().AddMember(cmd.Context(), req)
	if err != nil {
		return err
	}
	if priv != nil {
		m.Config = fillPrivateKey(m.Config, *priv)
	}
	return printConfig(cmd, f, stdout, m, a.out, a.qr, "added")
}

// printConfig writes m's config to out (0600) and/or stdout, as text, QR
// code or JSON.
func printConfig(cmd *cobra.Command, f *flags, stdout io.Writer, m control.Member, out string, qr bool, verb string) error {
	if out != "" {
		if err := writeFile0600(out, m.Config); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "member %s %s (%s, %s); config written to %s\n", m.Label, verb, addrStr(m.IPv4), addrStr(m.IPv6), out)
		if !f.json && !qr {
			return nil
		}
	}
	switch {
	case f.json:
		return writeJSON(stdout, m)
	case qr:
		if m.Config == "" {
			return errors.New("no client config to show: the node does not hold this member's private key")
		}
		return writeQR(stdout, m.Config)
	}
	_, err := io.WriteString(stdout, m.Config)
	return err
}

// writeFile0600 writes a secret: created 0600, and an existing file is
// tightened to 0600 before the secret goes in.
func writeFile0600(path, data string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := fh.Chmod(0o600); err != nil {
		fh.Close()
		return err
	}
	if _, err := fh.WriteString(data); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func addBulk(cmd *cobra.Command, f *flags, stdout io.Writer, a *addFlags) error {
	switch {
	case a.count <= 0 || a.prefix == "":
		return errors.New("bulk add needs --count N and --label-prefix PREFIX")
	case a.label != "" || a.pub != "" || a.ipv4 != "" || a.out != "" || a.qr:
		return errors.New("--label, --public-key, --ipv4, --out and --qr add one member; bulk add takes --count, --label-prefix, --out-dir, --keep-key, --weight, --rate, --disabled")
	case a.outDir == "" && !a.keepKey:
		return errors.New("bulk add needs --out-dir DIR (configs with keys generated here) or --keep-key (the node keeps the keys; `member show` prints each config)")
	case a.outDir != "" && a.keepKey:
		return errors.New("--out-dir and --keep-key exclude each other")
	}
	if a.outDir != "" {
		if err := os.MkdirAll(a.outDir, 0o700); err != nil {
			return err
		}
	}
	width := max(5, len(fmt.Sprint(a.count)))
	reqs := make([]control.AddMemberRequest, a.count)
	for i := range reqs {
		reqs[i] = control.AddMemberRequest{Label: fmt.Sprintf("%s-%0*d", a.prefix, width, i+1)}
		if err := a.policy(&reqs[i]); err != nil {
			return err
		}
	}
	privs := map[string]keys.Key{}
	if a.outDir != "" {
		ks, err := generateKeys(a.count)
		if err != nil {
			return err
		}
		for i, k := range ks {
			reqs[i].PublicKey = k.pub
			privs[k.pub] = k.priv
		}
	}
	start := time.Now()
	p := newProgress(cmd.ErrOrStderr(), "members added", len(reqs))
	ms, err := addChunked(cmd.Context(), f.client(), reqs, a.outDir != "", p)
	if a.outDir != "" {
		for i := range ms {
			m := &ms[i]
			m.Config = fillPrivateKey(m.Config, privs[m.PublicKey])
			if werr := writeFile0600(filepath.Join(a.outDir, m.Label+".conf"), m.Config); werr != nil {
				return errors.Join(werr, err)
			}
			m.Config = ""
		}
	}
	if err != nil {
		return fmt.Errorf("%d of %d members added before: %w", len(ms), len(reqs), err)
	}
	if f.json {
		return writeJSON(stdout, ms)
	}
	fmt.Fprintf(stdout, "added %d members (%s .. %s) in %.2fs\n", len(ms), ms[0].Label, ms[len(ms)-1].Label, time.Since(start).Seconds())
	if a.outDir != "" {
		fmt.Fprintf(stdout, "client configs in %s\n", a.outDir)
	}
	return nil
}

// keyPair is a generated private key and its public key in base64.
type keyPair struct {
	priv keys.Key
	pub  string
}

// generateKeys makes n key pairs on all CPUs (20,000 take ~1.5 CPU-seconds).
func generateKeys(n int) ([]keyPair, error) {
	out := make([]keyPair, n)
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				k, err := keys.Generate(nil)
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = keyPair{priv: k, pub: k.Public().String()}
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
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

func newMemberShowCmd(f *flags, stdout io.Writer) *cobra.Command {
	var qr bool
	var out string
	cmd := &cobra.Command{
		Use:   "show LABEL|KEY",
		Short: "Show one member: policy, live session, rate, and its config when the node kept the key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := f.client().Member(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if (qr || out != "") && m.Config == "" {
				return fmt.Errorf("no client config for %s: the node does not hold its private key (it was generated by exitctl or the member)", m.Label)
			}
			if qr || out != "" {
				return printConfig(cmd, f, stdout, m, out, qr, "shown")
			}
			if f.json {
				return writeJSON(stdout, m)
			}
			writeMemberDetails(stdout, m, time.Now())
			if m.Config != "" {
				fmt.Fprintf(stdout, "\n%s", m.Config)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&qr, "qr", false, "show the client config as a QR code")
	cmd.Flags().StringVar(&out, "out", "", "write the client config to this file (mode 0600)")
	return cmd
}

func writeMemberDetails(w io.Writer, m control.Member, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "label\t%s\npublic key\t%s\nipv4\t%s\nipv6\t%s\ncreated\t%s\nstate\t%s\nweight\t%d\n",
		m.Label, m.PublicKey, addrStr(m.IPv4), addrStr(m.IPv6), m.Created.Format(time.RFC3339), state(m, now), m.Weight)
	limit := "none"
	if m.EgressLimit != 0 || m.IngressLimit != 0 {
		limit = fmt.Sprintf("down %s, up %s", limitHuman(m.EgressLimit), limitHuman(m.IngressLimit))
		if !m.LimitsEnforced {
			limit += " (stored; not enforced under the fifo discipline)"
		}
	}
	fmt.Fprintf(tw, "connection quota\t%s\n", quotaHuman(m.MaxConns))
	fmt.Fprintf(tw, "rate cap\t%s\nlast handshake\t%s\nendpoint\t%s\nrx / tx\t%s / %s\nrate now\tdown %s, up %s\n",
		limit, agoAt(m.LastHandshake, now), dash(m.Endpoint), bytesHuman(m.RxBytes), bytesHuman(m.TxBytes),
		bitsHuman(m.TxRate), bitsHuman(m.RxRate))
	key := "held by the member only"
	if m.KeyKept {
		key = "KEPT on this node (--keep-key): readable by every user allowed on the control socket; remove and re-add the member to change that"
	}
	fmt.Fprintf(tw, "private key\t%s\n", key)
	tw.Flush()
}

// state is one word for a member's condition.
func state(m control.Member, now time.Time) string {
	switch {
	case m.Disabled:
		return "disabled"
	case control.Connected(m.LastHandshake, now):
		return "connected"
	}
	return "idle"
}

func newMemberRemoveCmd(f *flags, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:     "remove LABEL|KEY...",
		Aliases: []string{"rm"},
		Short:   "Remove members; their sessions end at once and their addresses are quarantined",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ms []control.Member
			var err error
			if len(args) == 1 {
				var m control.Member
				m, err = f.client().RemoveMember(cmd.Context(), args[0])
				ms = []control.Member{m}
			} else {
				ms, err = removeChunked(cmd.Context(), f.client(), args, newProgress(cmd.ErrOrStderr(), "members removed", len(args)))
			}
			if err != nil {
				return err
			}
			if f.json {
				if len(args) == 1 {
					return writeJSON(stdout, ms[0])
				}
				return writeJSON(stdout, ms)
			}
			for _, m := range ms {
				fmt.Fprintf(stdout, "removed %s (%s)\n", m.Label, m.PublicKey)
			}
			return nil
		},
	}
}

// parseRatePair reads DOWN[/UP] ("50mbit/10mbit", "20mbit" for both ways,
// "0" or "none" for no cap).
func parseRatePair(s string) (down, up uint64, err error) {
	d, u, pair := strings.Cut(s, "/")
	if down, err = parseLimit(d); err != nil {
		return 0, 0, err
	}
	if !pair {
		return down, down, nil
	}
	if up, err = parseLimit(u); err != nil {
		return 0, 0, err
	}
	return down, up, nil
}

func parseLimit(s string) (uint64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "0", "none", "off", "":
		return 0, nil
	}
	return config.ParseRate(s)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// addrOr maps the zero netip.Addr's String ("invalid IP") to "-".
func addrOr(s string) string {
	if s == "invalid IP" {
		return "-"
	}
	return s
}

// addrStr prints an address or "-" when there is none.
func addrStr(a netip.Addr) string { return addrOr(a.String()) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func agoAt(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Truncate(time.Second).String() + " ago"
}

func bytesHuman(b uint64) string { return units.FormatBytes(b) }

// bitsHuman prints a rate in bits/s.
func bitsHuman(b uint64) string { return units.FormatBitRate(float64(b)) }

func limitHuman(b uint64) string {
	if b == 0 {
		return "unlimited"
	}
	return bitsHuman(b)
}
