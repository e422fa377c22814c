package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"exitd/internal/harness"
	"exitd/internal/netlab"
)

// Second addresses on the exit's member-facing side (a floating IP, an SNAT
// pool address): secondaries in the underlay prefixes, so the routing table
// would answer members from the primary ExitUnderlay4/6.
const (
	exitSecond4 = "198.18.0.2"
	exitSecond6 = "2001:2:0:2::2"
)

// TestStickySourceAddress: the exit has two member-facing addresses and
// members dial each of them. Every member's namespace drops UDP from the
// exit address it did not dial, as a strict NAT or stateful firewall in
// front of a member would, and counts it. Each member must complete its
// handshake, carry traffic, keep the dialled endpoint, and never see a
// datagram from the other address.
func TestStickySourceAddress(t *testing.T) {
	l := newLab(t, 4, "")
	ctx := context.Background()
	for _, a := range [][]string{
		{"ip", "addr", "add", exitSecond4 + "/16", "dev", netlab.ExitUnderlayIface},
		{"ip", "-6", "addr", "add", exitSecond6 + "/64", "dev", netlab.ExitUnderlayIface, "nodad"},
	} {
		if out, err := l.Exit.Exec(ctx, a[0], a[1:]...); err != nil {
			t.Fatal(err, string(out))
		}
	}
	cases := []struct {
		label        string
		dial, other  string
		family, host string // nft family keyword; internet host for the traffic check
	}{
		{"v4first", netlab.ExitUnderlay4, exitSecond4, "ip", netlab.Internet4},
		{"v4second", exitSecond4, netlab.ExitUnderlay4, "ip", netlab.Internet4},
		{"v6first", netlab.ExitUnderlay6, exitSecond6, "ip6", "[" + netlab.Internet6 + "]"},
		{"v6second", exitSecond6, netlab.ExitUnderlay6, "ip6", "[" + netlab.Internet6 + "]"},
	}
	// Bring every member up first: their handshakes run concurrently.
	members := make([]*harness.Member, len(cases))
	for i, tc := range cases {
		ns := l.Members[i]
		if err := dropFrom(ctx, ns, tc.family, tc.dial, tc.other); err != nil {
			t.Fatal(err)
		}
		m, err := addMemberDialling(ctx, l, ns, tc.label, netip.AddrPortFrom(netip.MustParseAddr(tc.dial), 443))
		if err != nil {
			t.Fatal(err)
		}
		members[i] = m
	}
	for i, tc := range cases {
		m := members[i]
		t.Run(tc.label, func(t *testing.T) {
			// wireguard-go retries an unanswered initiation every 5 s:
			// 12 s covers a lost first attempt and one retry.
			if err := waitHandshake(ctx, m, 12*time.Second); err != nil {
				right, _ := nftCounter(ctx, m.NS, "right")
				wrong, _ := nftCounter(ctx, m.NS, "wrong")
				t.Fatalf("member dialling %s: no handshake (%v); datagrams from %s: %d, from %s (dropped): %d",
					tc.dial, err, tc.dial, right, tc.other, wrong)
			}
			// A download makes the exit send batches (GSO when offered).
			body, err := httpGetTimeout(ctx, m.NS, "http://"+tc.host+"/bytes?n=300000", 15*time.Second)
			if err != nil || len(body) != 300000 {
				t.Fatalf("download through the tunnel: %d bytes, %v", len(body), err)
			}
			out, err := m.NS.Exec(ctx, "wg", "show", m.Dev, "endpoints")
			if err != nil {
				t.Fatal(err)
			}
			want := netip.AddrPortFrom(netip.MustParseAddr(tc.dial), 443).String()
			if !strings.Contains(string(out), "\t"+want) {
				t.Fatalf("member's endpoint moved: %q, want %s", out, want)
			}
			right, err := nftCounter(ctx, m.NS, "right")
			if err != nil {
				t.Fatal(err)
			}
			wrong, err := nftCounter(ctx, m.NS, "wrong")
			if err != nil {
				t.Fatal(err)
			}
			if wrong != 0 || right == 0 {
				t.Fatalf("datagrams from the dialled %s: %d, from the other address %s: %d (want >0 and 0)",
					tc.dial, right, tc.other, wrong)
			}
		})
	}
}

// dropFrom installs, in a member's namespace, counters of the exit's UDP/443
// datagrams from the dialled address ("right") and from the other one
// ("wrong", dropped).
func dropFrom(ctx context.Context, ns *netlab.NS, family, dial, other string) error {
	ruleset := fmt.Sprintf(`table inet sticky {
	counter right {}
	counter wrong {}
	chain input {
		type filter hook input priority filter; policy accept;
		%[1]s saddr %[3]s udp sport 443 counter name wrong drop
		%[1]s saddr %[2]s udp sport 443 counter name right
	}
}
`, family, dial, other)
	cmd := ns.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", ns.Name, err, out)
	}
	return nil
}

// nftCounter reads a named counter of the sticky table.
func nftCounter(ctx context.Context, ns *netlab.NS, name string) (uint64, error) {
	out, err := ns.Exec(ctx, "nft", "-j", "list", "counter", "inet", "sticky", name)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("nft counter %s: %w: %s", name, err, out)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("nft counter %s: not in %s", name, out)
}

// addMemberDialling registers label and brings its wireguard-go up with the
// printed config, its Endpoint replaced by ep (before the first datagram).
func addMemberDialling(ctx context.Context, l *lab, ns *netlab.NS, label string, ep netip.AddrPort) (*harness.Member, error) {
	out, err := l.node.Exitctl(ctx, "member", "add", "--label", label)
	if err != nil {
		return nil, err
	}
	def := "Endpoint = " + netlab.ExitUnderlay4 + ":443"
	if !strings.Contains(string(out), def) {
		return nil, fmt.Errorf("config of %s has no %q:\n%s", label, def, out)
	}
	m := &harness.Member{NS: ns, Label: label, Dev: harness.DeviceName(),
		Config: strings.Replace(string(out), def, "Endpoint = "+ep.String(), 1)}
	return m, m.Up(ctx, l.node.Opts.Bin.WireguardGo, filepath.Join(l.node.Opts.Dir, label+".conf"))
}

// waitHandshake polls the member's latest handshake (every 100 ms: each
// poll is a process).
func waitHandshake(ctx context.Context, m *harness.Member, d time.Duration) error {
	var last time.Time
	return netlab.WaitFor(ctx, d, func() bool {
		if time.Since(last) < 100*time.Millisecond {
			return false
		}
		last = time.Now()
		out, err := m.NS.Exec(ctx, "wg", "show", m.Dev, "latest-handshakes")
		if err != nil {
			return false
		}
		_, ts, _ := strings.Cut(strings.TrimSpace(string(out)), "\t")
		n, err := strconv.ParseInt(ts, 10, 64)
		return err == nil && n > 0
	})
}
