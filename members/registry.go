package members

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"exitd/keys"
)

// Bucket layout (bbolt):
//
//	members:    public key (32 bytes) -> Member as JSON
//	quarantine: slot (4 bytes BE)     -> time freed (8 bytes BE unix nanos)
var (
	bucketMembers    = []byte("members")
	bucketQuarantine = []byte("quarantine")
)

// Options configure a Registry.
type Options struct {
	Prefix4, Prefix6 netip.Prefix
	// Quarantine is how long a freed address stays unallocated.
	Quarantine time.Duration
	Now        func() time.Time // default time.Now
	Rand       io.Reader        // key generation; default crypto/rand
	// KeyDir holds the private keys of members whose key pair the node
	// generated (--keep-key), one 0600 file each; default "member-keys"
	// beside the database.
	KeyDir string
}

// Registry is the durable member list. Its methods are safe for concurrent use.
type Registry struct {
	db   *bbolt.DB
	now  func() time.Time
	rand io.Reader
	keys keyStore

	mu      sync.RWMutex
	byKey   map[keys.Key]*Member
	byLabel map[string]*Member
	byIndex map[uint32]*Member
	alloc   *allocator
}

// Open opens (creating if needed) the registry database at path.
func Open(path string, opts Options) (*Registry, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("members: open %s: locked by another process (is exitd already running?)", path)
		}
		return nil, fmt.Errorf("members: open %s: %w", path, err)
	}
	if opts.KeyDir == "" {
		opts.KeyDir = filepath.Join(filepath.Dir(path), "member-keys")
	}
	r := &Registry{
		db: db, now: opts.Now, rand: opts.Rand, keys: keyStore{opts.KeyDir},
		byKey: map[keys.Key]*Member{}, byLabel: map[string]*Member{}, byIndex: map[uint32]*Member{},
		alloc: newAllocator(newPlan(opts.Prefix4, opts.Prefix6), opts.Quarantine),
	}
	migrated, err := r.load()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("members: load %s: %w", path, err)
	}
	if migrated > 0 {
		// The moved keys' old pages are free but still hold the bytes:
		// rewrite the file so no private key stays on disk in it.
		if r.db, err = compact(db, path); err != nil {
			return nil, fmt.Errorf("members: compact %s after moving %d private keys out: %w", path, migrated, err)
		}
	}
	return r, nil
}

// compact rewrites the database at path into a fresh file and reopens it.
func compact(db *bbolt.DB, path string) (*bbolt.DB, error) {
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		db.Close()
		return nil, err
	}
	err = bbolt.Compact(dst, db, 1<<20)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	db.Close()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
}

// load reads the database into memory; migrated counts private keys moved
// out of entries written before the key store.
func (r *Registry) load() (migrated int, err error) {
	err = r.db.Update(func(tx *bbolt.Tx) error {
		mb, err := tx.CreateBucketIfNotExists(bucketMembers)
		if err != nil {
			return err
		}
		qb, err := tx.CreateBucketIfNotExists(bucketQuarantine)
		if err != nil {
			return err
		}
		if err := qb.ForEach(func(k, v []byte) error {
			if len(k) == 4 && len(v) == 8 {
				r.alloc.freed[binary.BigEndian.Uint32(k)] = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			}
			return nil
		}); err != nil {
			return err
		}
		return mb.ForEach(func(k, v []byte) error {
			m := new(Member)
			if err := json.Unmarshal(v, m); err != nil {
				return fmt.Errorf("member %x: %w", k, err)
			}
			m.Weight = normWeight(m.Weight) // entries from before normalisation
			if m.PrivateKey != nil {
				// An entry from before the key store: move the key out of
				// the database.
				if err := r.keys.put(m.PublicKey, *m.PrivateKey); err != nil {
					return err
				}
				v, err := encode(m)
				if err != nil {
					return err
				}
				if err := mb.Put(k, v); err != nil {
					return err
				}
				m.PrivateKey = nil
				migrated++
				if priv, ok, err := r.keys.get(m.PublicKey); err != nil || !ok {
					return fmt.Errorf("key store: moved key unreadable: %v", err)
				} else {
					m.PrivateKey = &priv
				}
			} else if priv, ok, err := r.keys.get(m.PublicKey); err != nil {
				return err
			} else if ok {
				m.PrivateKey = &priv
			}
			r.byKey[m.PublicKey] = m
			r.byIndex[m.Index] = m
			r.byLabel[m.Label] = m
			r.alloc.used[m.Index] = true
			delete(r.alloc.freed, m.Index)
			return nil
		})
	})
	return migrated, err
}

// Close closes the database.
func (r *Registry) Close() error { return r.db.Close() }

// AddRequest describes a new member. PublicKey nil means generate a key pair
// and keep the private key. IPv4 or IPv6, when valid, asks for the slot of
// that address (imports keep members' addresses); the other address follows
// from the same slot. When the address is outside the prefixes, in use or
// quarantined, Add fails unless Fallback asks for a fresh slot instead.
type AddRequest struct {
	Label     string
	PublicKey *keys.Key
	IPv4      netip.Addr
	IPv6      netip.Addr
	Fallback  bool
	Weight    int
	// EgressLimit and IngressLimit are rate caps in bits/s (0 = none).
	EgressLimit, IngressLimit uint64
	// MaxConns is the member's connection quota (0 = the node's default).
	MaxConns int
	Disabled bool
}

