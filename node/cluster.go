package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"exitd/config"
	"exitd/control"
	"exitd/keys"
	"exitd/members"
	"exitd/members/etcdstore"
	"exitd/metrics"
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
// etcd store (returned too: the node registers itself there).
func openRegistry(c *config.Config, opts members.Options, log func(msg string, args ...any)) (*members.Registry, *etcdstore.Store, error) {
	if !c.Cluster.On() {
		reg, err := members.Open(filepath.Join(c.StateDir, "members.db"), opts)
		return reg, nil, err
	}
	cl := c.Cluster
	st, err := etcdstore.Open(etcdstore.Options{
		Endpoints: cl.Endpoints, CertFile: cl.Cert, KeyFile: cl.Key, CAFile: cl.CA, Prefix: cl.Prefix,
		CachePath: filepath.Join(c.StateDir, memberCacheFile), MaxTxnOps: cl.MaxTxnOps,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("[cluster]: %w", err)
	}
	opts.KeyDir = filepath.Join(c.StateDir, "member-keys")
	reg, err := members.OpenStore(st, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("[cluster]: %w", err)
	}
	log("member registry on etcd", "endpoints", strings.Join(cl.Endpoints, ","), "prefix", cl.Prefix, "members", reg.Len())
	return reg, st, nil
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
	var added, reused, removed, cut []members.Member
	quotas := false
	for _, e := range evs {
		switch {
		case e.Added():
			if !e.After.Disabled {
				added = append(added, e.After)
			}
			quotas = quotas || e.After.MaxConns != 0
			if e.After.ReusedAddress {
				reused = append(reused, e.After)
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
	// A reused address starts with no tracked flows: flushed now, before
	// the member is in the device, as AddMembers does (never later, when
	// its own flows exist).
	n.cut(prefixesOf(reused))
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

// clusterEvery is how often a node refreshes its record in the store.
const clusterEvery = 5 * time.Second

// clusterState is this node's registration and the store's health as the
// refresh loop last saw it (read by status and metrics without asking
// etcd).
type clusterState struct {
	name  string
	mu    sync.Mutex
	reg   *etcdstore.Registration // nil until registered
	up    atomic.Bool             // the last refresh reached etcd
	nodes atomic.Int64            // live nodes at the last refresh
}

// nodeName is [cluster] name, or the host name.
func nodeName(c *config.Config) (string, error) {
	if c.Cluster.Name != "" {
		return c.Cluster.Name, etcdstore.CheckNodeName(c.Cluster.Name)
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("[cluster] name: %w (set it)", err)
	}
	h, _, _ = strings.Cut(h, ".")
	if err := etcdstore.CheckNodeName(h); err != nil {
		return "", fmt.Errorf("[cluster] name: the host name does not do: %w", err)
	}
	return h, nil
}

// startCluster registers this node under a lease. Another live node with
// the same name stops the start; an unreachable etcd does not (the node
// serves its cached members and registers when etcd is back).
func (n *Node) startCluster() (func(), error) {
	if n.store == nil {
		return nil, nil
	}
	name, err := nodeName(n.config())
	if err != nil {
		return nil, err
	}
	n.cluster.name = name
	if err := n.register(context.Background()); err != nil {
		if errors.Is(err, etcdstore.ErrNameTaken) {
			return nil, err
		}
		n.log.Warn("cluster: cannot register this node yet; serving the cached members, retrying", "name", name, "err", err)
	}
	return func() {
		n.cluster.mu.Lock()
		defer n.cluster.mu.Unlock()
		if r := n.cluster.reg; r != nil {
			r.Close()
			n.cluster.reg = nil
		}
	}, nil
}

// register claims the node's name with its current figures.
func (n *Node) register(ctx context.Context) error {
	r, err := n.store.Register(ctx, n.cluster.name, etcdstore.NodeTTL, n.clusterRecord())
	if err != nil {
		n.cluster.up.Store(!errors.Is(err, members.ErrStoreUnavailable))
		return err
	}
	n.cluster.mu.Lock()
	n.cluster.reg = r
	n.cluster.mu.Unlock()
	n.cluster.up.Store(true)
	n.log.Info("cluster: registered this node", "name", n.cluster.name)
	return nil
}

// routineCluster refreshes the node's record every clusterEvery (and
// registers again when the lease was lost) until ctx ends.
func (n *Node) routineCluster(ctx context.Context) {
	if n.store == nil || n.cluster.name == "" {
		return
	}
	t := time.NewTicker(clusterEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.cluster.mu.Lock()
		r := n.cluster.reg
		n.cluster.mu.Unlock()
		var err error
		switch {
		case r == nil || !r.Alive():
			if r != nil {
				r.Close()
				n.cluster.mu.Lock()
				n.cluster.reg = nil
				n.cluster.mu.Unlock()
			}
			err = n.register(ctx)
		default:
			err = r.Update(ctx, n.clusterRecord())
		}
		if err == nil {
			var ns []etcdstore.NodeRecord
			ns, err = n.store.Nodes(ctx)
			n.cluster.nodes.Store(int64(len(ns)))
		}
		if up := err == nil; n.cluster.up.Swap(up) != up {
			if up {
				n.log.Info("cluster: etcd reachable again")
			} else {
				n.log.Warn("cluster: etcd unreachable; members keep working, changes are refused", "err", err)
			}
		}
	}
}

// clusterRecord is this node's published record (control.ClusterNode).
func (n *Node) clusterRecord() []byte {
	cfg := n.config()
	cn := control.ClusterNode{Name: n.cluster.name, Endpoint: cfg.PublicEndpoint, Version: n.version, Updated: n.now().UTC()}
	s := n.summary()
	cn.MembersConnected, cn.MembersTotal, cn.TableOK = s.connected, s.total, s.natPresent
	if n.plane != nil {
		sample := n.plane.BackgroundSample()
		for k := range sample.Cur {
			in, out := sample.Rates(k)
			cn.RateIn += in
			cn.RateOut += out
		}
		if rate, _ := egressRate(cfg, n.linkSpeed); rate > cn.RateOut {
			cn.FreeRate = rate - cn.RateOut
		}
	}
	cn.KernelOK = true
	if n.kernel != nil {
		if r := n.kernel.Latest(); r != nil && len(r.CriticalFailures()) > 0 {
			cn.KernelOK = false
		}
	}
	b, _ := json.Marshal(cn)
	return b
}

// clusterSource is the cluster view for the metrics (no etcd request).
type clusterSource struct{ n *Node }

func (s clusterSource) ClusterStats() (metrics.ClusterStats, bool) {
	n := s.n
	if n.store == nil {
		return metrics.ClusterStats{}, false
	}
	n.cluster.mu.Lock()
	registered := n.cluster.reg != nil && n.cluster.reg.Alive()
	n.cluster.mu.Unlock()
	return metrics.ClusterStats{StoreUp: n.cluster.up.Load(), Registered: registered, Nodes: int(n.cluster.nodes.Load())}, true
}

// Cluster is GET /v1/cluster: the live nodes as they published themselves.
func (b backend) Cluster(ctx context.Context) (control.Cluster, error) {
	n := b.n
	cfg := n.config()
	if n.store == nil {
		return control.Cluster{}, fmt.Errorf("%w: this node is not in a cluster (no [cluster] endpoints)", control.ErrConflict)
	}
	out := control.Cluster{Self: n.cluster.name, Prefix: cfg.Cluster.Prefix, Nodes: []control.ClusterNode{}}
	recs, err := n.store.Nodes(ctx)
	if err != nil {
		out.Error = err.Error()
		return out, nil
	}
	out.StoreUp = true
	for _, r := range recs {
		var cn control.ClusterNode
		if json.Unmarshal(r.Value, &cn) != nil {
			cn = control.ClusterNode{}
		}
		cn.Name = r.Name
		out.Nodes = append(out.Nodes, cn)
	}
	return out, nil
}
