package members

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"exitd/keys"
)

// The registry keeps its index in memory and its records in a Store: the
// embedded bbolt file (Open) or a store shared by a cluster of nodes
// (OpenStore, e.g. members/etcdstore). The registry allocates; the store
// enforces, atomically, that each slot, label and public key belongs to
// one member, and that a slot is claimed only in the state the registry
// saw (its quarantine included), so two registries on one shared store
// never hand out the same address.
//
// A slot's state is a Record: free (never used, or released without
// quarantine), quarantined (its member left at Freed) or held by a member.
// Every change is an Op from the state the registry knows (Prev) to the
// next one; the store refuses an op whose Prev is stale.

// Store keeps member records durably.
type Store interface {
	// Load returns every record at one revision. layout names the
	// registry's address plan; a store shared by several registries
	// records the first layout and refuses to load for another one (the
	// slot numbers would mean other addresses). It writes nothing but that
	// record.
	Load(ctx context.Context, layout string) (Snapshot, error)
	// Commit applies ops, all or none, and returns the revision of each
	// op's new record. Each op moves one slot from Prev to Next; an op
	// fails the commit with a *ConflictError when the slot is no longer at
	// Prev (Prev.Rev, or absent when Prev is free and never freed) or, for
	// a member added to a slot, when its label or public key belongs to
	// another member. A store that cannot reach its backend fails with an
	// error wrapping ErrStoreUnavailable; then part of the ops may have
	// been committed, which a Watcher reports. On a failed commit revs,
	// when not nil, holds for each op the revision at which its slot was
	// put back to Prev (0: not touched).
	Commit(ctx context.Context, ops []Op) (revs []int64, err error)
	// Close releases the store.
	Close() error
}

// Watcher is a Store that other registries write as well.
type Watcher interface {
	// Watch calls apply, in revision order, with the records of every
	// change after revision from, and rev, the revision they bring the
	// caller to, until ctx ends (it then returns ctx's error) or the
	// history since from is gone (an error wrapping ErrCompacted: Load
	// again). A disconnection is not an error: Watch resumes where it
	// was. An error from apply ends Watch with it.
	Watch(ctx context.Context, from int64, apply func(recs []Record, rev int64) error) error
}

// Snapshot is a store's content at one revision.
type Snapshot struct {
	Rev     int64
	Records []Record
}

// Record is the state of one slot.
type Record struct {
	Slot uint32
	// Rev is the store revision that wrote this state (0: never written).
	Rev int64
	// Member holds the slot; nil when it is free.
	Member *Member
	// Freed, for a free slot, is when its last member left: the slot is
	// quarantined from then. Zero: the slot is free without quarantine.
	Freed time.Time
}

// Absent reports whether the store holds nothing for the slot.
func (r Record) Absent() bool { return r.Member == nil && r.Freed.IsZero() }

// Op moves one slot from Prev to Next (Next.Rev is ignored). A member's
// label and public key are claimed when it enters a slot and released
// when it leaves; an update keeps both.
type Op struct {
	Prev, Next Record
}

// Check validates an op the way every store expects it.
func (o Op) Check() error {
	if o.Prev.Slot != o.Next.Slot {
		return fmt.Errorf("op moves slot %d to %d", o.Prev.Slot, o.Next.Slot)
	}
	if o.Prev.Member != nil && o.Next.Member != nil &&
		(o.Prev.Member.PublicKey != o.Next.Member.PublicKey || o.Prev.Member.Label != o.Next.Member.Label) {
		return fmt.Errorf("op on slot %d changes a member's identity", o.Prev.Slot)
	}
	if m := o.Next.Member; m != nil && m.Index != o.Next.Slot {
		return fmt.Errorf("op puts member %q of slot %d into slot %d", m.Label, m.Index, o.Next.Slot)
	}
	return nil
}

// ErrCompacted: a Watcher no longer has the history asked for.
var ErrCompacted = errors.New("store history compacted")

// ConflictError is a Commit refused because the store changed since the
// registry read it: another registry wrote the slots, or holds the labels
// or keys.
type ConflictError struct {
	Slots  []uint32
	Labels []string
	Keys   []keys.Key
}

func (e *ConflictError) Error() string {
	var parts []string
	for _, l := range e.Labels {
		parts = append(parts, fmt.Sprintf("label %q is taken", l))
	}
	for _, k := range e.Keys {
		parts = append(parts, fmt.Sprintf("public key %s is taken", k))
	}
	if len(e.Slots) > 0 {
		parts = append(parts, fmt.Sprintf("%d slot(s) changed meanwhile (first %d)", len(e.Slots), e.Slots[0]))
	}
	return "store conflict: " + strings.Join(parts, ", ")
}

// Is makes a ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Event is a change another registry made, as Follow reports it: Before
// is zero for an add, After zero for a remove.
type Event struct {
	Before, After Member
}

// Added reports whether the event adds a member.
func (e Event) Added() bool { return e.Before.PublicKey.IsZero() }

// Removed reports whether the event removes a member.
func (e Event) Removed() bool { return e.After.PublicKey.IsZero() }
