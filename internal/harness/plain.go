package harness

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"exitd/internal/netlab"
)

// Exit is an exit node under measurement: exitd, or a plain wireguard-go
// exit for comparison.
type Exit interface {
	// AddMember registers a member and brings up its client in ns.
	AddMember(ctx context.Context, ns *netlab.NS, label string) (*Member, error)
	// Pid is the process whose CPU time is charged to the exit.
	Pid() int
	// Close stops the exit and removes what it set up.
	Close() error
}

var (
	_ Exit = (*Node)(nil)
	_ Exit = (*PlainExit)(nil)
)

// Pid implements Exit.
func (n *Node) Pid() int { return n.Proc.Pid() }

// Close implements Exit: SIGTERM and wait.
func (n *Node) Close() error {
	if _, err := n.Terminate(15 * time.Second); err != nil {
		return err
	}
	return nil
}

// PlainExit is a wireguard-go binary configured with wg as a plain exit:
// one interface, the members as peers, an nft masquerade table. It is the
// "what users run instead" baseline.
type PlainExit struct {
	lab     *netlab.Lab
	dir     string
	dev     string
	memberW string // member implementation
	proc    *netlab.Process
	pub     string
	next    int
}

// StartPlainExit starts exitBin (e.g. an upstream-built or Debian
// wireguard-go) in the exit namespace on UDP/443 with masquerade to the WAN.
// Members use memberBin.
func StartPlainExit(ctx context.Context, lab *netlab.Lab, exitBin, memberBin, dir string) (*PlainExit, error) {
	p := &PlainExit{lab: lab, dir: dir, dev: RandomName("wx"), memberW: memberBin, next: 2}
	cmd := lab.Exit.Command(context.Background(), exitBin, "-f", p.dev)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
	proc, err := lab.Exit.Start(cmd)
	if err != nil {
		return nil, err
	}
	p.proc = proc
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
		_, err := lab.Exit.Exec(ctx, "ip", "link", "show", p.dev)
		return err == nil
	}); err != nil {
		p.Close()
		return nil, fmt.Errorf("harness: %s did not create %s: %v\n%s", exitBin, p.dev, err, proc.Output())
	}
	priv, err := exec.CommandContext(ctx, "wg", "genkey").Output()
	if err != nil {
		p.Close()
		return nil, err
	}
	pubCmd := exec.CommandContext(ctx, "wg", "pubkey")
	pubCmd.Stdin = strings.NewReader(string(priv))
	pub, err := pubCmd.Output()
	if err != nil {
		p.Close()
		return nil, err
	}
	p.pub = strings.TrimSpace(string(pub))
	keyFile := filepath.Join(dir, "exit.key")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		p.Close()
		return nil, err
	}
	nft := fmt.Sprintf(`table inet %s {
  chain post { type nat hook postrouting priority srcnat; oifname %q ip saddr 10.99.0.0/16 masquerade; oifname %q ip6 saddr fd00:99::/64 masquerade; }
}`, p.dev, netlab.ExitWANIface, netlab.ExitWANIface)
	steps := [][]string{
		{"wg", "set", p.dev, "private-key", keyFile, "listen-port", "443"},
		{"ip", "addr", "add", "10.99.0.1/16", "dev", p.dev},
		{"ip", "-6", "addr", "add", "fd00:99::1/64", "dev", p.dev, "nodad"},
		{"ip", "link", "set", p.dev, "mtu", "1420", "up"},
	}
	for _, s := range steps {
		if out, err := lab.Exit.Exec(ctx, s[0], s[1:]...); err != nil {
			p.Close()
			return nil, fmt.Errorf("harness: %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	c := lab.Exit.Command(ctx, "nft", "-f", "-")
	c.Stdin = strings.NewReader(nft)
	if out, err := c.CombinedOutput(); err != nil {
		p.Close()
		return nil, fmt.Errorf("harness: nft: %v: %s", err, out)
	}
	return p, nil
}

// AddMember implements Exit.
func (p *PlainExit) AddMember(ctx context.Context, ns *netlab.NS, label string) (*Member, error) {
	priv, err := exec.CommandContext(ctx, "wg", "genkey").Output()
	if err != nil {
		return nil, err
	}
	pubCmd := exec.CommandContext(ctx, "wg", "pubkey")
	pubCmd.Stdin = strings.NewReader(string(priv))
	pub, err := pubCmd.Output()
	if err != nil {
		return nil, err
	}
	i := p.next
	p.next++
	a4, a6 := fmt.Sprintf("10.99.%d.%d", i/256, i%256), fmt.Sprintf("fd00:99::%x", i)
	if out, err := p.lab.Exit.Exec(ctx, "wg", "set", p.dev, "peer", strings.TrimSpace(string(pub)),
		"allowed-ips", a4+"/32,"+a6+"/128"); err != nil {
		return nil, fmt.Errorf("harness: wg set peer: %v: %s", err, out)
	}
	conf := fmt.Sprintf("[Interface]\nPrivateKey = %sAddress = %s/32, %s/128\nMTU = 1420\n\n[Peer]\nPublicKey = %s\nEndpoint = %s:443\nAllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n",
		string(priv), a4, a6, p.pub, netlab.ExitUnderlay4)
	m := &Member{NS: ns, Label: label, Dev: DeviceName(), Config: conf}
	return m, m.Up(ctx, p.memberW, filepath.Join(p.dir, label+".conf"))
}

// Pid implements Exit.
func (p *PlainExit) Pid() int { return p.proc.Pid() }

// Close implements Exit.
func (p *PlainExit) Close() error {
	ctx := context.Background()
	p.lab.Exit.Exec(ctx, "nft", "delete", "table", "inet", p.dev)
	return p.proc.Stop()
}

// Bareback routes a member's traffic over the underlay with plain
// forwarding and masquerade on the exit: the no-VPN reference.
type Bareback struct {
	lab *netlab.Lab
	ns  *netlab.NS
	tbl string
}

// StartBareback sets the routes and the masquerade table.
func StartBareback(ctx context.Context, lab *netlab.Lab, ns *netlab.NS) (*Bareback, error) {
	b := &Bareback{lab: lab, ns: ns, tbl: RandomName("bb")}
	nft := fmt.Sprintf(`table inet %s {
  chain post { type nat hook postrouting priority srcnat; oifname %q ip saddr %s masquerade; }
}`, b.tbl, netlab.ExitWANIface, netlab.UnderlayPrefix4)
	c := lab.Exit.Command(ctx, "nft", "-f", "-")
	c.Stdin = strings.NewReader(nft)
	if out, err := c.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("harness: nft: %v: %s", err, out)
	}
	if out, err := ns.Exec(ctx, "ip", "route", "replace", netlab.WANPrefix4, "via", netlab.ExitUnderlay4); err != nil {
		b.Close()
		return nil, fmt.Errorf("harness: route: %v: %s", err, out)
	}
	return b, nil
}

// Close removes the route and the table.
func (b *Bareback) Close() error {
	ctx := context.Background()
	b.ns.Exec(ctx, "ip", "route", "del", netlab.WANPrefix4)
	_, err := b.lab.Exit.Exec(ctx, "nft", "delete", "table", "inet", b.tbl)
	return err
}

// CPUSeconds is the user+system CPU time of pid and its threads so far.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("harness: short /proc/%d/stat", pid)
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// BuildUpstream builds wireguard-go at the version go.mod pins into dir,
// the "what users run instead" baseline of the benchmarks.
func BuildUpstream(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "wireguard-go-upstream")
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", out, "golang.zx2c4.com/wireguard").CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: build upstream wireguard-go: %v: %s", err, b)
	}
	return out, nil
}

