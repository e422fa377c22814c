package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"exitd/internal/netlab"
)

/* A lab cluster: one exitd per exit namespace of a multi-exit lab
   (netlab.Options.Exits), all on one etcd (StartEtcd) under one prefix and
   one shared WireGuard key file, so one client config works on every node.
   Every node's public_endpoint is the cluster address, by default
   netlab.FloatingUnderlay4, which StartCluster puts on exit 0's underlay
   and MoveFloating moves as keepalived would. */

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	Bin Binaries
	// Dir holds the key file and one directory per node (Dir/n0, ...); it
	// must exist and be short (control sockets live there).
	Dir string
	// Etcd is the member store every node uses.
	Etcd *EtcdCluster
	// Nodes is the number of nodes, one per exit; default len(lab.Exits).
	Nodes int
	// Prefix is the cluster's etcd key prefix; default "/exitd/lab".
	Prefix string
	// Endpoint is every node's public_endpoint host; default
	// netlab.FloatingUnderlay4 (then held by exit 0 at the start).
	Endpoint string
	// Extra is appended to every node's TOML (before the [cluster] table).
	Extra string
}

// Cluster is a running lab cluster.
type Cluster struct {
	Lab     *netlab.Lab
	Nodes   []*Node // Nodes[i] runs in Lab.Exits[i], named "node<i>"
	KeyFile string  // the shared WireGuard private key

	mu     sync.Mutex
	holder int // exit holding the floating address; -1 none
}

// StartCluster writes the shared key and starts the nodes (concurrently),
// each waiting until its control socket answers. On error it stops the
// nodes it started.
func StartCluster(ctx context.Context, lab *netlab.Lab, o ClusterOptions) (*Cluster, error) {
	if o.Nodes == 0 {
		o.Nodes = len(lab.Exits)
	}
	switch {
	case o.Etcd == nil:
		return nil, errors.New("harness: cluster: no etcd")
	case o.Nodes < 1 || o.Nodes > len(lab.Exits):
		return nil, fmt.Errorf("harness: cluster: %d nodes for %d exits", o.Nodes, len(lab.Exits))
	case o.Dir == "":
		return nil, errors.New("harness: cluster: no Dir")
	}
	if o.Prefix == "" {
		o.Prefix = "/exitd/lab"
	}
	if o.Endpoint == "" {
		o.Endpoint = netlab.FloatingUnderlay4
	}
	c := &Cluster{Lab: lab, KeyFile: filepath.Join(o.Dir, "cluster.key"), holder: -1}
	key, err := exec.CommandContext(ctx, "wg", "genkey").Output()
	if err != nil {
		return nil, fmt.Errorf("harness: cluster: wg genkey: %w", err)
	}
	if err := os.WriteFile(c.KeyFile, key, 0o600); err != nil {
		return nil, err
	}
	if o.Endpoint == netlab.FloatingUnderlay4 {
		if err := c.MoveFloating(0); err != nil {
			return nil, err
		}
	}
	var eps []string
	for _, ep := range o.Etcd.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", ep))
	}
	c.Nodes = make([]*Node, o.Nodes)
	errs := make([]error, o.Nodes)
	var wg sync.WaitGroup
	for i := range o.Nodes {
		dir := filepath.Join(o.Dir, fmt.Sprintf("n%d", i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		extra := fmt.Sprintf("%s\n[cluster]\nendpoints = [%s]\nprefix = %q\nwireguard_key = %q\nname = \"node%d\"\n",
			o.Extra, strings.Join(eps, ", "), o.Prefix, c.KeyFile, i)
		no := NodeOptions{Bin: o.Bin, Dir: dir, Exit: lab.Exits[i], Endpoint: o.Endpoint, Extra: extra}
		wg.Go(func() {
			c.Nodes[i], errs[i] = StartNode(ctx, lab, no)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, fmt.Errorf("harness: cluster: %w", err)
	}
	return c, nil
}

// Close stops every node (SIGTERM, then SIGKILL after a grace period).
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		if n != nil && n.Proc != nil {
			errs = append(errs, n.Proc.Stop())
		}
	}
	return errors.Join(errs...)
}

// Holder is the exit holding the floating address, -1 when none does.
func (c *Cluster) Holder() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holder
}

// MoveFloating moves netlab.FloatingUnderlay4 to exit to's underlay: off
// the current holder, onto exit to, then a gratuitous ARP from there.
func (c *Cluster) MoveFloating(to int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl := netip.PrefixFrom(netip.MustParseAddr(netlab.FloatingUnderlay4), 32)
	if c.holder >= 0 {
		if err := c.Lab.Exits[c.holder].DelAddr(netlab.ExitUnderlayIface, fl); err != nil {
			return err
		}
		c.holder = -1
	}
	if err := c.Lab.Exits[to].AddAddr(netlab.ExitUnderlayIface, fl); err != nil {
		return err
	}
	c.holder = to
	return c.Lab.Exits[to].Announce(netlab.ExitUnderlayIface, fl.Addr())
}

// Announce repeats the holder's gratuitous ARP (keepalived sends several).
func (c *Cluster) Announce() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holder < 0 {
		return errors.New("harness: cluster: no exit holds the floating address")
	}
	return c.Lab.Exits[c.holder].Announce(netlab.ExitUnderlayIface, netip.MustParseAddr(netlab.FloatingUnderlay4))
}

// SetEndpoint points the member at endpoint ("host:port") with a fresh
// session, as a user would by editing the config's Endpoint line and
// restarting the tunnel: `wg setconf` with the edited config replaces the
// peer (and with it the session keys), so the next packet starts a
// handshake with the new endpoint. Addresses and routes stay.
func (m *Member) SetEndpoint(ctx context.Context, endpoint string) error {
	m.Config = replaceEndpoint(m.Config, endpoint)
	setconf, _, _ := splitWGQuick(m.Config)
	f, err := os.CreateTemp("", "wgm-*.conf")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(setconf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if out, err := m.NS.Exec(ctx, "wg", "setconf", m.Dev, f.Name()); err != nil {
		return fmt.Errorf("harness: %s: wg setconf: %v: %s", m.Label, err, out)
	}
	return nil
}

// replaceEndpoint returns a wg-quick config with every Endpoint line
// replaced by endpoint.
func replaceEndpoint(conf, endpoint string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		if k, _, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "Endpoint" {
			line = "Endpoint = " + endpoint
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}
