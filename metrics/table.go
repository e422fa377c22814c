package metrics

/* Table turns the node's raw per-member counters into what operators read:

   refresh (at most once per MinInterval, under mu):
     Source.ForEachMember → per member: deltas against the previous refresh
       (a counter that went down was reset: the delta is its new value)
       → monotonic node totals (bytes, drops, CE marks, sojourn histogram)
       → rate over the window, session state, queue delay estimate
     → an immutable Snapshot that collectors, top and the sampler share.

   Session states (ActiveWithin = 15 s, SessionWithin = 3 min):

     offline ──handshake bytes arrive──▶ handshaking ──handshake done──▶ idle
        ▲                                                      │  ▲
        └──────── no handshake for SessionWithin ──────────────┘  │ no data for
                                                    data moved ▼  │ ActiveWithin
                                                              active
*/

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"exitd/members"
)

// SojournBuckets is the number of sojourn-time histogram buckets a source
// reports per member and direction (the scheduler's log2 buckets).
const SojournBuckets = 16

// DirCounters are one member's scheduler counters in one direction; all
// are cumulative except QueuedBytes and QueuedPackets.
type DirCounters struct {
	SentPackets, SentBytes     uint64
	OverflowDrops, CoDelDrops  uint64
	CEMarks                    uint64
	QueuedBytes, QueuedPackets int64
	Sojourn                    [SojournBuckets]uint64
}

// MemberCounters is one member's raw state at one instant.
type MemberCounters struct {
	ID         uint32
	Label      string
	PublicKey  string // base64
	AllowedIPs string // "10.99.0.2/32,fd00:99::2/128"
	// Session figures from WireGuard: RxBytes received from the member,
	// TxBytes sent to it (the device's counters; reset when the peer is
	// re-added).
	RxBytes, TxBytes uint64
	LastHandshake    time.Time
	// Scheduler figures: Down toward the member, Up from it.
	Down, Up DirCounters
}

// Source yields every member's counters. ForEachMember may be expensive (a
// full device dump); the Table calls it at most once per MinInterval and
// never concurrently. fn must not retain the pointer.
type Source interface {
	ForEachMember(fn func(*MemberCounters)) error
}

// State is a member's session state.
type State uint8

// States, in the order operators care about.
const (
	Offline     State = iota // no session and nothing received lately
	Handshaking              // no session, but handshake messages arrive
	Idle                     // a session, no data lately (keepalives only)
	Active                   // a session moving data
)

