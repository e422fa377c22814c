package sched

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
)

// UnknownMember is the reserved member id of the shared class that holds
// packets whose inner address belongs to no member (and unparsable ones).
// It is scheduled like any member and reported by MemberStats.
const UnknownMember uint32 = math.MaxUint32

// ErrReservedID is returned when a caller tries to register UnknownMember.
var ErrReservedID = errors.New("sched: member id is reserved for unknown traffic")

// registry maps inner addresses to members. Writers (UpsertMember,
// RemoveMember) take mu briefly per member; the data path takes the read
// lock once per batch, so 20,000 bulk adds never copy a map.
type registry struct {
	mu      sync.RWMutex
	byAddr  map[addrKey]*memberEntry
	byID    map[uint32]*memberEntry
	unknown *memberEntry // immutable
}

func newRegistry() *registry {
	return &registry{
		byAddr:  make(map[addrKey]*memberEntry),
		byID:    make(map[uint32]*memberEntry),
		unknown: newMemberEntry(UnknownMember, 1),
	}
}

// upsert adds member id or updates its addresses and weight in place, so
// its queued packets and counters survive. An address owned by another
// member moves to id.
func (r *registry) upsert(id uint32, addrs []netip.Addr, weight int) error {
	if id == UnknownMember {
		return ErrReservedID
	}
	keys := make([]addrKey, 0, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("sched: upsert member %d: invalid address", id)
		}
		keys = append(keys, keyFromAddr(a))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byID[id]
	if e == nil {
		e = newMemberEntry(id, weight)
		r.byID[id] = e
	} else {
		e.setWeight(weight)
		for _, k := range e.addrs {
			if r.byAddr[k] == e {
				delete(r.byAddr, k)
			}
		}
	}
	e.addrs = keys
	for _, k := range keys {
		if old := r.byAddr[k]; old != nil && old != e {
			old.addrs = removeKey(old.addrs, k)
		}
		r.byAddr[k] = e
	}
	return nil
}

func removeKey(keys []addrKey, k addrKey) []addrKey {
	out := make([]addrKey, 0, len(keys))
	for _, x := range keys {
		if x != k {
			out = append(out, x)
		}
	}
	return out
}

// remove forgets member id. Its queued packets still drain in order; new
// packets for its addresses go to the unknown class.
func (r *registry) remove(id uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byID[id]
	if e == nil {
		return false
	}
	for _, k := range e.addrs {
		if r.byAddr[k] == e {
			delete(r.byAddr, k)
		}
	}
	delete(r.byID, id)
	return true
}

// lookupRLocked maps an inner address to its member, or the unknown class.
func (r *registry) lookupRLocked(k addrKey, ok bool) *memberEntry {
	if !ok {
		return r.unknown
	}
	if e := r.byAddr[k]; e != nil {
		return e
	}
	return r.unknown
}

func (r *registry) get(id uint32) *memberEntry {
	if id == UnknownMember {
		return r.unknown
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

func (r *registry) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byID)
}

// snapshot returns every member entry plus the unknown class.
func (r *registry) snapshot() []*memberEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*memberEntry, 0, len(r.byID)+1)
	for _, e := range r.byID {
		out = append(out, e)
	}
	return append(out, r.unknown)
}

// UpsertMember registers member id with its inner addresses (exitd gives
// each member one IPv4 /32 and one IPv6 /128) and weight (1..64, its DRR
// quantum multiplier; ≤ 0 means 1), or updates them in place keeping its
// queue and counters. An address held by another member moves to id.
// O(len(addrs)); safe during traffic.
func (d *Device) UpsertMember(id uint32, addrs []netip.Addr, weight int) error {
	return d.reg.upsert(id, addrs, weight)
}

// SetMemberRate caps member id's download (towards the member) and upload
// at down and up bits/s of on-wire bytes; 0 removes a cap. It reports
// whether id is registered. Caps are enforced by the srr discipline (a
// capped member without tokens is passed over in its turn, so others get
// the capacity); fifo ignores them. Clamped to 64 kbit/s–400 Gbit/s.
func (d *Device) SetMemberRate(id uint32, down, up uint64) bool {
	e := d.reg.get(id)
	if e == nil || id == UnknownMember {
		return false
	}
	clamp := func(r uint64) uint64 {
		if r == 0 {
			return 0
		}
		return clampInt(r, minRate, maxRate)
	}
	e.down.rate.Store(clamp(down))
	if old := e.up.rate.Swap(clamp(up)); (old == 0) != (up == 0) {
		if up == 0 {
			d.upCapped.Add(-1)
		} else {
			d.upCapped.Add(1)
		}
	}
	nudge(d.wakeRead)
	nudge(d.wakeDrain)
	return true
}

// RemoveMember forgets member id and reports whether it was registered.
// Packets it has queued still drain; new ones for its addresses go to the
// unknown class.
func (d *Device) RemoveMember(id uint32) bool {
	if e := d.reg.get(id); e != nil && id != UnknownMember && e.up.rate.Swap(0) != 0 {
		d.upCapped.Add(-1)
	}
	return d.reg.remove(id)
}
