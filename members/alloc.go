package members

import (
	"math/big"
	"net/netip"
	"time"
)

// maxSlots caps a plan at 4M members whatever the prefix size, which bounds
// the allocator's memory.
const maxSlots = 1 << 22

// plan maps a slot index to one IPv4 and one IPv6 address: index 0 is the
// network, 1 the gateway, members get 2..size-1 (the IPv4 broadcast address
// is never handed out).
type plan struct {
	p4, p6 netip.Prefix
	size   uint32
}

func newPlan(p4, p6 netip.Prefix) plan {
	size := uint64(maxSlots)
	if p4.IsValid() {
		size = min(size, uint64(1)<<(32-p4.Bits())-1) // drop broadcast
	}
	if p6.IsValid() {
		if host := 128 - p6.Bits(); host < 22 {
			size = min(size, uint64(1)<<host)
		}
	}
	if !p4.IsValid() && !p6.IsValid() {
		size = 0
	}
	return plan{p4: p4.Masked(), p6: p6.Masked(), size: uint32(size)}
}

func addOffset(base netip.Addr, n uint32) netip.Addr {
	if !base.IsValid() {
		return netip.Addr{}
	}
	b := base.AsSlice()
	v := new(big.Int).SetBytes(b)
	v.Add(v, big.NewInt(int64(n)))
	out := v.FillBytes(make([]byte, len(b)))
	a, _ := netip.AddrFromSlice(out)
	return a
}

func (p plan) addrs(i uint32) (v4, v6 netip.Addr) {
	if p.p4.IsValid() {
		v4 = addOffset(p.p4.Addr(), i)
	}
	if p.p6.IsValid() {
		v6 = addOffset(p.p6.Addr(), i)
	}
	return v4, v6
}

// indexOf returns the slot of a member address in either prefix.
func (p plan) indexOf(a netip.Addr) (uint32, bool) {
	var base netip.Addr
	switch {
	case a.Is4() && p.p4.Contains(a):
		base = p.p4.Addr()
	case a.Is6() && p.p6.Contains(a):
		base = p.p6.Addr()
	default:
		return 0, false
	}
	d := new(big.Int).Sub(new(big.Int).SetBytes(a.AsSlice()), new(big.Int).SetBytes(base.AsSlice()))
	if !d.IsUint64() || d.Uint64() < 2 || d.Uint64() >= uint64(p.size) {
		return 0, false
	}
	return uint32(d.Uint64()), true
}

// allocator hands out free slots, next-fit, skipping slots in use and slots
// freed less than quarantine ago. Not safe for concurrent use.
type allocator struct {
	plan plan
	// used: slots held by a member, or taken by another registry of a
	// shared store in a way this one has not seen yet.
	used map[uint32]bool
	// freed: when each quarantined slot's member left.
	freed      map[uint32]time.Time
	quarantine time.Duration
	next       uint32
}

func newAllocator(p plan, quarantine time.Duration) *allocator {
	return &allocator{plan: p, used: map[uint32]bool{}, freed: map[uint32]time.Time{}, quarantine: quarantine, next: 2}
}

// take allocates a slot or reports exhaustion; freed is the slot's expired
// quarantine entry (zero: the address never had an owner).
func (a *allocator) take(now time.Time) (i uint32, freed time.Time, ok bool) {
	if a.plan.size <= 2 {
		return 0, time.Time{}, false
	}
	span := a.plan.size - 2
	for tried := uint32(0); tried < span; tried++ {
		i := a.next
		a.next++
		if a.next >= a.plan.size {
			a.next = 2
		}
		if freed, ok := a.claim(i, now); ok {
			return i, freed, true
		}
	}
	return 0, time.Time{}, false
}

// claim marks a specific slot used; false if it is taken or quarantined.
// freed is the slot's expired quarantine entry, which unclaim puts back.
func (a *allocator) claim(i uint32, now time.Time) (freed time.Time, ok bool) {
	if i < 2 || i >= a.plan.size || a.used[i] {
		return time.Time{}, false
	}
	freed, q := a.freed[i]
	if q && now.Sub(freed) < a.quarantine {
		return time.Time{}, false
	}
	delete(a.freed, i)
	a.used[i] = true
	return freed, true
}

// unclaim undoes a take or claim that was not committed.
func (a *allocator) unclaim(i uint32, freed time.Time) {
	delete(a.used, i)
	if !freed.IsZero() {
		a.freed[i] = freed
	}
}

// release frees a slot into quarantine.
func (a *allocator) release(i uint32, now time.Time) { a.set(i, false, now) }

// set records a slot's state as the store holds it.
func (a *allocator) set(i uint32, used bool, freed time.Time) {
	delete(a.freed, i)
	delete(a.used, i)
	switch {
	case used:
		a.used[i] = true
	case !freed.IsZero():
		a.freed[i] = freed
	}
}

// layout names the plan for a store shared by several registries: they
// must agree on what a slot's addresses are.
func (p plan) layout() string {
	s := func(p netip.Prefix) string {
		if !p.IsValid() {
			return "-"
		}
		return p.String()
	}
	return "ipv4 " + s(p.p4) + " ipv6 " + s(p.p6)
}
