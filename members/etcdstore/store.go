// Package etcdstore is the member store a cluster of exitd nodes shares:
// a members.Store and members.Watcher on etcd (client v3; servers 3.4 and
// later). Cluster-wide uniqueness of addresses, labels and public keys and
// the quarantine are enforced with etcd transactions (see layout.go); each
// node follows the others' changes with a watch and keeps a local cache
// so it can start and serve while etcd is unreachable.
//
// It imports exitd/members and exitd/keys, the etcd client and bbolt (the
// cache); nothing else of exitd.
package etcdstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"exitd/keys"
	"exitd/members"
)

// Options configure a Store.
type Options struct {
	// Endpoints are the etcd client URLs (https://host:2379) or host:port.
	Endpoints []string
	// CertFile and KeyFile are this node's client certificate and key;
	// CAFile verifies the servers. Any of them turns TLS on.
	CertFile, KeyFile, CAFile string
	// Prefix is the key prefix of this cluster's member store, e.g.
	// "/exitd/eu-1". Everything under it must be exitd's.
	Prefix string
	// DialTimeout bounds the first contact (default 5 s): an unreachable
	// etcd fails the open within it.
	DialTimeout time.Duration
	// RequestTimeout bounds every later request (default 5 s): a write
	// while etcd is unreachable fails after it.
	RequestTimeout time.Duration
	// CachePath is the local cache file ("" = none; then a node cannot
	// start while etcd is unreachable).
	CachePath string
	// MaxTxnOps and MaxRequestBytes are the server's --max-txn-ops and
	// --max-request-bytes (defaults 128 and 1.5 MiB, etcd's): large
	// batches are split to fit.
	MaxTxnOps, MaxRequestBytes int
	// Logger is nil-safe; the client's own records go to it at debug level.
	Logger *slog.Logger
}

// Store is the etcd member store. Its methods are safe for concurrent use.
type Store struct {
	opts  Options
	ks    keyspace
	cli   *clientv3.Client
	tls   *tls.Config
	log   *slog.Logger
	cache *cache // nil: none

	mu     sync.Mutex
	loaded bool // guarded by mu: a Load has succeeded (from etcd or the cache)
}

var (
	_ members.Store   = (*Store)(nil)
	_ members.Watcher = (*Store)(nil)
)

// ErrLayout: the store was set up with other member prefixes.
var ErrLayout = errors.New("member prefixes differ from the cluster's")

// Open checks the options, loads the TLS files and the cache and sets up
// the client; it does not contact etcd (Load does: members.OpenStore).
func Open(opts Options) (*Store, error) {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.MaxTxnOps <= 0 {
		opts.MaxTxnOps = 128
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 3 << 19 // 1.5 MiB
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := strings.TrimRight(opts.Prefix, "/")
	if prefix == "" || strings.ContainsAny(prefix, " \t\n") {
		return nil, fmt.Errorf("etcdstore: key prefix %q: want a path such as /exitd/cluster-1", opts.Prefix)
	}
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no etcd endpoints")
	}
	tc, err := tlsConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %w", err)
	}
	for _, ep := range opts.Endpoints {
		if _, err := hostPort(ep); err != nil {
			return nil, fmt.Errorf("etcdstore: %w", err)
		}
		if tc != nil && strings.HasPrefix(ep, "http://") {
			return nil, fmt.Errorf("etcdstore: endpoint %q is http:// but TLS files are given: use https://", ep)
		}
		if tc == nil && strings.HasPrefix(ep, "https://") {
			tc = &tls.Config{MinVersion: tls.VersionTLS12} // the system's CAs
		}
	}
	s := &Store{opts: opts, ks: keyspace(prefix + "/"), tls: tc, log: log}
	if opts.CachePath != "" {
		if s.cache, err = openCache(opts.CachePath); err != nil {
			return nil, fmt.Errorf("etcdstore: %w", err)
		}
	}
	s.cli, err = clientv3.New(clientv3.Config{
		Endpoints:            opts.Endpoints,
		DialTimeout:          opts.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  tc,
		Logger:               newZap(log),
		MaxCallSendMsgSize:   opts.MaxRequestBytes + 1<<16,
		MaxCallRecvMsgSize:   1 << 30,
		// gRPC's default backoff grows to 2 minutes: a node would take
		// that long to notice etcd is back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: opts.DialTimeout,
		})},
	})
	if err != nil {
		if s.cache != nil {
			s.cache.close()
		}
		return nil, fmt.Errorf("etcdstore: client: %w", err)
	}
	return s, nil
}

