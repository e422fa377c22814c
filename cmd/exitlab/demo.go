package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"exitd/internal/harness"
	"exitd/internal/netlab"
)

func newDemoCmd(b *binFlags, stdout io.Writer) *cobra.Command {
	var secs int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "A real WireGuard member reaches an internet host through exitd, with live stats",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo(cmd.Context(), b.binaries(), stdout, time.Duration(secs)*time.Second)
		},
	}
	cmd.Flags().IntVar(&secs, "seconds", 10, "how long the live download runs")
	return cmd
}

// step prints a numbered demo step.
type stepper struct {
	w io.Writer
	n int
}

func (s *stepper) step(format string, args ...any) {
	s.n++
	fmt.Fprintf(s.w, "\n\033[1m[%d] %s\033[0m\n", s.n, fmt.Sprintf(format, args...))
}

func demo(ctx context.Context, bins harness.Binaries, w io.Writer, dur time.Duration) error {
	s := &stepper{w: w}
	s.step("Building the lab: member ── exit (exitd) ── router ── internet (web + DNS), plus a private management host")
	lab, err := netlab.New(ctx, netlab.Options{Members: 2})
	if err != nil {
		return err
	}
	defer func() {
		s.step("Tearing down: exitd stopped, namespaces removed")
		lab.Close()
	}()
	fmt.Fprintf(w, "    member underlay %s, exit %s (UDP/443), WAN %s -> internet host %s / %s\n",
		netlab.UnderlayPrefix4, netlab.ExitUnderlay4, netlab.ExitWAN4, netlab.Internet4, netlab.Internet6)
	web, err := lab.Internet.ServeHTTP(ctx, netip.MustParseAddrPort(netlab.Internet4+":80"), netip.MustParseAddrPort("["+netlab.Internet6+"]:80"))
	if err != nil {
		return err
	}
	defer web.Close()
	if _, err := lab.Mgmt.ServeHTTP(ctx, netip.MustParseAddrPort(netlab.Mgmt4+":80")); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "exitd-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	zone, err := harness.ServeZone(lab, map[string][]netip.Addr{
		"www.exit.test": {netip.MustParseAddr(netlab.Internet4), netip.MustParseAddr(netlab.Internet6)},
	})
	if err != nil {
		return err
	}
	defer zone.Close()

	s.step("Starting exitd in the exit namespace")
	node, err := harness.StartNode(ctx, lab, harness.NodeOptions{Bin: bins, Dir: dir})
	if err != nil {
		return err
	}
	defer node.Proc.Stop()
	cfg, _ := os.ReadFile(node.Config)
	fmt.Fprintf(w, "%s", indent(string(cfg)))

	s.step("exitctl member add --label alice   (prints a wg-quick config)")
	m, err := node.AddMember(ctx, lab.Members[0], "alice")
	if err != nil {
		return err
	}
	fmt.Fprint(w, indent(redactKey(m.Config)))
	fmt.Fprintf(w, "    -> Debian's wireguard-go + wg in the member namespace use exactly this config\n")

	s.step("The member fetches http://%s/ip and http://[%s]/ip through the tunnel", netlab.Internet4, netlab.Internet6)
	for _, url := range []string{"http://" + netlab.Internet4 + "/ip", "http://[" + netlab.Internet6 + "]/ip"} {
		body, err := harness.Get(ctx, m.NS, url, 5*time.Second)
		if err != nil {
			return fmt.Errorf("fetch %s: %w", url, err)
		}
		fmt.Fprintf(w, "    %-34s internet host saw source %s  (the exit's WAN address: SNAT works)\n", url, strings.TrimSpace(body))
	}

	s.step("DNS inside the tunnel: the member's names resolve at the exit (10.99.0.1:53), never at its ISP")
	for _, args := range [][]string{
		{"@10.99.0.1", "www.exit.test", "A"},
		{"@fd00:99::1", "www.exit.test", "AAAA"},
		{"@192.0.2.53", "www.exit.test", "A"}, // any other resolver: captured
	} {
		out, err := m.NS.Exec(ctx, "dig", append([]string{"+short", "+time=2", "+tries=1"}, args...)...)
		if err != nil {
			return fmt.Errorf("dig %v: %w", args, err)
		}
		note := "answered by exitd's resolver"
		if args[0] == "@192.0.2.53" {
			note = "a query to another resolver, redirected to exitd's (capture): no leak"
		}
		fmt.Fprintf(w, "    dig %-28s -> %-16s %s\n", strings.Join(args, " "), strings.TrimSpace(string(out)), note)
	}

	s.step("SOCKS5 inside the tunnel: curl --socks5-hostname 10.99.0.1:1080 http://www.exit.test/ip")
	out, err := m.NS.Exec(ctx, "curl", "-sS", "--max-time", "5", "--socks5-hostname", "10.99.0.1:1080", "http://www.exit.test/ip")
	if err != nil {
		return fmt.Errorf("curl through the proxy: %w", err)
	}
	fmt.Fprintf(w, "    internet host saw source %s (the name resolved by exitd, the connection from its WAN address)\n", strings.TrimSpace(string(out)))
	out, _ = m.NS.Exec(ctx, "curl", "-sS", "--max-time", "5", "--socks5-hostname", "10.99.0.1:1080", "http://"+netlab.Mgmt4+"/")
	fmt.Fprintf(w, "    the private LAN host %s through the proxy: %s\n", netlab.Mgmt4, strings.TrimSpace(string(out)))

	s.step("Leak protection: the member tries the exit's private LAN host %s", netlab.Mgmt4)
	if _, err := harness.Get(ctx, m.NS, "http://"+netlab.Mgmt4+"/", 1500*time.Millisecond); err == nil {
		return fmt.Errorf("the member reached the management host: leak protection failed")
	}
	fmt.Fprintf(w, "    blocked (leak_drop counter: %d)\n", drops(ctx, node)["leak_drop"])

	s.step("Live: alice downloads from the internet host for %s (figures from exitd's own counters)", dur)
	if err := liveDownload(ctx, w, node, m, dur); err != nil {
		return err
	}

	s.step("exitctl member list / exitctl status")
	for _, args := range [][]string{{"member", "list"}, {"status"}} {
		out, err := node.Exitctl(ctx, args...)
		if err != nil {
			return err
		}
		fmt.Fprint(w, indent(string(out)))
	}
	if out, err := lab.Exit.Exec(ctx, "wg", "show", node.Opts.Tun); err == nil {
		s.step("wg show %s on the exit (UAPI socket)", node.Opts.Tun)
		fmt.Fprint(w, indent(string(out)))
	}
	code, err := node.Terminate(15 * time.Second)
	if err != nil || code != 0 {
		return fmt.Errorf("exitd did not stop cleanly: code %d, %v", code, err)
	}
	fmt.Fprintf(w, "\n    exitd stopped (exit code 0): its nftables table and TUN are gone.\n")
	return demoCluster(ctx, bins, w, s)
}

