package portforward

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for zero TableOptions fields.
const (
	DefaultMaxPerMember = 16
	DefaultMaxLifetime  = 2 * time.Hour // RFC 6886 §3.3 recommends clients ask for 7200 s
	DefaultCreateRate   = 1.0           // new mappings per second per member
)

// TableOptions is the mapping policy. Zero fields take the defaults above.
type TableOptions struct {
	// FirstPort and LastPort bound the external ports handed out
	// (inclusive); required. The range must not overlap any port the exit
	// itself uses on its WAN address: the caller checks that.
	FirstPort, LastPort uint16
	// MaxPerMember bounds a member's mappings, UDP and TCP together.
	MaxPerMember int
	// MaxLifetime bounds the lifetime granted; longer requests are
	// clamped. At least one second.
	MaxLifetime time.Duration
	// CreateRate and CreateBurst bound how fast a member can create
	// mappings (each costs an Apply and a Save): a token bucket per member.
	// Re-pointing a mapping to a new inner address of its member costs a
	// token too; renewals and deletions are not limited. CreateBurst
	// defaults to twice MaxPerMember.
	CreateRate  float64
	CreateBurst int

	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: discard
}

// Table is the mapping table. Its methods are safe for concurrent use.
type Table struct {
	opts        TableOptions
	maxLifetime uint32 // opts.MaxLifetime in seconds
	inst        Installer
	store       Store // nil: no persistence
	log         *slog.Logger

	// Counters, read by Stats without the lock.
	mappings    atomic.Int64
	expired     atomic.Uint64
	applyErrors atomic.Uint64
	saveErrors  atomic.Uint64

	mu      sync.Mutex
	byKey   map[mapKey]Mapping // guarded by mu; the set
	byExt   map[extKey]mapKey  // guarded by mu; (proto, external port) → owner
	count   map[string]int     // guarded by mu; mappings per member
	buckets map[string]bucket  // guarded by mu; creation tokens per member
	// applyPending: a removal (expiry, RemoveMember) is in byKey but its
	// Apply failed, so the installed set lags; Expire retries.
	applyPending bool // guarded by mu
	// savePending: the Store lags byKey (renewals, or a failed Save);
	// Expire and flush save.
	savePending  bool // guarded by mu
	applyFailing bool // guarded by mu; the last Apply failed (log once per run)
	saveFailing  bool // guarded by mu; the last Save failed (log once per run)
}

// mapKey identifies a mapping the way a client does: its member, protocol
// and internal port.
type mapKey struct {
	member string
	proto  Proto
	port   uint16
}