// Close closes the client and the cache.
func (s *Store) Close() error {
	err := s.cli.Close()
	if s.cache != nil {
		if cerr := s.cache.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Load reads every slot record at one revision, after checking that all
// under the prefix is exitd's and the layout is the cluster's; into an
// empty prefix it writes the meta record. The first Load of a Store falls
// back to the cache when etcd is unreachable.
func (s *Store) Load(ctx context.Context, layout string) (members.Snapshot, error) {
	snap, err := s.load(ctx, layout)
	s.mu.Lock()
	first := !s.loaded
	s.loaded = s.loaded || err == nil
	s.mu.Unlock()
	if err == nil {
		if s.cache != nil {
			if cerr := s.cache.replace(string(s.ks), layout, snap); cerr != nil {
				s.log.Warn("member cache not updated", "err", cerr)
			}
		}
		return snap, nil
	}
	if ctx.Err() != nil {
		return members.Snapshot{}, ctx.Err()
	}
	if !isUnavailable(err) {
		return members.Snapshot{}, err
	}
	if s.tls != nil {
		if perr := probeTLS(ctx, s.opts.Endpoints, s.tls, s.opts.DialTimeout); perr != nil {
			return members.Snapshot{}, fmt.Errorf("etcdstore: %w", perr)
		}
	}
	if first && s.cache != nil {
		csnap, ok, cerr := s.cache.load(string(s.ks), layout)
		if cerr != nil {
			s.log.Warn("member cache unreadable", "path", s.opts.CachePath, "err", cerr)
		}
		if ok && cerr == nil {
			s.mu.Lock()
			s.loaded = true
			s.mu.Unlock()
			s.log.Warn("etcd unreachable: serving the cached members; changes are refused until it is back",
				"endpoints", s.opts.Endpoints, "cache", s.opts.CachePath, "revision", csnap.Rev, "err", err)
			return csnap, nil
		}
	}
	return members.Snapshot{}, s.unavailable("load", err)
}

// pageSize bounds one range request of a Load.
const pageSize = 2000

// load reads the prefix from etcd.
func (s *Store) load(ctx context.Context, layout string) (members.Snapshot, error) {
	for attempt := 0; ; attempt++ {
		c, err := s.read(ctx, attempt == 0)
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue // compacted between pages: read again at the new revision
		}
		if err != nil {
			return members.Snapshot{}, err
		}
		if c.empty() {
			created, rev, err := s.create(ctx, layout)
			if err != nil {
				return members.Snapshot{}, err
			}
			if !created {
				continue // another node set the prefix up meanwhile
			}
			return members.Snapshot{Rev: rev}, nil
		}
		if err := c.check(string(s.ks), layout); err != nil {
			return members.Snapshot{}, err
		}
		return c.snap, nil
	}
}

// read pages through the prefix at one revision.
func (s *Store) read(ctx context.Context, first bool) (*content, error) {
	c := newContent(s.ks)
	key, end := string(s.ks), clientv3.GetPrefixRangeEnd(string(s.ks))
	for {
		timeout := s.opts.RequestTimeout
		if first {
			timeout = s.opts.DialTimeout
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if c.snap.Rev > 0 {
			opts = append(opts, clientv3.WithRev(c.snap.Rev))
		}
		resp, err := s.cli.Get(rctx, key, opts...)
		cancel()
		if err != nil {
			return nil, err
		}
		if c.snap.Rev == 0 {
			c.snap.Rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			c.add(string(kv.Key), kv.Value, kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return c, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		first = false
	}
}

// create writes the meta record into an empty prefix; created is false
// when another node was first.
func (s *Store) create(ctx context.Context, layout string) (created bool, rev int64, err error) {
	v, err := encodeMeta(layout)
	if err != nil {
		return false, 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	end := clientv3.GetPrefixRangeEnd(string(s.ks))
	// Empty means no key in the prefix: a key's CreateRevision is > 0, so
	// "every key's CreateRevision < 1" holds only for an empty range.
	resp, err := s.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(string(s.ks)), "<", 1).WithRange(end)).
		Then(clientv3.OpPut(s.ks.meta(), string(v))).
		Commit()
	if err != nil {
		return false, 0, err
	}
	if resp.Succeeded {
		s.log.Info("set up the member store", "prefix", string(s.ks), "layout", layout)
	}
	return resp.Succeeded, resp.Header.Revision, nil
}

// content is what a read found under the prefix.
type content struct {
	ks      keyspace
	snap    members.Snapshot
	meta    []byte
	labels  map[string]uint32
	keys    map[keys.Key]uint32
	foreign []string
	bad     []string
	n       int
}

func newContent(ks keyspace) *content {
	return &content{ks: ks, labels: map[string]uint32{}, keys: map[keys.Key]uint32{}}
}

func (c *content) empty() bool { return c.n == 0 }

func (c *content) add(k string, v []byte, rev int64) {
	c.n++
	kind, slot, label, pub := c.ks.parseKey(k)
	switch kind {
	case kindMeta:
		c.meta = v
	case kindSlot:
		rec, err := decodeSlot(slot, rev, v)
		if err != nil {
			c.bad = append(c.bad, fmt.Sprintf("%s: %v", k, err))
			return
		}
		c.snap.Records = append(c.snap.Records, rec)
	case kindLabel, kindKey:
		n, ok := parseSlotText(v)
		if !ok {
			c.bad = append(c.bad, fmt.Sprintf("%s: value %q is not a slot", k, v))
			return
		}
		if kind == kindLabel {
			c.labels[label] = n
		} else {
			c.keys[pub] = n
		}
	case kindNode:
	default:
		c.foreign = append(c.foreign, k)
	}
}

// check validates the content: exitd's keys only, this format, this
// layout, and claims that match the members.
func (c *content) check(prefix, layout string) error {
	foreign := func(format string, a ...any) error {
		return fmt.Errorf("etcdstore: prefix %q: %w: %s; nothing was written (choose another prefix, or clear it)",
			prefix, ErrForeignData, fmt.Sprintf(format, a...))
	}
	if len(c.foreign) > 0 {
		return foreign("%d key(s) exitd does not use, e.g. %q", len(c.foreign), c.foreign[0])
	}
	if c.meta == nil {
		return foreign("no %q record", prefix+"meta")
	}
	var m meta
	if err := json.Unmarshal(c.meta, &m); err != nil || m.Format != formatName {
		return foreign("%q is not exitd's", prefix+"meta")
	}
	if m.Version != formatVersion {
		return fmt.Errorf("etcdstore: prefix %q: store format version %d, this exitd reads version %d", prefix, m.Version, formatVersion)
	}
	if m.Layout != layout {
		return fmt.Errorf("etcdstore: prefix %q: %w: the cluster uses %s, this node %s (every node needs the same [tunnel] prefixes)",
			prefix, ErrLayout, m.Layout, layout)
	}
	if len(c.bad) > 0 {
		return foreign("%d unreadable record(s), e.g. %s", len(c.bad), c.bad[0])
	}
	held := 0
	for _, rec := range c.snap.Records {
		m := rec.Member
		if m == nil {
			continue
		}
		held++
		if c.labels[m.Label] != rec.Slot || c.keys[m.PublicKey] != rec.Slot {
			return foreign("member %q in slot %d lacks its label or key record", m.Label, rec.Slot)
		}
	}
	if len(c.labels) != held || len(c.keys) != held {
		return foreign("%d label and %d key records for %d members", len(c.labels), len(c.keys), held)
	}
	return nil
}
