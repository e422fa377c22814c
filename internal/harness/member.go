package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"exitd/internal/netlab"
)

// Member is a WireGuard client in a member namespace.
type Member struct {
	NS     *netlab.NS
	Label  string
	Dev    string
	Config string // the wg-quick config exitctl printed
	Addr4  string // inner addresses from the config
	Addr6  string
	Proc   *netlab.Process
}

// AddMember registers label with `exitctl member add` and brings up a
// wireguard-go client in ns from exactly the printed config.
func (n *Node) AddMember(ctx context.Context, ns *netlab.NS, label string) (*Member, error) {
	out, err := n.Exitctl(ctx, "member", "add", "--label", label)
	if err != nil {
		return nil, err
	}
	m := &Member{NS: ns, Label: label, Dev: DeviceName(), Config: string(out)}
	return m, m.Up(ctx, n.Opts.Bin.WireguardGo, filepath.Join(n.Opts.Dir, label+".conf"))
}

// Up starts wireguard-go for the member's config. confPath is where the wg
// (setconf) part of the config is written.
func (m *Member) Up(ctx context.Context, wgBin, confPath string) error {
	if wgBin == "" {
		wgBin = "wireguard-go"
	}
	setconf, addrs, mtu := splitWGQuick(m.Config)
	if err := os.WriteFile(confPath, []byte(setconf), 0o600); err != nil {
		return err
	}
	for _, a := range addrs {
		if strings.Contains(a, ":") {
			m.Addr6 = strings.TrimSuffix(a, "/128")
		} else {
			m.Addr4 = strings.TrimSuffix(a, "/32")
		}
	}
	cmd := m.NS.Command(context.Background(), wgBin, "-f", m.Dev)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
	p, err := m.NS.Start(cmd)
	if err != nil {
		return err
	}
	m.Proc = p
	if err := netlab.WaitFor(ctx, 10*time.Second, func() bool {
		_, err := m.NS.Exec(ctx, "ip", "link", "show", m.Dev)
		return err == nil
	}); err != nil {
		return fmt.Errorf("harness: %s did not appear: %v\n%s", m.Dev, err, p.Output())
	}
	steps := [][]string{{"wg", "setconf", m.Dev, confPath}}
	for _, a := range addrs {
		if strings.Contains(a, ":") {
			steps = append(steps, []string{"ip", "-6", "addr", "add", a, "dev", m.Dev, "nodad"})
		} else {
			steps = append(steps, []string{"ip", "addr", "add", a, "dev", m.Dev})
		}
	}
	if mtu == "" {
		mtu = "1420"
	}
	steps = append(steps,
		[]string{"ip", "link", "set", m.Dev, "mtu", mtu, "up"},
		[]string{"ip", "route", "replace", "default", "dev", m.Dev},
		[]string{"ip", "-6", "route", "replace", "default", "dev", m.Dev})
	for _, s := range steps {
		if out, err := m.NS.Exec(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("harness: %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// Down stops the member's wireguard-go (its link goes with it).
func (m *Member) Down() error {
	if m.Proc == nil {
		return nil
	}
	return m.Proc.Stop()
}

// splitWGQuick separates a wg-quick config into what `wg setconf` accepts
// and the wg-quick-only settings (Address, MTU; DNS is ignored).
func splitWGQuick(conf string) (setconf string, addrs []string, mtu string) {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, "=")
		key := strings.TrimSpace(k)
		switch {
		case ok && key == "Address":
			for _, a := range strings.Split(v, ",") {
				addrs = append(addrs, strings.TrimSpace(a))
			}
			continue
		case ok && key == "MTU":
			mtu = strings.TrimSpace(v)
			continue
		case ok && (key == "DNS" || key == "Table" || strings.HasPrefix(key, "Pre") || strings.HasPrefix(key, "Post") || key == "SaveConfig"):
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String(), addrs, mtu
}

// DeviceName returns a unique member interface name: wireguard-go's UAPI
// sockets share /var/run/wireguard across namespaces, so labels that repeat
// between parallel labs must not become interface names.
func DeviceName() string { return RandomName("wgm") }
