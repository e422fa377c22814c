package dns

import (
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Cache key flags: answers differ with DO (DNSSEC records) and with CD (a
// validating upstream answers CD queries it would SERVFAIL otherwise).
const (
	keyDO uint8 = 1 << iota
	keyCD
)

// cacheKey identifies one question. name is lowercased and fully qualified.
type cacheKey struct {
	name          string
	qtype, qclass uint16
	flags         uint8
}

// entry is one resolved answer: what a flight hands to its callers and what
// the cache keeps. All fields but prev and next are immutable once built;
// prev and next belong to the cache and are guarded by cache.mu.
type entry struct {
	key      cacheKey
	wire     []byte // packed reply: ID 0, no OPT, TTLs clamped
	ede      []*mdns.EDNS0_EDE
	stored   time.Time
	ttl      uint32 // seconds the entry may be served; 0: not cacheable
	negative bool   // NXDOMAIN or NODATA
	rebind   bool   // rewritten by rebinding protection

	prev, next *entry
}

// age returns e's age at now in whole seconds, or expired when e must no
// longer be served.
func (e *entry) age(now time.Time) (age uint32, expired bool) {
	d := now.Sub(e.stored)
	if d < 0 {
		d = 0 // clock stepped back: treat as fresh rather than underflow
	}
	s := d / time.Second
	if s >= time.Duration(e.ttl) {
		return 0, true
	}
	return uint32(s), false
}

// cache is a TTL-respecting LRU over entries, bounded in count and in
// packed bytes. get does not allocate.
type cache struct {
	maxEntries, maxBytes int

	mu    sync.Mutex
	m     map[cacheKey]*entry
	bytes int
	lru   entry // sentinel: lru.next is the most recently used
}

func newCache(maxEntries int) *cache {
	c := &cache{
		maxEntries: maxEntries,
		maxBytes:   maxEntries * 1024,
		m:          make(map[cacheKey]*entry),
	}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// get returns the live entry for k and its age; an expired entry is dropped.
func (c *cache) get(k cacheKey, now time.Time) (*entry, uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[k]
	if e == nil {
		return nil, 0, false
	}
	age, expired := e.age(now)
	if expired {
		c.removeLocked(e)
		return nil, 0, false
	}
	c.unlinkLocked(e)
	c.pushFrontLocked(e)
	return e, age, true
}

// put stores e, replacing any entry for the same key and evicting the least
// recently used entries beyond the bounds.
func (c *cache) put(e *entry) {
	if e.ttl == 0 || len(e.wire) > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[e.key]; old != nil {
		c.removeLocked(old)
	}
	c.m[e.key] = e
	c.bytes += len(e.wire)
	c.pushFrontLocked(e)
	for len(c.m) > c.maxEntries || c.bytes > c.maxBytes {
		c.removeLocked(c.lru.prev)
	}
}

// len returns the number of entries, live or expired but not yet dropped.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *cache) removeLocked(e *entry) {
	c.unlinkLocked(e)
	delete(c.m, e.key)
	c.bytes -= len(e.wire)
}

func (c *cache) unlinkLocked(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *cache) pushFrontLocked(e *entry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}