// PublicKey is the exit's WireGuard public key (base64).
func (p *PlainExit) PublicKey() string { return p.pub }

// AddPeers adds peers (base64 public keys) with one /32 each, in one
// `wg addconf` (one UAPI transaction), as an operator would add many.
func (p *PlainExit) AddPeers(ctx context.Context, pubs []string, addrs []netip.Addr) error {
	conf, err := peersConf(pubs, addrs)
	if err != nil {
		return err
	}
	path := filepath.Join(p.dir, "peers.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	if out, err := p.lab.Exit.Exec(ctx, "wg", "addconf", p.dev, path); err != nil {
		return fmt.Errorf("harness: wg addconf: %v: %s", err, out)
	}
	return nil
}

// peersConf is the wg(8) configuration of peers with one address each.
func peersConf(pubs []string, addrs []netip.Addr) (string, error) {
	if len(pubs) != len(addrs) {
		return "", fmt.Errorf("harness: %d keys for %d addresses", len(pubs), len(addrs))
	}
	var b strings.Builder
	for i, k := range pubs {
		fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nAllowedIPs = %s\n\n", k, netip.PrefixFrom(addrs[i], addrs[i].BitLen()))
	}
	return b.String(), nil
}

// PlainMemberAddr is the i-th member address (i ≥ 0) in the plain exit's
// 10.99.0.0/16, the way AddMember numbers them (from .2).
func PlainMemberAddr(i int) netip.Addr {
	n := i + 2
	return netip.AddrFrom4([4]byte{10, 99, byte(n >> 8), byte(n)})
}

// Handshaken counts the exit's peers with a handshake within the last
// window (`wg show DEV latest-handshakes`).
func (p *PlainExit) Handshaken(ctx context.Context, now time.Time, window time.Duration) (int, error) {
	out, err := p.lab.Exit.Exec(ctx, "wg", "show", p.dev, "latest-handshakes")
	if err != nil {
		return 0, fmt.Errorf("harness: wg show: %v: %s", err, out)
	}
	return countHandshaken(string(out), now, window)
}

// countHandshaken counts lines "KEY\tUNIX-SECONDS" with a handshake within
// window of now (0 means never).
func countHandshaken(out string, now time.Time, window time.Duration) (int, error) {
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return 0, fmt.Errorf("harness: wg latest-handshakes: bad line %q", l)
		}
		sec, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("harness: wg latest-handshakes: bad line %q", l)
		}
		if sec > 0 && now.Sub(time.Unix(sec, 0)) <= window {
			n++
		}
	}
	return n, nil
}
