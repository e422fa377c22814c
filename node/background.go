package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"exitd/config"
)

// kernelRecheck is how often the kernel profile is re-read for drift.
const kernelRecheck = 5 * time.Minute

// startBackground runs the table watcher, the kernel drift check and the
// status/watchdog loop until ctx ends.
func (n *Node) startBackground(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := n.nat.Watch(ctx, func(err error) {
			if err != nil {
				n.log.Error("nftables table was deleted and could not be restored", "err", err)
				return
			}
			n.log.Warn("nftables table was deleted by someone else; restored it")
		}); err != nil && ctx.Err() == nil {
			n.log.Error("nftables watcher stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(kernelRecheck)
		defer t.Stop()
		n.kernel.Run(ctx, t.C)
	}()
	go func() {
		defer wg.Done()
		n.routineService(ctx) // systemd.go: STATUS, endpoints, watchdog
	}()
	n.startSampler(ctx, wg) // metrics.go: the load report
}

func (n *Node) statusLine() string {
	s, err := backend{n}.Status(context.Background())
	if err != nil {
		return "status unavailable"
	}
	return fmt.Sprintf("%d/%d members connected, rx %d B tx %d B", s.MembersConnected, s.MembersTotal, s.RxBytes, s.TxBytes)
}

// Reload re-reads the config and the registry and applies what can change
// at run time (filter, NAT, scheduler, peers) without dropping sessions.
func (n *Node) Reload() error {
	n.notify.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer n.notify.Notify("READY=1\nSTATUS=" + n.statusLine())
	n.mu.Lock()
	defer n.mu.Unlock()
	cfg := n.cfg
	if n.loadCfg != nil {
		c, err := n.loadCfg()
		if err != nil {
			return err
		}
		if err := restartOnly(n.cfg, c); err != nil {
			return err
		}
		cfg = c
	}
	if natChanged(n.cfg, cfg) {
		if err := n.nat.Apply(natConfig(cfg)); err != nil {
			return err
		}
	}
	if n.sched != nil {
		if err := n.sched.SetConfig(schedConfig(cfg)); err != nil {
			return err
		}
	}
	n.cfg = cfg
	if err := n.syncPeers(); err != nil {
		return err
	}
	n.log.Info("reloaded", "config", cfg.Path, "members", n.reg.Len())
	return nil
}

// restartOnly rejects changes a reload cannot apply.
func restartOnly(old, c *config.Config) error {
	switch {
	case old.StateDir != c.StateDir:
		return fmt.Errorf("reload: state_dir changed; restart exitd to apply")
	case old.Listen.Port != c.Listen.Port:
		return fmt.Errorf("reload: listen.port changed; restart exitd to apply")
	case old.Tunnel.Name != c.Tunnel.Name || old.Tunnel.MTU != c.Tunnel.MTU ||
		old.Tunnel.Prefix4 != c.Tunnel.Prefix4 || old.Tunnel.Prefix6 != c.Tunnel.Prefix6:
		return fmt.Errorf("reload: [tunnel] changed; restart exitd to apply")
	case old.Control.Socket != c.Control.Socket:
		return fmt.Errorf("reload: control.socket changed; restart exitd to apply")
	}
	return nil
}

func natChanged(a, b *config.Config) bool {
	x, y := natConfig(a), natConfig(b)
	return fmt.Sprint(x) != fmt.Sprint(y)
}