var stateNames = [...]string{"offline", "handshaking", "idle", "active"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// MemberView is a member as the table last saw it.
type MemberView struct {
	ID                              uint32
	Label, PublicKey, AllowedIPs    string
	State                           State
	LastHandshake                   time.Time
	RxBytes, TxBytes                uint64  // device counters (see MemberCounters)
	RxRate, TxRate                  float64 // bits/s over the last window
	QueuedBytes                     int64   // both directions, now
	QueueDelay                      time.Duration
	Drops                           uint64 // scheduler drops, both directions, cumulative
	DropRate                        float64
	DownOverflow, DownCoDel, DownCE uint64
	UpOverflow, UpCoDel, UpCE       uint64
}

// Rate is RxRate + TxRate.
func (v *MemberView) Rate() float64 { return v.RxRate + v.TxRate }

// Totals are node-wide counters made monotonic: sums of per-member
// increments since the table was created, so removing a member or
// re-adding a peer never makes them go down.
type Totals struct {
	RxBytes, TxBytes             uint64 // WireGuard bytes from / to members
	Down, Up                     DirTotals
	SojournDown, SojournUp       [SojournBuckets]uint64
	SojournSumDown, SojournSumUp float64 // seconds, estimated from bucket midpoints
}

// DirTotals are one direction's monotonic scheduler counters.
type DirTotals struct {
	SentPackets, SentBytes    uint64
	OverflowDrops, CoDelDrops uint64
	CEMarks                   uint64
}

// Snapshot is the table after one refresh. It is never modified.
type Snapshot struct {
	At     time.Time
	Window time.Duration // since the previous refresh; 0 on the first
	// Members in descending order of Rate (ties: label).
	Members []MemberView
	// Count by state; Configured is len(Members).
	Configured, Active, Idle, Handshaking, Offline int
	Totals                                         Totals
	// RefreshCost is how long the refresh took (source included).
	RefreshCost time.Duration
}

// Sessions is the number of members with a session (active + idle).
func (s *Snapshot) Sessions() int { return s.Active + s.Idle }

// TableOptions configure NewTable.
type TableOptions struct {
	// MinInterval is the youngest snapshot that is reused instead of
	// refreshed; default 1 s.
	MinInterval time.Duration
	// ActiveWithin: data moved this recently makes a session active;
	// received bytes this recently make a member without a session
	// handshaking. Default 15 s.
	ActiveWithin time.Duration
	// SessionWithin: a handshake this recent means a live session
	// (WireGuard rekeys every 2 minutes and rejects keys after 3).
	// Default 3 min.
	SessionWithin time.Duration
	// SojournBounds are the buckets' upper bounds (for the sum estimate);
	// nil leaves the sums zero.
	SojournBounds []time.Duration
	Now           func() time.Time
}

// memberState is what the table remembers of a member between refreshes.
// It holds no pointers, so 20,000 of them cost the collector nothing.
type memberState struct {
	rx, tx   uint64
	down, up DirCounters
	lastData time.Time // data packets moved (scheduler)
	lastRx   time.Time // anything received (handshakes included)
	seenAt   uint64    // refresh generation
}

// Table keeps the per-member view; see the comment at the top of the file.
type Table struct {
	src  Source
	opts TableOptions

	mu    sync.Mutex // guards everything below; held for a whole refresh
	gen   uint64
	state map[uint32]*memberState
	tot   Totals
	last  *Snapshot
	err   error
}

// NewTable returns a table that refreshes from src on demand.
func NewTable(src Source, o TableOptions) *Table {
	if o.MinInterval <= 0 {
		o.MinInterval = time.Second
	}
	if o.ActiveWithin <= 0 {
		o.ActiveWithin = 15 * time.Second
	}
	if o.SessionWithin <= 0 {
		o.SessionWithin = members.ConnectedWithin
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Table{src: src, opts: o, state: map[uint32]*memberState{}}
}

// Snapshot returns the current view, refreshing it first when the last one
// is older than MinInterval. Concurrent callers share one refresh. When a
// refresh fails the previous snapshot (possibly nil) is returned with the
// error.
func (t *Table) Snapshot() (*Snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.opts.Now()
	if t.last != nil && now.Sub(t.last.At) < t.opts.MinInterval {
		return t.last, t.err
	}
	return t.refreshLocked(now)
}

// Refresh forces a refresh regardless of MinInterval (the sampler uses it
// so its samples are on its own clock).
func (t *Table) Refresh() (*Snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refreshLocked(t.opts.Now())
}

func delta(cur, prev uint64) uint64 {
	if cur < prev {
		return cur // reset: everything counted since is new
	}
	return cur - prev
}

func (t *Table) refreshLocked(now time.Time) (*Snapshot, error) {
	t.gen++
	snap := &Snapshot{At: now}
	var window float64
	if t.last != nil {
		snap.Window = now.Sub(t.last.At)
		window = snap.Window.Seconds()
	}
	views := make([]MemberView, 0, len(t.state))
	err := t.src.ForEachMember(func(c *MemberCounters) {
		st, seen := t.state[c.ID]
		if !seen {
			st = &memberState{}
			t.state[c.ID] = st
		}
		st.seenAt = t.gen
		drx, dtx := delta(c.RxBytes, st.rx), delta(c.TxBytes, st.tx)
		dd := t.addDir(&t.tot.Down, &t.tot.SojournDown, &t.tot.SojournSumDown, &c.Down, &st.down)
		du := t.addDir(&t.tot.Up, &t.tot.SojournUp, &t.tot.SojournSumUp, &c.Up, &st.up)
		t.tot.RxBytes += drx
		t.tot.TxBytes += dtx
		if seen {
			if dd.SentPackets+du.SentPackets > 0 {
				st.lastData = now
			}
			if drx > 0 {
				st.lastRx = now
			}
		}
		v := MemberView{
			ID: c.ID, Label: c.Label, PublicKey: c.PublicKey, AllowedIPs: c.AllowedIPs,
			LastHandshake: c.LastHandshake, RxBytes: c.RxBytes, TxBytes: c.TxBytes,
			QueuedBytes:  c.Down.QueuedBytes + c.Up.QueuedBytes,
			Drops:        c.Down.OverflowDrops + c.Down.CoDelDrops + c.Up.OverflowDrops + c.Up.CoDelDrops,
			DownOverflow: c.Down.OverflowDrops, DownCoDel: c.Down.CoDelDrops, DownCE: c.Down.CEMarks,
			UpOverflow: c.Up.OverflowDrops, UpCoDel: c.Up.CoDelDrops, UpCE: c.Up.CEMarks,
		}
		if seen && window > 0 {
			v.RxRate, v.TxRate = float64(drx)*8/window, float64(dtx)*8/window
			v.DropRate = float64(dd.OverflowDrops+dd.CoDelDrops+du.OverflowDrops+du.CoDelDrops) / window
			// Standing delay of the download queue at the rate it drained.
			if c.Down.QueuedBytes > 0 {
				if r := float64(dd.SentBytes) / window; r > 0 {
					v.QueueDelay = time.Duration(float64(c.Down.QueuedBytes) / r * float64(time.Second))
				} else {
					v.QueueDelay = snap.Window // nothing left the queue this window
				}
			}
		}
		st.rx, st.tx, st.down, st.up = c.RxBytes, c.TxBytes, c.Down, c.Up
		v.State = t.classify(now, c.LastHandshake, st)
		views = append(views, v)
	})
	if err != nil {
		t.err = fmt.Errorf("metrics: read members: %w", err)
		return t.last, t.err
	}
	for id, st := range t.state {
		if st.seenAt != t.gen {
			delete(t.state, id) // removed members: their counts stay in the totals
		}
	}
	slices.SortFunc(views, func(a, b MemberView) int {
		if c := cmp.Compare(b.Rate(), a.Rate()); c != 0 {
			return c
		}
		return cmp.Compare(a.Label, b.Label)
	})
	snap.Members = views
	snap.Configured = len(views)
	for i := range views {
		switch views[i].State {
		case Active:
			snap.Active++
		case Idle:
			snap.Idle++
		case Handshaking:
			snap.Handshaking++
		default:
			snap.Offline++
		}
	}
	snap.Totals = t.tot
	snap.RefreshCost = t.opts.Now().Sub(now)
	t.last, t.err = snap, nil
	return snap, nil
}

// addDir adds one member's increments in one direction to the totals and
// returns them.
func (t *Table) addDir(tot *DirTotals, hist *[SojournBuckets]uint64, sum *float64, cur, prev *DirCounters) DirTotals {
	d := DirTotals{
		SentPackets:   delta(cur.SentPackets, prev.SentPackets),
		SentBytes:     delta(cur.SentBytes, prev.SentBytes),
		OverflowDrops: delta(cur.OverflowDrops, prev.OverflowDrops),
		CoDelDrops:    delta(cur.CoDelDrops, prev.CoDelDrops),
		CEMarks:       delta(cur.CEMarks, prev.CEMarks),
	}
	tot.SentPackets += d.SentPackets
	tot.SentBytes += d.SentBytes
	tot.OverflowDrops += d.OverflowDrops
	tot.CoDelDrops += d.CoDelDrops
	tot.CEMarks += d.CEMarks
	reset := false
	for i := range cur.Sojourn {
		if cur.Sojourn[i] < prev.Sojourn[i] {
			reset = true
			break
		}
	}
	for i, c := range cur.Sojourn {
		n := c
		if !reset {
			n = c - prev.Sojourn[i]
		}
		hist[i] += n
		if n > 0 && i < len(t.opts.SojournBounds) {
			*sum += float64(n) * bucketMid(t.opts.SojournBounds, i)
		}
	}
	return d
}

// bucketMid is a bucket's representative value in seconds: the midpoint
// of its bounds (the last, open bucket counts as its lower bound).
func bucketMid(bounds []time.Duration, i int) float64 {
	lo := time.Duration(0)
	if i > 0 {
		lo = bounds[i-1]
	}
	if i == len(bounds)-1 {
		return lo.Seconds()
	}
	return (lo + bounds[i]).Seconds() / 2
}

func (t *Table) classify(now, handshake time.Time, st *memberState) State {
	live := !handshake.IsZero() && now.Sub(handshake) < t.opts.SessionWithin
	switch {
	case live && !st.lastData.IsZero() && now.Sub(st.lastData) < t.opts.ActiveWithin:
		return Active
	case live:
		return Idle
	case !st.lastRx.IsZero() && now.Sub(st.lastRx) < t.opts.ActiveWithin:
		return Handshaking
	}
	return Offline
}

// Top returns up to n members of s ordered by key (descending), ties by
// label. n <= 0 means all.
func (s *Snapshot) Top(n int, key func(*MemberView) float64) []MemberView {
	out := slices.Clone(s.Members)
	if key != nil {
		slices.SortStableFunc(out, func(a, b MemberView) int {
			if c := cmp.Compare(key(&b), key(&a)); c != 0 {
				return c
			}
			return cmp.Compare(a.Label, b.Label)
		})
	}
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