// Add registers a member, allocating its addresses, and returns it once the
// change is on disk.
func (r *Registry) Add(req AddRequest) (Member, error) {
	ms, err := r.AddBatch([]AddRequest{req})
	if err != nil {
		return Member{}, err
	}
	return ms[0], nil
}

// AddBatch registers several members in one transaction: all or none.
func (r *Registry) AddBatch(reqs []AddRequest) ([]Member, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]Member, 0, len(reqs))
	var taken []uint32
	cursor := r.alloc.next
	undo := func() {
		for _, i := range taken {
			delete(r.alloc.used, i)
		}
		r.alloc.next = cursor
	}
	seenKey := map[keys.Key]bool{}
	seenLabel := map[string]bool{}
	for _, req := range reqs {
		m, err := r.prepareLocked(req, now)
		if err == nil && (seenKey[m.PublicKey] || seenLabel[m.Label]) {
			err = fmt.Errorf("%w: %q appears twice in the request", ErrDuplicate, m.Label)
		}
		if err != nil {
			undo()
			return nil, err
		}
		seenKey[m.PublicKey], seenLabel[m.Label] = true, true
		taken = append(taken, m.Index)
		out = append(out, m)
	}
	// Kept private keys go to their files first: an entry is never
	// committed without its key.
	var kept []keys.Key
	dropKeys := func() {
		for _, pub := range kept {
			r.keys.remove(pub)
		}
	}
	for i := range out {
		if out[i].PrivateKey != nil {
			if err := r.keys.put(out[i].PublicKey, *out[i].PrivateKey); err != nil {
				dropKeys()
				undo()
				return nil, err
			}
			kept = append(kept, out[i].PublicKey)
		}
	}
	err := r.db.Update(func(tx *bbolt.Tx) error {
		mb, qb := tx.Bucket(bucketMembers), tx.Bucket(bucketQuarantine)
		for i := range out {
			v, err := encode(&out[i])
			if err != nil {
				return err
			}
			if err := mb.Put(out[i].PublicKey[:], v); err != nil {
				return err
			}
			if err := qb.Delete(slotKey(out[i].Index)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		dropKeys()
		undo()
		return nil, fmt.Errorf("members: add: %w", err)
	}
	for i := range out {
		m := out[i]
		r.byKey[m.PublicKey] = &m
		r.byIndex[m.Index] = &m
		r.byLabel[m.Label] = &m
	}
	return out, nil
}

// prepareLocked validates req and allocates its slot (marking it used).
func (r *Registry) prepareLocked(req AddRequest, now time.Time) (Member, error) {
	if err := CheckLabel(req.Label); err != nil {
		return Member{}, err
	}
	if _, ok := r.byLabel[req.Label]; ok {
		return Member{}, fmt.Errorf("%w: label %q is taken", ErrDuplicate, req.Label)
	}
	if err := checkPolicy(req.Weight, req.EgressLimit, req.IngressLimit, req.MaxConns); err != nil {
		return Member{}, err
	}
	m := Member{
		Label: req.Label, Created: now.UTC().Truncate(time.Second), Weight: normWeight(req.Weight),
		EgressLimit: req.EgressLimit, IngressLimit: req.IngressLimit, MaxConns: req.MaxConns, Disabled: req.Disabled,
	}
	if req.PublicKey != nil {
		if req.PublicKey.IsZero() {
			return Member{}, fmt.Errorf("%w: all-zero key", ErrInvalidKey)
		}
		m.PublicKey = *req.PublicKey
	} else {
		priv, err := keys.Generate(r.rand)
		if err != nil {
			return Member{}, err
		}
		m.PrivateKey = &priv
		m.PublicKey = priv.Public()
	}
	if old, ok := r.byKey[m.PublicKey]; ok {
		return Member{}, fmt.Errorf("%w: public key already belongs to %q", ErrDuplicate, old.Label)
	}
	i, err := r.slotLocked(req, now)
	if err != nil {
		return Member{}, err
	}
	m.Index = i
	m.IPv4, m.IPv6 = r.alloc.plan.addrs(m.Index)
	m.ID = m.Index
	m.ReusedAddress = r.alloc.lastReused
	return m, nil
}

// slotLocked allocates the slot for req: the one of a requested address, or
// the next free one.
func (r *Registry) slotLocked(req AddRequest, now time.Time) (uint32, error) {
	var reason error
	for _, a := range []netip.Addr{req.IPv4, req.IPv6} {
		if !a.IsValid() {
			continue
		}
		i, ok := r.alloc.plan.indexOf(a)
		switch {
		case !ok:
			reason = fmt.Errorf("%w: %s is not a member address in %s %s", ErrExhausted, a, r.alloc.plan.p4, r.alloc.plan.p6)
		case !r.alloc.claim(i, now):
			reason = fmt.Errorf("%w: address %s is in use or quarantined", ErrDuplicate, a)
		default:
			return i, nil
		}
	}
	if reason != nil && !req.Fallback {
		return 0, reason
	}
	i, ok := r.alloc.take(now)
	if !ok {
		return 0, fmt.Errorf("%w: no free address in %s %s (freed addresses are quarantined)", ErrExhausted, r.alloc.plan.p4, r.alloc.plan.p6)
	}
	return i, nil
}

func slotKey(i uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], i)
	return b[:]
}

