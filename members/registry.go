package members

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"exitd/keys"
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
	// beside the database (Open). Required with OpenStore: a shared store
	// never holds private keys.
	KeyDir string
}

// maxAttempts bounds how often an add retries after losing slots to other
// registries of a shared store (each retry knows at least one more taken
// slot). A node whose view lags a burst can lose a slot to every add the
// others make meanwhile: 32 ran out once in the e2e test's 100 concurrent
// adds over three nodes (TestClusterConcurrentAdds).
const maxAttempts = 256

// Registry is the durable member list. Its methods are safe for concurrent
// use.
//
// Locking: wmu serializes every change of the registry's state, its own
// writes and the changes of others that Follow applies, and is held across
// the store calls; readers never take it, so a slow or unreachable store
// delays writes, never reads. mu guards the index for readers; it is
// taken for writing only with wmu held.
type Registry struct {
	store   Store
	watcher Watcher // nil: nobody else writes the store
	layout  string
	plan    plan
	now     func() time.Time
	rand    io.Reader
	keys    keyStore

	ctx       context.Context // ends at Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	following atomic.Bool

	wmu   sync.Mutex
	alloc *allocator       // guarded by wmu
	revs  map[uint32]int64 // guarded by wmu: per slot, the revision of the state the index holds
	rev   int64            // guarded by wmu: others' changes are applied up to this revision

	mu      sync.RWMutex
	byKey   map[keys.Key]*Member
	byLabel map[string]*Member
	byIndex map[uint32]*Member
}

// Open opens (creating if needed) the embedded registry database at path.
func Open(path string, opts Options) (*Registry, error) {
	st, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	if opts.KeyDir == "" {
		opts.KeyDir = filepath.Join(filepath.Dir(path), "member-keys")
	}
	r := newRegistry(st, opts)
	fail := func(err error) (*Registry, error) {
		r.cancel()
		st.Close()
		return nil, err
	}
	snap, err := st.Load(r.ctx, r.layout)
	if err != nil {
		return fail(fmt.Errorf("members: load %s: %w", path, err))
	}
	// Entries from before the key store hold their private key: move it
	// to its file first, then out of the database.
	var legacy []*Member
	for _, rec := range snap.Records {
		if m := rec.Member; m != nil && m.PrivateKey != nil {
			if err := r.keys.put(m.PublicKey, *m.PrivateKey); err != nil {
				return fail(fmt.Errorf("members: load %s: %w", path, err))
			}
			legacy = append(legacy, m)
		}
	}
	if len(legacy) > 0 {
		if err := st.scrub(legacy); err != nil {
			return fail(fmt.Errorf("members: compact %s after moving %d private keys out: %w", path, len(legacy), err))
		}
	}
	if err := r.load(snap); err != nil {
		return fail(fmt.Errorf("members: load %s: %w", path, err))
	}
	return r, nil
}

// OpenStore opens a registry over st, which it owns from then on (Close
// closes it, and so does a failed OpenStore). A store that is a Watcher is
// shared with other registries: Follow keeps this one in step with them.
func OpenStore(st Store, opts Options) (*Registry, error) {
	if opts.KeyDir == "" {
		st.Close()
		return nil, errors.New("members: open: Options.KeyDir is required with a store")
	}
	r := newRegistry(st, opts)
	snap, err := st.Load(r.ctx, r.layout)
	if err == nil {
		err = r.load(snap)
	}
	if err != nil {
		r.cancel()
		st.Close()
		return nil, fmt.Errorf("members: load: %w", err)
	}
	return r, nil
}

func newRegistry(st Store, opts Options) *Registry {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := newPlan(opts.Prefix4, opts.Prefix6)
	r := &Registry{
		store: st, layout: p.layout(), plan: p, now: opts.Now, rand: opts.Rand, keys: keyStore{opts.KeyDir},
		alloc: newAllocator(p, opts.Quarantine), revs: map[uint32]int64{},
		byKey: map[keys.Key]*Member{}, byLabel: map[string]*Member{}, byIndex: map[uint32]*Member{},
	}
	r.watcher, _ = st.(Watcher)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// load fills the index from a snapshot.
func (r *Registry) load(snap Snapshot) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range snap.Records {
		if m := rec.Member; m != nil {
			if err := CheckLabel(m.Label); err != nil {
				return fmt.Errorf("member in slot %d: %w", rec.Slot, err)
			}
			if _, ok := r.byKey[m.PublicKey]; ok {
				return fmt.Errorf("member in slot %d: public key %s stored twice", rec.Slot, m.PublicKey)
			}
			if _, ok := r.byLabel[m.Label]; ok {
				return fmt.Errorf("member in slot %d: label %q stored twice", rec.Slot, m.Label)
			}
			if _, _, err := r.keys.get(m.PublicKey); err != nil {
				return err
			}
		}
		r.setLocked(rec, nil)
	}
	r.rev = snap.Rev
	return nil
}

