package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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
				n.log.Error("nftables table was deleted or edited and could not be restored", "err", err)
				return
			}
			n.log.Warn("nftables table was deleted or edited by someone else; restored it")
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
	wg.Add(3)
	go func() {
		defer wg.Done()
		n.routineCut(ctx) // conntrack.go: revoked members' flows
	}()
	go func() {
		defer wg.Done()
		n.routineCluster(ctx) // cluster.go: this node's record in the store
	}()
	go func() {
		defer wg.Done()
		n.routineFollow(ctx) // cluster.go: other nodes' member changes
	}()
}

func (n *Node) statusLine() string {
	s := n.summary()
	return fmt.Sprintf("%d/%d members connected, rx %d B tx %d B", s.connected, s.total, s.rx, s.tx)
}

// Reload re-reads the config and the registry and applies what can change
// at run time (filter, NAT, scheduler, peers) without dropping sessions.
// It is all or nothing: everything is validated first, then applied step
// by step; if a step fails, the steps already applied are undone and the
// old config keeps running.
func (n *Node) Reload() error {
	n.notify.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer n.notify.Notify("READY=1\nSTATUS=" + n.statusLine())
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.config()
	cfg := old
	if n.loadCfg != nil {
		c, err := n.loadCfg()
		if err != nil {
			return err
		}
		if err := restartOnly(old, c); err != nil {
			return err
		}
		cfg = c
	}
	if err := n.ruleset(cfg).Validate(); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if err := n.schedConfig(cfg).Validate(); err != nil {
		return fmt.Errorf("reload: scheduler: %w", err)
	}
	if err := applySteps(n.reloadSteps(old, cfg)); err != nil {
		n.log.Error("reload failed and was rolled back; the old configuration keeps running", "err", err)
		return err
	}
	if n.dns != nil {
		if err := n.dns.ReloadBlocklist(); err != nil {
			n.log.Error("dns blocklist not reloaded; the previous list stays in force", "err", err)
		}
	}
	n.log.Info("reloaded", "config", cfg.Path, "members", n.reg.Len())
	return nil
}

// step is one change of a reload and how to take it back.
type step struct {
	name        string
	apply, undo func() error
}

// reloadSteps are the changes from old to cfg, in order.
func (n *Node) reloadSteps(old, cfg *config.Config) []step {
	steps := []step{{"scheduler",
		func() error { return n.plane.SetSchedConfig(n.schedConfig(cfg)) },
		func() error { return n.plane.SetSchedConfig(n.schedConfig(old)) }}}
	// The ruleset is rebuilt from the new config and the WAN's current
	// prefixes, and compared with the one applied last: a WAN address
	// change alone re-applies it too.
	if prev, next := n.natApplied, n.ruleset(cfg); !reflect.DeepEqual(prev, next) {
		steps = append(steps, step{"nftables",
			func() error {
				if err := n.nat.Apply(next); err != nil {
					return err
				}
				n.setNATApplied(next)
				return nil
			},
			func() error {
				if err := n.nat.Apply(prev); err != nil {
					return err
				}
				n.setNATApplied(prev)
				return nil
			}})
	}
	steps = append(steps,
		step{"config",
			func() error { n.cfg.Store(cfg); return nil },
			func() error { n.cfg.Store(old); return nil }},
		step{"peers", func() error { return n.plane.Sync(n.reg.List()) }, nil},
	)
	return steps
}

// applySteps applies steps in order; when one fails it undoes the applied
// ones in reverse and returns the failure (and any undo failures).
func applySteps(steps []step) error {
	for i, s := range steps {
		err := s.apply()
		if err == nil {
			continue
		}
		errs := []error{fmt.Errorf("reload: %s: %w", s.name, err)}
		for j := i - 1; j >= 0; j-- {
			if u := steps[j].undo; u != nil {
				if uerr := u(); uerr != nil {
					errs = append(errs, fmt.Errorf("reload: undo %s: %w", steps[j].name, uerr))
				}
			}
		}
		return errors.Join(errs...)
	}
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
	case !reflect.DeepEqual(old.DNS, c.DNS):
		return fmt.Errorf("reload: [dns] changed; restart exitd to apply (SIGHUP re-reads the blocklist file)")
	case !reflect.DeepEqual(old.SOCKS, c.SOCKS):
		return fmt.Errorf("reload: [socks] changed; restart exitd to apply")
	case !reflect.DeepEqual(old.Cluster, c.Cluster):
		return fmt.Errorf("reload: [cluster] changed; restart exitd to apply")
	case !reflect.DeepEqual(old.PortForward, c.PortForward):
		return fmt.Errorf("reload: [portforward] changed; restart exitd to apply")
	}
	return nil
}
