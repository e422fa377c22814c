package members

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"exitd/keys"
)

// Live sync with a shared store. Every state of a slot carries the store
// revision that wrote it; the registry keeps, per slot, the revision of
// the state its index holds (revs). Its own commits set that revision
// when they succeed, so when the store later reports the same change
// (revision not newer) it is skipped: each change reaches the index
// exactly once, and Follow reports only other registries' changes.
//
//	Follow ──Watch(from rev)──▶ apply: records ─▶ index ─▶ onChange(events)
//	   ▲            │ history compacted
//	   │            ▼
//	   └──── resync: Load, diff with the index ─▶ onChange(events)

// followRetry is the pause before Follow tries an unreachable store again.
const followRetry = 500 * time.Millisecond

// Follow keeps the registry in step with the changes other registries make
// to a shared store, until ctx ends or the registry is closed (then it
// returns nil). onChange is called from Follow's goroutine, in order, with
// each batch of changes once the index holds them; it must not call the
// registry's write methods (reads are fine) and should take what it needs
// from the events. A disconnection is waited out and the watch resumes
// from the last revision applied; when the store no longer has that
// history, the whole content is read again and the differences reported.
// Over a private store (Open) nobody else writes, and Follow only waits.
// One Follow at a time.
func (r *Registry) Follow(ctx context.Context, onChange func([]Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)()
	if r.watcher == nil {
		<-ctx.Done()
		return nil
	}
	if !r.following.CompareAndSwap(false, true) {
		return errors.New("members: follow: already following")
	}
	defer r.following.Store(false)
	report := func(evs []Event) {
		if len(evs) > 0 {
			onChange(evs)
		}
	}
	for {
		r.wmu.Lock()
		from := r.rev
		r.wmu.Unlock()
		err := r.watcher.Watch(ctx, from, func(recs []Record, rev int64) error {
			report(r.apply(recs, rev))
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrCompacted) {
			var evs []Event
			if evs, err = r.resync(ctx); err == nil {
				report(evs)
				continue
			}
		}
		if !errors.Is(err, ErrStoreUnavailable) {
			return fmt.Errorf("members: follow: %w", err)
		}
		t := time.NewTimer(followRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// apply brings records of others' changes into the index.
func (r *Registry) apply(recs []Record, rev int64) []Event {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	var gone []keys.Key
	r.mu.Lock()
	var evs []Event
	for _, rec := range recs {
		evs = append(evs, r.setLocked(rec, &gone)...)
	}
	r.mu.Unlock()
	if rev > r.rev {
		r.rev = rev
	}
	r.dropKeyFilesLocked(gone)
	return evs
}

// resync reads the whole store and brings the index to it, reporting the
// differences as events.
func (r *Registry) resync(ctx context.Context) ([]Event, error) {
	snap, err := r.store.Load(ctx, r.layout)
	if err != nil {
		return nil, err
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	recs := make(map[uint32]Record, len(snap.Records))
	for _, rec := range snap.Records {
		recs[rec.Slot] = rec
	}
	// Slots the index knows of but the store no longer holds are free.
	for s := range r.alloc.used {
		if _, ok := recs[s]; !ok {
			recs[s] = Record{Slot: s, Rev: snap.Rev}
		}
	}
	for s := range r.alloc.freed {
		if _, ok := recs[s]; !ok {
			recs[s] = Record{Slot: s, Rev: snap.Rev}
		}
	}
	slots := make([]uint32, 0, len(recs))
	for s := range recs {
		slots = append(slots, s)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	var evs []Event
	var gone []keys.Key
	r.mu.Lock()
	for _, s := range slots {
		evs = append(evs, r.setLocked(recs[s], &gone)...)
	}
	r.mu.Unlock()
	if snap.Rev > r.rev {
		r.rev = snap.Rev
	}
	r.dropKeyFilesLocked(gone)
	return evs, nil
}

// setLocked brings one slot of the index to rec, unless the index already
// holds that state or a newer one, and returns the changes as events.
// Public keys of members that left are added to gone (their kept key
// files go once no member holds them).
func (r *Registry) setLocked(rec Record, gone *[]keys.Key) []Event {
	if rec.Rev != 0 && rec.Rev <= r.revs[rec.Slot] {
		return nil
	}
	var evs []Event
	leave := func(old *Member) {
		r.dropLocked(old)
		evs = append(evs, Event{Before: *old})
		if gone != nil {
			*gone = append(*gone, old.PublicKey)
		}
	}
	old := r.byIndex[rec.Slot]
	var next *Member
	if rec.Member != nil {
		m := *rec.Member
		m.Weight = normWeight(m.Weight)
		m.Index, m.ID = rec.Slot, rec.Slot
		m.PrivateKey, m.ReusedAddress = nil, false
		if priv, ok, err := r.keys.get(m.PublicKey); err == nil && ok {
			m.PrivateKey = &priv
		}
		next = &m
	}
	if old != nil && (next == nil || next.PublicKey != old.PublicKey) {
		leave(old)
		old = nil
	}
	if next != nil {
		// History skipped by a resync: the label or key may still be held
		// by a slot the store has since freed or given to another member.
		for _, other := range []*Member{r.byKey[next.PublicKey], r.byLabel[next.Label]} {
			if other != nil && other.Index != rec.Slot && r.byKey[other.PublicKey] == other {
				leave(other)
			}
		}
		switch {
		case old == nil:
			// Any earlier state of the slot may mean an earlier owner of
			// the address (whose tracked flows must go); saying so once
			// too often costs a conntrack flush.
			next.ReusedAddress = r.revs[rec.Slot] != 0
			r.putLocked(next)
			ev := Event{After: *next}
			next.ReusedAddress = false
			evs = append(evs, ev)
		case !sameMember(*old, *next):
			before := *old
			*old = *next
			evs = append(evs, Event{Before: before, After: *old})
		}
	}
	r.alloc.set(rec.Slot, next != nil, rec.Freed)
	r.revs[rec.Slot] = rec.Rev
	return evs
}

// putLocked adds m to the index.
func (r *Registry) putLocked(m *Member) {
	r.byKey[m.PublicKey] = m
	r.byLabel[m.Label] = m
	r.byIndex[m.Index] = m
}

// dropLocked takes m out of the index.
func (r *Registry) dropLocked(m *Member) {
	if m == nil {
		return
	}
	if r.byKey[m.PublicKey] == m {
		delete(r.byKey, m.PublicKey)
	}
	if r.byLabel[m.Label] == m {
		delete(r.byLabel, m.Label)
	}
	if r.byIndex[m.Index] == m {
		delete(r.byIndex, m.Index)
	}
}

// dropKeyFilesLocked removes the kept key files of members gone from the
// index.
func (r *Registry) dropKeyFilesLocked(gone []keys.Key) {
	for _, k := range gone {
		r.mu.RLock()
		_, held := r.byKey[k]
		r.mu.RUnlock()
		if !held {
			r.keys.remove(k)
		}
	}
}

// sameMember compares what a store keeps of two members.
func sameMember(a, b Member) bool {
	if !a.Created.Equal(b.Created) {
		return false
	}
	a.Created, b.Created = time.Time{}, time.Time{}
	a.PrivateKey, b.PrivateKey = nil, nil
	a.ReusedAddress, b.ReusedAddress = false, false
	return a == b
}