// Close stops Follow and closes the store. It is idempotent.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.wmu.Lock()
		defer r.wmu.Unlock()
		r.closeErr = r.store.Close()
	})
	return r.closeErr
}

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

// AddBatch registers several members at once: all or none. On a shared
// store a large batch takes several store transactions, and a failing one
// undoes the earlier ones (docs/members.md).
func (r *Registry) AddBatch(reqs []AddRequest) ([]Member, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	now := r.now()
	base := make([]Member, len(reqs))
	seenKey := map[keys.Key]bool{}
	seenLabel := map[string]bool{}
	for i, req := range reqs {
		m, err := r.newMemberLocked(req, now)
		if err == nil && (seenKey[m.PublicKey] || seenLabel[m.Label]) {
			err = fmt.Errorf("%w: %q appears twice in the request", ErrDuplicate, m.Label)
		}
		if err != nil {
			return nil, err
		}
		seenKey[m.PublicKey], seenLabel[m.Label] = true, true
		base[i] = m
	}
	// Kept private keys go to their files first: an entry is never
	// committed without its key.
	var kept []keys.Key
	dropKeys := func() {
		for _, pub := range kept {
			r.keys.remove(pub)
		}
	}
	for i := range base {
		if base[i].PrivateKey != nil {
			if err := r.keys.put(base[i].PublicKey, *base[i].PrivateKey); err != nil {
				dropKeys()
				return nil, err
			}
			kept = append(kept, base[i].PublicKey)
		}
	}
	for attempt := 1; ; attempt++ {
		ops, undo, err := r.allocLocked(reqs, base, now)
		if err != nil {
			dropKeys()
			return nil, err
		}
		revs, err := r.store.Commit(r.ctx, ops)
		if err == nil {
			out := make([]Member, len(ops))
			r.mu.Lock()
			for i, op := range ops {
				m := *op.Next.Member
				r.putLocked(&m)
				r.revs[m.Index] = revs[i]
				out[i] = m
			}
			r.mu.Unlock()
			return out, nil
		}
		undo()
		r.settleLocked(ops, revs)
		var c *ConflictError
		switch {
		case errors.As(err, &c) && len(c.Labels) > 0:
			err = fmt.Errorf("%w: label %q is taken (by a member added on another node)", ErrDuplicate, c.Labels[0])
		case c != nil && len(c.Keys) > 0:
			err = fmt.Errorf("%w: public key %s belongs to a member added on another node", ErrDuplicate, c.Keys[0])
		case c != nil && attempt < maxAttempts:
			// Another registry took these slots: skip them until Follow
			// tells what they hold.
			for _, i := range c.Slots {
				r.alloc.set(i, true, time.Time{})
			}
			continue
		case errors.Is(err, ErrStoreUnavailable):
			// Part of the batch may be in the store; its kept keys stay
			// for when Follow brings those members in.
			return nil, fmt.Errorf("members: add: %w", err)
		default:
			err = fmt.Errorf("members: add: %w", err)
		}
		dropKeys()
		return nil, err
	}
}

// allocLocked allocates a slot for each request and returns the ops that
// commit them, and how to undo the allocation if the commit fails.
func (r *Registry) allocLocked(reqs []AddRequest, base []Member, now time.Time) (ops []Op, undo func(), err error) {
	type taken struct {
		slot  uint32
		freed time.Time
	}
	var got []taken
	cursor := r.alloc.next
	undo = func() {
		for _, t := range got {
			r.alloc.unclaim(t.slot, t.freed)
		}
		r.alloc.next = cursor
	}
	ops = make([]Op, len(reqs))
	for i, req := range reqs {
		slot, freed, err := r.slotLocked(req, now)
		if err != nil {
			undo()
			return nil, nil, err
		}
		got = append(got, taken{slot, freed})
		m := base[i]
		m.Index, m.ID = slot, slot
		m.IPv4, m.IPv6 = r.plan.addrs(slot)
		m.ReusedAddress = !freed.IsZero()
		ops[i] = Op{Prev: Record{Slot: slot, Rev: r.revs[slot], Freed: freed}, Next: Record{Slot: slot, Member: &m}}
	}
	return ops, undo, nil
}