// Remove deletes the member named by ref (label or public key) and puts its
// addresses into quarantine.
func (r *Registry) Remove(ref string) (Member, error) {
	ms, err := r.RemoveBatch([]string{ref})
	if err != nil {
		return Member{}, err
	}
	return ms[0], nil
}

// RemoveBatch deletes several members in one transaction, all or none: an
// unknown or repeated ref removes nothing.
func (r *Registry) RemoveBatch(refs []string) ([]Member, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Member, 0, len(refs))
	seen := make(map[keys.Key]bool, len(refs))
	for _, ref := range refs {
		m, err := r.findLocked(ref)
		if err != nil {
			return nil, err
		}
		if seen[m.PublicKey] {
			return nil, fmt.Errorf("%w: %q appears twice in the request", ErrDuplicate, m.Label)
		}
		seen[m.PublicKey] = true
		out = append(out, *m)
	}
	now := r.now()
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(now.UnixNano()))
	err := r.db.Update(func(tx *bbolt.Tx) error {
		mb, qb := tx.Bucket(bucketMembers), tx.Bucket(bucketQuarantine)
		for _, m := range out {
			if err := mb.Delete(m.PublicKey[:]); err != nil {
				return err
			}
			if err := qb.Put(slotKey(m.Index), t[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("members: remove: %w", err)
	}
	for _, m := range out {
		delete(r.byKey, m.PublicKey)
		delete(r.byIndex, m.Index)
		delete(r.byLabel, m.Label)
		r.alloc.release(m.Index, now)
		r.keys.remove(m.PublicKey) // committed: a leftover file is only garbage, readable by root alone
	}
	return out, nil
}

// Change is a partial update of a member's policy; nil fields stay.
type Change struct {
	Weight                    *int
	EgressLimit, IngressLimit *uint64
	MaxConns                  *int
	Disabled                  *bool
}

// Update applies c to the member named by ref and returns it before and
// after, once the change is on disk. Identity and addresses never change.
func (r *Registry) Update(ref string, c Change) (before, after Member, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.findLocked(ref)
	if err != nil {
		return Member{}, Member{}, err
	}
	before, after = *m, *m
	if c.Weight != nil {
		after.Weight = normWeight(*c.Weight)
	}
	if c.EgressLimit != nil {
		after.EgressLimit = *c.EgressLimit
	}
	if c.IngressLimit != nil {
		after.IngressLimit = *c.IngressLimit
	}
	if c.MaxConns != nil {
		after.MaxConns = *c.MaxConns
	}
	if c.Disabled != nil {
		after.Disabled = *c.Disabled
	}
	if err := checkPolicy(after.Weight, after.EgressLimit, after.IngressLimit, after.MaxConns); err != nil {
		return Member{}, Member{}, err
	}
	v, err := encode(&after)
	if err != nil {
		return Member{}, Member{}, fmt.Errorf("members: update %s: %w", m.Label, err)
	}
	if err := r.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMembers).Put(after.PublicKey[:], v)
	}); err != nil {
		return Member{}, Member{}, fmt.Errorf("members: update %s: %w", m.Label, err)
	}
	*m = after
	return before, after, nil
}

// Get returns the member named by ref (label or public key).
func (r *Registry) Get(ref string) (Member, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, err := r.findLocked(ref)
	if err != nil {
		return Member{}, err
	}
	return *m, nil
}

func (r *Registry) findLocked(ref string) (*Member, error) {
	if m, ok := r.byLabel[ref]; ok {
		return m, nil
	}
	if k, err := keys.Parse(ref); err == nil {
		if m, ok := r.byKey[k]; ok {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: %q (give a label or a public key)", ErrNotFound, ref)
}

// List returns all members sorted by slot (i.e. by address).
func (r *Registry) List() []Member {
	r.mu.RLock()
	out := make([]Member, 0, len(r.byKey))
	for _, m := range r.byKey {
		out = append(out, *m)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Len is the number of members.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byKey)
}

// ByAddr returns the enabled or disabled member whose inner IPv4 or IPv6
// address is a (the SOCKS proxy and the resolver identify members by the
// tunnel source address WireGuard authenticated).
func (r *Registry) ByAddr(a netip.Addr) (Member, bool) {
	i, ok := r.alloc.plan.indexOf(a.Unmap())
	if !ok {
		return Member{}, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if m, ok := r.byIndex[i]; ok {
		return *m, true
	}
	return Member{}, false
}
