package etcdstore

// Node registration: each exit node of the cluster keeps a record under
// P nodes/<name>, attached to a lease (TTL ≈ 10 s) it keeps alive, and
// refreshes the record's value (its figures, opaque JSON here) every few
// seconds. A node that dies disappears when its lease expires. Two nodes
// may not share a name: registering a name held under another lease fails
// (after waiting out one TTL, so that a node restarting after a crash gets
// its own name back once the old lease expires).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"exitd/members"
)

// NodeTTL is the lease of a node's record: it disappears this long after
// the node stops renewing it.
const NodeTTL = 10 * time.Second

// ErrNameTaken: another live node holds the node name.
var ErrNameTaken = errors.New("node name registered by another live node")

func (p keyspace) nodes() string           { return string(p) + "nodes/" }
func (p keyspace) node(name string) string { return string(p) + "nodes/" + name }

// CheckNodeName validates a node name: 1-64 letters, digits, '.', '_', '-'.
func CheckNodeName(name string) error {
	if members.CheckLabel(name) != nil || strings.Contains(name, "@") {
		return fmt.Errorf("node name %q: want 1-64 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// Registration is a node's live record; Close removes it.
type Registration struct {
	s     *Store
	key   string
	lease clientv3.LeaseID
	stop  context.CancelFunc
	done  chan struct{}
	alive chan struct{} // closed when the keepalive stream ends
}

// Register claims P nodes/<name> under a new lease of ttl (at least 2 s;
// NodeTTL for nodes) with value, waiting up to one ttl for a previous
// holder's lease to expire, and keeps the lease alive until Close. It
// fails with ErrNameTaken when another live node keeps the name.
func (s *Store) Register(ctx context.Context, name string, ttl time.Duration, value []byte) (*Registration, error) {
	if err := CheckNodeName(name); err != nil {
		return nil, fmt.Errorf("etcdstore: %w", err)
	}
	key := s.ks.node(name)
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	ttl = max(ttl, 2*time.Second)
	lease, err := s.cli.Grant(rctx, int64(ttl/time.Second))
	cancel()
	if err != nil {
		return nil, s.unavailable("register node", err)
	}
	deadline := time.Now().Add(ttl + 2*time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		resp, err := s.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(value), clientv3.WithLease(lease.ID))).
			Commit()
		cancel()
		if err != nil {
			s.revoke(lease.ID)
			return nil, s.unavailable("register node", err)
		}
		if resp.Succeeded {
			break
		}
		if time.Now().After(deadline) {
			s.revoke(lease.ID)
			return nil, fmt.Errorf("etcdstore: %s: %w (two nodes with one name: set [cluster] name)", name, ErrNameTaken)
		}
		t := time.NewTimer(500 * time.Millisecond) // the other holder's lease may be expiring
		select {
		case <-ctx.Done():
			t.Stop()
			s.revoke(lease.ID)
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	kctx, stop := context.WithCancel(context.Background())
	ch, err := s.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		stop()
		s.revoke(lease.ID)
		return nil, s.unavailable("register node", err)
	}
	r := &Registration{s: s, key: key, lease: lease.ID, stop: stop, done: make(chan struct{}), alive: make(chan struct{})}
	go func() {
		defer close(r.alive)
		for range ch { // drain the keepalive answers until the stream ends
		}
	}()
	return r, nil
}

// Update replaces the record's value (the node's current figures).
func (r *Registration) Update(ctx context.Context, value []byte) error {
	rctx, cancel := context.WithTimeout(ctx, r.s.opts.RequestTimeout)
	defer cancel()
	if _, err := r.s.cli.Put(rctx, r.key, string(value), clientv3.WithLease(r.lease)); err != nil {
		return r.s.unavailable("update node record", err)
	}
	return nil
}

// Alive reports whether the lease's keepalive stream still runs (false
// once etcd was unreachable for the whole lease).
func (r *Registration) Alive() bool {
	select {
	case <-r.alive:
		return false
	default:
		return true
	}
}

// Close stops the keepalive and revokes the lease: the record goes at once.
func (r *Registration) Close() error {
	r.stop()
	<-r.alive
	r.s.revoke(r.lease)
	return nil
}

func (s *Store) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	s.cli.Revoke(ctx, id) // best effort: the lease expires anyway
}

// NodeRecord is one registered node: its name and the value it published.
type NodeRecord struct {
	Name  string
	Value []byte
}

// Nodes lists the live nodes' records, sorted by name.
func (s *Store) Nodes(ctx context.Context) ([]NodeRecord, error) {
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.ks.nodes(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, s.unavailable("list nodes", err)
	}
	out := make([]NodeRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, NodeRecord{Name: strings.TrimPrefix(string(kv.Key), s.ks.nodes()), Value: kv.Value})
	}
	return out, nil
}