// settleLocked notes the revisions at which a failed commit put slots
// back to the state the index holds, so Follow does not report the
// undone changes.
func (r *Registry) settleLocked(ops []Op, revs []int64) {
	for i, rv := range revs {
		if s := ops[i].Prev.Slot; rv > r.revs[s] {
			r.revs[s] = rv
		}
	}
}

// newMemberLocked validates req into a member without a slot.
func (r *Registry) newMemberLocked(req AddRequest, now time.Time) (Member, error) {
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
	return m, nil
}

// slotLocked allocates the slot for req: the one of a requested address, or
// the next free one. freed is the slot's expired quarantine entry.
func (r *Registry) slotLocked(req AddRequest, now time.Time) (uint32, time.Time, error) {
	var reason error
	for _, a := range []netip.Addr{req.IPv4, req.IPv6} {
		if !a.IsValid() {
			continue
		}
		i, ok := r.plan.indexOf(a)
		if !ok {
			reason = fmt.Errorf("%w: %s is not a member address in %s %s", ErrExhausted, a, r.plan.p4, r.plan.p6)
			continue
		}
		freed, ok := r.alloc.claim(i, now)
		if !ok {
			reason = fmt.Errorf("%w: address %s is in use or quarantined", ErrDuplicate, a)
			continue
		}
		return i, freed, nil
	}
	if reason != nil && !req.Fallback {
		return 0, time.Time{}, reason
	}
	i, freed, ok := r.alloc.take(now)
	if !ok {
		return 0, time.Time{}, fmt.Errorf("%w: no free address in %s %s (freed addresses are quarantined)", ErrExhausted, r.plan.p4, r.plan.p6)
	}
	return i, freed, nil
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

// RemoveBatch deletes several members at once, all or none: an unknown or
// repeated ref removes nothing.
func (r *Registry) RemoveBatch(refs []string) ([]Member, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
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
	ops := make([]Op, len(out))
	for i := range out {
		s := out[i].Index
		ops[i] = Op{Prev: Record{Slot: s, Rev: r.revs[s], Member: &out[i]}, Next: Record{Slot: s, Freed: now}}
	}
	revs, err := r.store.Commit(r.ctx, ops)
	if err != nil {
		r.settleLocked(ops, revs)
		return nil, writeErr("remove", err)
	}
	r.mu.Lock()
	for _, m := range out {
		r.dropLocked(r.byKey[m.PublicKey])
	}
	r.mu.Unlock()
	for i, m := range out {
		r.alloc.release(m.Index, now)
		r.revs[m.Index] = revs[i]
		r.keys.remove(m.PublicKey) // committed: a leftover file is only garbage, readable by root alone
	}
	return out, nil
}

// writeErr wraps a failed commit of a removal or an update.
func writeErr(what string, err error) error {
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("members: %s: %w; retry once this node has the other change (within a second)", what, err)
	}
	return fmt.Errorf("members: %s: %w", what, err)
}

// Change is a partial update of a member's policy; nil fields stay.
type Change struct {
	Weight                    *int
	EgressLimit, IngressLimit *uint64
	MaxConns                  *int
	Disabled                  *bool
}

// Update applies c to the member named by ref and returns it before and
// after, once the change is committed. Identity and addresses never change.
func (r *Registry) Update(ref string, c Change) (before, after Member, err error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
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
	s := m.Index
	op := Op{Prev: Record{Slot: s, Rev: r.revs[s], Member: &before}, Next: Record{Slot: s, Member: &after}}
	revs, err := r.store.Commit(r.ctx, []Op{op})
	if err != nil {
		r.settleLocked([]Op{op}, revs)
		return Member{}, Member{}, writeErr("update "+m.Label, err)
	}
	r.mu.Lock()
	*m = after
	r.mu.Unlock()
	r.revs[s] = revs[0]
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
	i, ok := r.plan.indexOf(a.Unmap())
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
