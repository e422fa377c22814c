package sched

import "sync"

// Debt epochs: 2^20 ns ≈ 1.05 ms each, 32 of them ≈ 33.5 ms ≥ maxExpire.
const (
	epochShift = 20
	debtRing   = 32
)

// inflight is the BQL-like bound on download bytes handed to wireguard-go
// but not yet sent by the bind. Debt is recorded per epoch; a send pays
// the oldest debt first; debt older than the expiry is forgiven, because
// wireguard-go may never send what it read (no session yet, packets
// staged while handshaking, no peer for the address). So a leak lasts at
// most one expiry and Read can never stall on it forever.
type inflight struct {
	mu       sync.Mutex
	ring     [debtRing]debt
	oldest   int64 // first epoch that may hold debt
	newest   int64 // last epoch debt was added in
	total    int64 // bytes owed
	forgiven uint64
}

type debt struct {
	epoch int64
	bytes int64
}

// expireLocked forgives debt from epochs that ended more than expire ago.
func (f *inflight) expireLocked(now, expire int64) {
	cutoff := (now - expire) >> epochShift // epochs < cutoff are stale
	if cutoff <= f.oldest {
		return
	}
	if cutoff-f.oldest >= debtRing {
		for i := range f.ring {
			if f.ring[i].bytes > 0 {
				f.forgiven += uint64(f.ring[i].bytes)
			}
			f.ring[i] = debt{}
		}
		f.total = 0
	} else {
		for e := f.oldest; e < cutoff; e++ {
			d := &f.ring[e&(debtRing-1)]
			if d.epoch == e && d.bytes > 0 {
				f.forgiven += uint64(d.bytes)
				f.total -= d.bytes
				d.bytes = 0
			}
		}
	}
	f.oldest = cutoff
}

// available returns how many bytes may be handed out now under limit, and
// if none, how long until the oldest debt expires.
func (f *inflight) available(now, limit, expire int64) (avail, waitNs int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expireLocked(now, expire)
	avail = limit - f.total
	if avail > 0 {
		return avail, 0
	}
	for e := f.oldest; e <= f.newest; e++ {
		if d := f.ring[e&(debtRing-1)]; d.epoch == e && d.bytes > 0 {
			return avail, max(((e+1)<<epochShift)+expire-now, 1)
		}
	}
	return avail, 1
}

// add records bytes handed out at now.
func (f *inflight) add(now, bytes, expire int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expireLocked(now, expire)
	e := now >> epochShift
	d := &f.ring[e&(debtRing-1)]
	if d.epoch != e {
		if d.bytes > 0 { // only if expire > ring span; defensive
			f.forgiven += uint64(d.bytes)
			f.total -= d.bytes
		}
		*d = debt{epoch: e}
	}
	d.bytes += bytes
	f.total += bytes
	f.newest = max(f.newest, e)
	if f.oldest > e {
		f.oldest = e
	}
}

// credit pays bytes sent by the bind, oldest debt first. Credit beyond the
// debt (padding, or debt already forgiven) is discarded.
func (f *inflight) credit(bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for e := f.oldest; bytes > 0 && e <= f.newest; e++ {
		d := &f.ring[e&(debtRing-1)]
		if d.epoch != e || d.bytes == 0 {
			continue
		}
		pay := min(d.bytes, bytes)
		d.bytes -= pay
		f.total -= pay
		bytes -= pay
	}
}

// load returns the bytes owed and the total forgiven so far.
func (f *inflight) load() (int64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total, f.forgiven
}
