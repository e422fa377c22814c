package members

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
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
}

// Registry is the durable member list. Its methods are safe for concurrent use.
type Registry struct {
	db   *bbolt.DB
	now  func() time.Time
	rand io.Reader

	mu      sync.RWMutex
	byKey   map[keys.Key]*Member
	byLabel map[string]*Member
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
	r := &Registry{
		db: db, now: opts.Now, rand: opts.Rand,
		byKey: map[keys.Key]*Member{}, byLabel: map[string]*Member{},
		alloc: newAllocator(newPlan(opts.Prefix4, opts.Prefix6), opts.Quarantine),
	}
	if err := r.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("members: load %s: %w", path, err)
	}
	return r, nil
}

func (r *Registry) load() error {
	return r.db.Update(func(tx *bbolt.Tx) error {
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
			r.byKey[m.PublicKey] = m
			r.byLabel[m.Label] = m
			r.alloc.used[m.Index] = true
			delete(r.alloc.freed, m.Index)
			return nil
		})
	})
}

// Close closes the database.
func (r *Registry) Close() error { return r.db.Close() }

// AddRequest describes a new member. PublicKey nil means generate a key pair
// and keep the private key. IPv4, when valid, asks for that address (used by
// imports); the IPv6 address follows from the same slot.
type AddRequest struct {
	Label     string
	PublicKey *keys.Key
	IPv4      netip.Addr
	Weight    int
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
	err := r.db.Update(func(tx *bbolt.Tx) error {
		mb, qb := tx.Bucket(bucketMembers), tx.Bucket(bucketQuarantine)
		for i := range out {
			v, err := json.Marshal(&out[i])
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
		undo()
		return nil, fmt.Errorf("members: add: %w", err)
	}
	for i := range out {
		m := out[i]
		r.byKey[m.PublicKey] = &m
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
	if req.Weight < 0 || req.Weight > 100 {
		return Member{}, fmt.Errorf("members: weight must be 0-100, got %d", req.Weight)
	}
	m := Member{Label: req.Label, Created: now.UTC().Truncate(time.Second), Weight: req.Weight}
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
	if req.IPv4.IsValid() {
		i, ok := r.alloc.plan.indexOf(req.IPv4)
		if !ok {
			return Member{}, fmt.Errorf("%w: %s is not a member address in %s", ErrExhausted, req.IPv4, r.alloc.plan.p4)
		}
		if !r.alloc.claim(i, now) {
			return Member{}, fmt.Errorf("%w: address %s is in use or quarantined", ErrDuplicate, req.IPv4)
		}
		m.Index = i
	} else {
		i, ok := r.alloc.take(now)
		if !ok {
			return Member{}, fmt.Errorf("%w: no free address in %s %s (freed addresses are quarantined)", ErrExhausted, r.alloc.plan.p4, r.alloc.plan.p6)
		}
		m.Index = i
	}
	m.IPv4, m.IPv6 = r.alloc.plan.addrs(m.Index)
	m.ID = m.Index
	return m, nil
}

func slotKey(i uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], i)
	return b[:]
}

// Remove deletes the member named by ref (label or public key) and puts its
// addresses into quarantine.
func (r *Registry) Remove(ref string) (Member, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := r.findLocked(ref)
	if err != nil {
		return Member{}, err
	}
	now := r.now()
	err = r.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketMembers).Delete(m.PublicKey[:]); err != nil {
			return err
		}
		var t [8]byte
		binary.BigEndian.PutUint64(t[:], uint64(now.UnixNano()))
		return tx.Bucket(bucketQuarantine).Put(slotKey(m.Index), t[:])
	})
	if err != nil {
		return Member{}, fmt.Errorf("members: remove %s: %w", m.Label, err)
	}
	delete(r.byKey, m.PublicKey)
	delete(r.byLabel, m.Label)
	r.alloc.release(m.Index, now)
	return *m, nil
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