func liveDownload(ctx context.Context, w io.Writer, node *harness.Node, m *harness.Member, dur time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(dctx, http.MethodGet, "http://"+netlab.Internet4+"/bytes?n=1099511627776", nil)
		resp, err := m.NS.HTTPClient().Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		done <- err
	}()
	prev, err := status(ctx, node)
	if err != nil {
		return err
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	fmt.Fprintf(w, "    %5s  %12s  %12s  %s\n", "t", "to members", "from members", "members connected")
	start := time.Now()
	for {
		select {
		case <-dctx.Done():
			<-done
			return nil
		case err := <-done:
			if dctx.Err() == nil {
				return fmt.Errorf("download ended early: %v", err)
			}
			return nil
		case <-t.C:
			cur, err := status(ctx, node)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "    %4.0fs  %12s  %12s  %d/%d\n", time.Since(start).Seconds(),
				rate(cur.TxBytes-prev.TxBytes), rate(cur.RxBytes-prev.RxBytes), cur.MembersConnected, cur.MembersTotal)
			prev = cur
		}
	}
}

type nodeStatus struct {
	MembersTotal     int               `json:"members_total"`
	MembersConnected int               `json:"members_connected"`
	RxBytes          uint64            `json:"rx_bytes"`
	TxBytes          uint64            `json:"tx_bytes"`
	Drops            map[string]uint64 `json:"drops"`
}

func status(ctx context.Context, n *harness.Node) (nodeStatus, error) {
	var s nodeStatus
	out, err := n.Exitctl(ctx, "--json", "status")
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(out, &s)
}

func drops(ctx context.Context, n *harness.Node) map[string]uint64 {
	s, _ := status(ctx, n)
	return s.Drops
}

func rate(bytesPerSec uint64) string {
	return fmt.Sprintf("%.1f Mbit/s", float64(bytesPerSec)*8/1e6)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

// redactKey hides the member's private key in demo output.
func redactKey(conf string) string {
	lines := strings.Split(conf, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "PrivateKey = ") {
			lines[i] = "PrivateKey = (generated by exitctl, shown only to the operator)"
		}
	}
	return strings.Join(lines, "\n")
}
