package storetest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"exitd/keys"
	"exitd/members"
)

// MemStore is a shared member store in memory, with revisions, a history
// to watch, compaction and outages: the contract's reference model, and a
// test double for code that runs several registries (a cluster) without
// etcd. Each registry gets its own view from Open.
type MemStore struct {
	mu        sync.Mutex
	rev       int64
	layout    string
	slots     map[uint32]members.Record
	labels    map[string]uint32
	keys      map[keys.Key]uint32
	history   []members.Record // every change, in revision order
	compacted int64            // history up to here is gone
	down      bool
	changed   chan struct{} // closed and replaced on every change
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{slots: map[uint32]members.Record{}, labels: map[string]uint32{}, keys: map[keys.Key]uint32{}, changed: make(chan struct{})}
}

// Open returns a view of the store for one registry.
func (s *MemStore) Open() members.Store { return memView{s} }

// Compact forgets the history up to now.
func (s *MemStore) Compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compacted, s.history = s.rev, nil
}

// SetDown makes the store unreachable (true) or reachable again.
func (s *MemStore) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	s.notifyLocked()
}

func (s *MemStore) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// memView is one registry's handle; closing it leaves the store.
type memView struct{ s *MemStore }

var (
	_ members.Store   = memView{}
	_ members.Watcher = memView{}
)

func (v memView) Close() error { return nil }

func (v memView) Load(_ context.Context, layout string) (members.Snapshot, error) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return members.Snapshot{}, fmt.Errorf("memstore: load: %w", members.ErrStoreUnavailable)
	}
	if s.layout == "" {
		s.layout = layout
	}
	if s.layout != layout {
		return members.Snapshot{}, fmt.Errorf("memstore: layout %q, the store has %q", layout, s.layout)
	}
	snap := members.Snapshot{Rev: s.rev}
	for _, rec := range s.slots {
		snap.Records = append(snap.Records, copyRecord(rec))
	}
	sort.Slice(snap.Records, func(i, j int) bool { return snap.Records[i].Slot < snap.Records[j].Slot })
	return snap, nil
}

func (v memView) Commit(_ context.Context, ops []members.Op) ([]int64, error) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, fmt.Errorf("memstore: commit: %w", members.ErrStoreUnavailable)
	}
	var c members.ConflictError
	for _, op := range ops {
		if err := op.Check(); err != nil {
			return nil, err
		}
		cur, ok := s.slots[op.Prev.Slot]
		if op.Prev.Absent() && ok || !op.Prev.Absent() && (!ok || cur.Rev != op.Prev.Rev) {
			c.Slots = append(c.Slots, op.Prev.Slot)
		}
		if m := op.Next.Member; m != nil && op.Prev.Member == nil {
			if _, ok := s.labels[m.Label]; ok {
				c.Labels = append(c.Labels, m.Label)
			}
			if _, ok := s.keys[m.PublicKey]; ok {
				c.Keys = append(c.Keys, m.PublicKey)
			}
		}
	}
	if c.Slots != nil || c.Labels != nil || c.Keys != nil {
		return nil, &c
	}
	s.rev++
	revs := make([]int64, len(ops))
	for i, op := range ops {
		revs[i] = s.rev
		if m := op.Prev.Member; m != nil {
			delete(s.labels, m.Label)
			delete(s.keys, m.PublicKey)
		}
		rec := copyRecord(op.Next)
		rec.Rev = s.rev
		if m := rec.Member; m != nil {
			m.PrivateKey = nil
			s.labels[m.Label], s.keys[m.PublicKey] = rec.Slot, rec.Slot
		}
		if rec.Absent() {
			delete(s.slots, rec.Slot)
		} else {
			s.slots[rec.Slot] = rec
		}
		s.history = append(s.history, rec)
	}
	s.notifyLocked()
	return revs, nil
}

func (v memView) Watch(ctx context.Context, from int64, apply func([]members.Record, int64) error) error {
	s := v.s
	for {
		s.mu.Lock()
		if from < s.compacted {
			s.mu.Unlock()
			return fmt.Errorf("memstore: watch from %d: %w", from+1, members.ErrCompacted)
		}
		var recs []members.Record
		if !s.down {
			for _, rec := range s.history {
				if rec.Rev > from {
					recs = append(recs, copyRecord(rec))
				}
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(recs) > 0 {
			from = recs[len(recs)-1].Rev
			if err := apply(recs, from); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func copyRecord(rec members.Record) members.Record {
	if rec.Member != nil {
		m := *rec.Member
		rec.Member = &m
	}
	return rec
}
