package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"exitd/config"
	"exitd/keys"
	"exitd/members"
	"exitd/members/etcdstore"
)

// Clusters (docs/members.md, "The store"): with [cluster] endpoints the
// member registry lives on etcd, shared by every exit node of the cluster;
// each node follows the others' changes into its own device, scheduler,
// conntrack and port forwards (routineFollow). All nodes share one
// WireGuard key file ([cluster] wireguard_key, never stored in etcd), so
// one client config works on every node. When etcd is unreachable a node
// keeps serving the members of its local cache and refuses changes
// (ErrStoreUnavailable → the API's "unavailable").

// memberCacheFile (in state_dir) is the cluster registry's local cache.
const memberCacheFile = "members-cache.db"

// openRegistry opens the registry: bbolt in state_dir, or the cluster's
// etcd store.
func openRegistry(c *config.Config, opts members.Options, log func(msg string, args ...any)) (*members.Registry, error) {
	if !c.Cluster.On() {
		return members.Open(filepath.Join(c.StateDir, "members.db"), opts)
	}
	cl := c.Cluster
	st, err := etcdstore.Open(etcdstore.Options{
		Endpoints: cl.Endpoints, CertFile: cl.Cert, KeyFile: cl.Key, CAFile: cl.CA, Prefix: cl.Prefix,
		CachePath: filepath.Join(c.StateDir, memberCacheFile),
	})
	if err != nil {
		return nil, fmt.Errorf("[cluster]: %w", err)
	}
	opts.KeyDir = filepath.Join(c.StateDir, "member-keys")
	reg, err := members.OpenStore(st, opts)
	if err != nil {
		return nil, fmt.Errorf("[cluster]: %w", err)
	}
	log("member registry on etcd", "endpoints", strings.Join(cl.Endpoints, ","), "prefix", cl.Prefix, "members", reg.Len())
	return reg, nil
}

// nodeKey is the node's WireGuard private key: the cluster's shared file
// when [cluster] wireguard_key names one (it must exist: a generated key
// would differ on every node), else state_dir/private.key, generated once.
func nodeKey(c *config.Config, loadOrCreate func(path string) (keys.Key, bool, error)) (keys.Key, bool, error) {
	if p := c.Cluster.WireGuardKey; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return keys.Key{}, false, fmt.Errorf("cluster.wireguard_key: %w (provision the cluster's key file on every node)", err)
		}
		k, err := keys.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			return keys.Key{}, false, fmt.Errorf("cluster.wireguard_key %s: %w", p, err)
		}
		return k, false, nil
	}
	return loadOrCreate(filepath.Join(c.StateDir, "private.key"))
}

// routineFollow applies other nodes' member changes to this node until
// ctx ends (a private registry has none: Follow just waits).
func (n *Node) routineFollow(ctx context.Context) {
	if err := n.reg.Follow(ctx, n.applyRemote); err != nil && ctx.Err() == nil {
		n.log.Error("cluster: following the member store stopped; restart exitd to resume", "err", err)
	}
}

// applyRemote applies a batch of changes other nodes made to the shared
// registry: adds go into the device, removals leave it with their flows
// cut and port forwards dropped, updates change weight, caps and the
// enabled state; a change of a member's own connection quota re-applies
// the ruleset.
func (n *Node) applyRemote(evs []members.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var added, removed, cut []members.Member
	quotas := false
	for _, e := range evs {
		switch {
		case e.Added():
			if !e.After.Disabled {
				added = append(added, e.After)
			}
			quotas = quotas || e.After.MaxConns != 0
			if e.After.ReusedAddress {
				cut = append(cut, e.After)
			}
		case e.Removed():
			removed = append(removed, e.Before)
			quotas = quotas || e.Before.MaxConns != 0
		default:
			if err := n.plane.Update(e.Before, e.After); err != nil {
				n.log.Error("cluster: apply a member update; restart reconciles", "label", e.After.Label, "err", err)
			}
			if e.After.Disabled && !e.Before.Disabled {
				cut = append(cut, e.After)
				n.forgetForwards(e.After.PublicKey.String())
			}
			quotas = quotas || e.Before.MaxConns != e.After.MaxConns
		}
	}
	if len(added) > 0 {
		if err := n.plane.Add(added); err != nil {
			n.log.Error("cluster: add members to the device; restart reconciles", "count", len(added), "err", err)
		}
	}
	if len(removed) > 0 {
		if err := n.plane.Remove(removed); err != nil {
			n.log.Error("cluster: remove members from the device; restart reconciles", "count", len(removed), "err", err)
		}
		for _, m := range removed {
			n.forgetForwards(m.PublicKey.String())
		}
		cut = append(cut, removed...)
	}
	if len(cut) > 0 {
		n.cutMembers(cut)
	}
	if quotas {
		if err := n.applyRuleset(); err != nil {
			n.log.Error("cluster: re-apply the ruleset for members' own quotas; the next reload retries", "err", err)
		}
	}
	n.log.Info("cluster: applied other nodes' member changes", "added", len(added), "removed", len(removed), "changes", len(evs))
}