type extKey struct {
	proto Proto
	port  uint16
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewTable checks opts, restores the mappings of store (nil: none; expired
// ones are dropped, ones the current policy forbids are dropped with a
// warning), and installs the restored set — possibly empty, so stale
// mappings of an earlier run disappear — with one Apply. A Store that
// cannot be read, or an Apply that fails, is an error: nothing is lost, the
// caller decides (e.g. move the file aside and try again).
func NewTable(opts TableOptions, inst Installer, store Store) (*Table, error) {
	if inst == nil {
		return nil, errors.New("portforward: no Installer")
	}
	if opts.FirstPort == 0 || opts.LastPort < opts.FirstPort {
		return nil, fmt.Errorf("portforward: external port range %d-%d is empty", opts.FirstPort, opts.LastPort)
	}
	if opts.MaxPerMember < 0 || opts.CreateRate < 0 || opts.CreateBurst < 0 || math.IsNaN(opts.CreateRate) ||
		(opts.MaxLifetime != 0 && opts.MaxLifetime < time.Second) {
		return nil, errors.New("portforward: negative limit, or maximum lifetime under a second")
	}
	setDefault(&opts.MaxPerMember, DefaultMaxPerMember)
	setDefault(&opts.MaxLifetime, DefaultMaxLifetime)
	setDefault(&opts.CreateRate, DefaultCreateRate)
	setDefault(&opts.CreateBurst, 2*opts.MaxPerMember)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Table{
		opts:        opts,
		maxLifetime: uint32(min(opts.MaxLifetime/time.Second, math.MaxUint32)),
		inst:        inst,
		store:       store,
		log:         log,
		byKey:       make(map[mapKey]Mapping),
		byExt:       make(map[extKey]mapKey),
		count:       make(map[string]int),
		buckets:     make(map[string]bucket),
	}
	if err := t.restore(); err != nil {
		return nil, err
	}
	return t, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// restore loads the Store into the empty table and installs the result.
func (t *Table) restore() error {
	var saved []Mapping
	if t.store != nil {
		var err error
		if saved, err = t.store.Load(); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := checkMappings(saved); err != nil {
		return fmt.Errorf("portforward: restore: %w", err)
	}
	now := t.opts.Now()
	limit := now.Add(t.opts.MaxLifetime)
	var expired, forbidden int
	for _, m := range saved {
		if !m.Expires.After(now) {
			expired++
			continue
		}
		if m.External < t.opts.FirstPort || m.External > t.opts.LastPort ||
			!t.freeLocked(m.Member, m.Proto, m.External) || t.count[m.Member] >= t.opts.MaxPerMember {
			t.log.Warn("portforward: restore: dropping mapping the policy no longer allows",
				"member", m.Member, "proto", m.Proto, "internal", m.Internal, "external", m.External)
			forbidden++
			continue
		}
		if m.Expires.After(limit) {
			m.Expires = limit
		}
		t.putLocked(m)
	}
	all := t.listLocked()
	if err := t.applyLocked(all); err != nil {
		return fmt.Errorf("portforward: install restored mappings: %w", err)
	}
	if expired+forbidden > 0 {
		t.saveLocked(all)
	}
	t.log.Info("portforward: restored mappings", "mappings", len(all), "expired", expired, "dropped", forbidden)
	return nil
}

// List returns the current mappings sorted by member, protocol and
// external port. The slice is the caller's.
func (t *Table) List() []Mapping {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.listLocked()
}

// Len returns the number of mappings.
func (t *Table) Len() int { return int(t.mappings.Load()) }

func (t *Table) listLocked() []Mapping {
	all := make([]Mapping, 0, len(t.byKey))
	for _, m := range t.byKey {
		all = append(all, m)
	}
	slices.SortFunc(all, func(a, b Mapping) int {
		return cmp.Or(cmp.Compare(a.Member, b.Member), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.External, b.External))
	})
	return all
}

// RemoveMember removes all of member's mappings (the member was deleted
// or disabled). The removal stands even if Apply fails: the error is
// returned and Expire retries until the installed set catches up.
func (t *Table) RemoveMember(member string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.buckets, member)
	n := 0
	for k := range t.byKey {
		if k.member == member {
			t.delLocked(k)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	t.log.Info("portforward: removed member's mappings", "member", member, "mappings", n)
	t.applyPending = true
	return t.syncLocked()
}

// Expire removes the mappings whose lifetime has run out. It is also the
// table's retry point: it re-applies after a failed Apply of a removal, and
// saves renewals and after a failed Save. The server calls it from its
// ticker; the error is that of the Apply or Save.
func (t *Table) Expire() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	n := 0
	for k, m := range t.byKey {
		if !now.Before(m.Expires) {
			t.delLocked(k)
			n++
		}
	}
	if n > 0 {
		t.expired.Add(uint64(n))
		t.applyPending = true
		t.log.Debug("portforward: expired mappings", "mappings", n)
	}
	if !t.applyPending && !t.savePending {
		return nil
	}
	return t.syncLocked()
}

// flush saves renewals not yet saved.
func (t *Table) flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.savePending || t.store == nil {
		return nil
	}
	return t.saveLocked(t.listLocked())
}

// syncLocked applies (if a removal is pending) and saves the current set.
func (t *Table) syncLocked() error {
	all := t.listLocked()
	var errs []error
	if t.applyPending {
		if err := t.applyLocked(all); err != nil {
			errs = append(errs, err)
		}
	}
	if err := t.saveLocked(all); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// request carries out one mapping request of member, whose inner address
// and internal port are internal (§3.3, §3.4). It returns the external
// port and the lifetime granted (0 and 0 after a deletion or a failure),
// the result code, and whether the installed set changed.
//
// Apply failures answer ResultNetworkFailure (the exit itself cannot
// install the mapping, like §3.5's "NAT box has no DHCP lease"), with the
// table rolled back; ResultOutOfResources is for policy limits (no free
// port, member at its maximum or out of creation tokens).
func (t *Table) request(member string, proto Proto, internal netip.AddrPort, suggested uint16, lifetime uint32) (ext uint16, granted uint32, res ResultCode, changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lifetime == 0 {
		res, changed = t.deleteLocked(member, proto, internal.Port())
		return 0, 0, res, changed
	}
	if internal.Port() == 0 {
		// §3.4 reserves internal port 0 for "delete all"; mapping it means
		// nothing.
		return 0, 0, ResultRefused, false
	}
	now := t.opts.Now()
	granted = min(lifetime, t.maxLifetime)
	expires := now.Add(time.Duration(granted) * time.Second)
	k := mapKey{member, proto, internal.Port()}
	if old, ok := t.byKey[k]; ok {
		// A renewal keeps the external port whatever the suggestion (§3.3).
		m := old
		m.Expires = expires
		t.byKey[k] = m
		t.savePending = true
		if m.Internal == internal {
			return m.External, granted, ResultSuccess, false
		}
		// The member's inner address changed: the DNAT target changes,
		// which costs what a creation costs.
		if !t.allowLocked(member, now) {
			t.byKey[k] = old
			return 0, 0, ResultOutOfResources, false
		}
		m.Internal = internal
		t.byKey[k] = m
		all := t.listLocked()
		if err := t.applyLocked(all); err != nil {
			t.byKey[k] = old
			return 0, 0, ResultNetworkFailure, false
		}
		t.spendLocked(member)
		t.saveLocked(all)
		return m.External, granted, ResultSuccess, true
	}
	if t.count[member] >= t.opts.MaxPerMember || !t.allowLocked(member, now) {
		return 0, 0, ResultOutOfResources, false
	}
	ext, ok := t.freePortLocked(member, proto, suggested, internal.Port())
	if !ok {
		return 0, 0, ResultOutOfResources, false
	}
	t.putLocked(Mapping{Member: member, Proto: proto, Internal: internal, External: ext, Expires: expires})
	all := t.listLocked()
	if err := t.applyLocked(all); err != nil {
		t.delLocked(k)
		return 0, 0, ResultNetworkFailure, false
	}
	t.spendLocked(member)
	t.saveLocked(all)
	return ext, granted, ResultSuccess, true
}

// deleteLocked deletes member's mapping of proto on internal port port, or
// all of them if port is 0 (§3.4). Deleting what does not exist succeeds.
func (t *Table) deleteLocked(member string, proto Proto, port uint16) (ResultCode, bool) {
	var removed []Mapping
	for k, m := range t.byKey {
		if k.member == member && k.proto == proto && (port == 0 || k.port == port) {
			removed = append(removed, m)
			t.delLocked(k)
		}
	}
	if len(removed) == 0 {
		return ResultSuccess, false
	}
	all := t.listLocked()
	if err := t.applyLocked(all); err != nil {
		for _, m := range removed {
			t.putLocked(m)
		}
		return ResultNetworkFailure, false
	}
	t.saveLocked(all)
	return ResultSuccess, true
}

// allowLocked refills member's creation bucket and reports whether it
// holds a token (request spends it once the mapping is installed).
func (t *Table) allowLocked(member string, now time.Time) bool {
	burst := float64(t.opts.CreateBurst)
	b, ok := t.buckets[member]
	if !ok {
		b = bucket{tokens: burst, last: now}
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*t.opts.CreateRate)
		b.last = now
	}
	t.buckets[member] = b
	return b.tokens >= 1
}

// spendLocked takes the token allowLocked found.
func (t *Table) spendLocked(member string) {
	b := t.buckets[member]
	b.tokens--
	t.buckets[member] = b
}

// freePortLocked picks the external port for a new mapping: the suggested
// port if it is in range and free; otherwise the first free port scanning
// upwards (wrapping) from the suggestion, or from the internal port when
// there is no suggestion — clients usually want the same number.
func (t *Table) freePortLocked(member string, proto Proto, suggested, internal uint16) (uint16, bool) {
	first, last := t.opts.FirstPort, t.opts.LastPort
	size := int(last-first) + 1
	hint := suggested
	if hint == 0 {
		hint = internal
	}
	start := int(hint) % size
	if hint >= first && hint <= last {
		start = int(hint - first)
	}
	for i := range size {
		p := first + uint16((start+i)%size)
		if t.freeLocked(member, proto, p) {
			return p, true
		}
	}
	return 0, false
}

// freeLocked reports whether member may map external port p for proto: no
// mapping of proto holds it, and no other member holds it for the other
// protocol (§3.3: a mapping reserves its companion port for its client).
func (t *Table) freeLocked(member string, proto Proto, p uint16) bool {
	if _, taken := t.byExt[extKey{proto, p}]; taken {
		return false
	}
	owner, taken := t.byExt[extKey{proto.other(), p}]
	return !taken || owner.member == member
}

func (t *Table) putLocked(m Mapping) {
	k := mapKey{m.Member, m.Proto, m.Internal.Port()}
	t.byKey[k] = m
	t.byExt[extKey{m.Proto, m.External}] = k
	t.count[m.Member]++
	t.mappings.Add(1)
}

func (t *Table) delLocked(k mapKey) {
	m := t.byKey[k]
	delete(t.byKey, k)
	delete(t.byExt, extKey{m.Proto, m.External})
	if t.count[k.member]--; t.count[k.member] == 0 {
		delete(t.count, k.member)
	}
	t.mappings.Add(-1)
}

// applyLocked installs all; it logs the first failure of a run and the
// recovery.
func (t *Table) applyLocked(all []Mapping) error {
	err := t.inst.Apply(all)
	if err != nil {
		t.applyErrors.Add(1)
		if !t.applyFailing {
			t.log.Error("portforward: installing mappings failed", "mappings", len(all), "err", err)
		}
		t.applyFailing = true
		return fmt.Errorf("portforward: apply: %w", err)
	}
	if t.applyFailing {
		t.log.Info("portforward: installing mappings works again", "mappings", len(all))
	}
	t.applyFailing, t.applyPending = false, false
	return nil
}

// saveLocked saves all; a failure leaves savePending for Expire to retry.
func (t *Table) saveLocked(all []Mapping) error {
	if t.store == nil {
		t.savePending = false
		return nil
	}
	if err := t.store.Save(all); err != nil {
		t.saveErrors.Add(1)
		if !t.saveFailing {
			t.log.Error("portforward: saving mappings failed", "err", err)
		}
		t.saveFailing, t.savePending = true, true
		return fmt.Errorf("portforward: save: %w", err)
	}
	if t.saveFailing {
		t.log.Info("portforward: saving mappings works again")
	}
	t.saveFailing, t.savePending = false, false
	return nil
}
