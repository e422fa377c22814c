package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"exitd/internal/testenv"
)

// Options configure a lab. The zero value is a lab with one member and no
// shaping.
type Options struct {
	// Members is the number of member namespaces (1 if zero).
	Members int
	// Exits is the number of exit namespaces (1 if zero, at most
	// MaxExits): a cluster's nodes. Each exit has its own underlay port on
	// the hub, WAN link to the router and LAN link to the mgmt host, with
	// the addresses of ExitAddrs; shaping and OffloadsOff apply to every
	// exit's underlay.
	Exits int
	// ExtraMemberAddrs adds that many /32 addresses from ExtraPrefix4 to
	// member 1, for a load generator that needs many source addresses.
	ExtraMemberAddrs int
	// DownRate shapes the exit's underlay egress (towards members) with a
	// TBF, in bits per second; 0 means unshaped.
	DownRate uint64
	// UpRate shapes the hub's port towards the exit (members' upload), in
	// bits per second; 0 means unshaped.
	UpRate uint64
	// Burst is the TBF bucket in bytes: at least 16 KiB (a small bucket
	// cannot reach the rate on a veth). 0 picks max(16 KiB, 4 ms at rate).
	Burst int
	// QueueLatency bounds the TBF queue as time at the rate (tc "latency");
	// 0 means 50 ms.
	QueueLatency time.Duration
	// OffloadsOff turns GRO, GSO and TSO off on both ends of the
	// exit–hub veth (the bottleneck), so shaping sees wire-size packets.
	OffloadsOff bool
	// Prefix names the lab's namespaces (Prefix+"-exit", ...); empty picks
	// "nl" and 6 random hex digits. At most 8 characters.
	Prefix string
	// Logger receives build and teardown steps at debug level; nil is quiet.
	Logger *slog.Logger

	failAt string // test hook: New fails after this build step
}

// Lab is a built topology. The NS fields are fixed after New returns.
type Lab struct {
	Prefix   string
	Exit     *NS
	Internet *NS
	Mgmt     *NS
	Hub      *NS
	Members  []*NS // Members[i] is member i+1 (198.18.1.(i+1))
	Exits    []*NS // Exits[0] is Exit; Exits[i] has ExitAddrs(i)

	log    *slog.Logger
	tr     *tracker
	router *NS   // between the exit's WAN and the internet host
	all    []*NS // every namespace created, in creation order

	closeOnce sync.Once
	closeErr  error
}

// MinBurst is the smallest TBF bucket accepted: on a veth a 1540-byte
// bucket reaches only 67 of 100 Mbit/s.
const MinBurst = 16 << 10

const (
	defaultLatency    = 50 * time.Millisecond // TBF queue bound
	defaultBurstSlice = 4 * time.Millisecond  // default bucket: this long at rate
	maxPrefixLen      = 8                     // keeps namespace names short
)

// New builds a lab. On any error it tears down whatever it built and
// returns the error; the host's root namespace is never touched.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := opts.Prefix
	if prefix == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("netlab: random prefix: %w", err)
		}
		prefix = "nl" + hex.EncodeToString(b[:])
	}
	l := &Lab{Prefix: prefix, log: log.With("lab", prefix), tr: newTracker()}
	if err := l.build(ctx, opts); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return l, nil
}

// NewT builds a lab for a test: it calls testenv.RequireRoot, fails t on
// error and closes the lab in t.Cleanup.
func NewT(t testing.TB, opts Options) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	l, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: close: %v", err)
		}
	})
	return l
}

// NSes returns every namespace of the lab (exit, internet, the WAN router,
// mgmt, hub, members, then exits 1, 2, ...).
func (l *Lab) NSes() []*NS { return append([]*NS(nil), l.all...) }

// Close stops HTTP servers and processes started through the lab, kills any
// other process left in a lab namespace, and deletes every namespace (and
// with it every lab link). Every step runs even when an earlier one fails;
// the errors are joined. Calling Close again returns the first result.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		errs := []error{l.tr.close()}
		for i := len(l.all) - 1; i >= 0; i-- {
			errs = append(errs, l.all[i].close())
		}
		l.closeErr = errors.Join(errs...)
		l.log.Debug("netlab: closed", "err", l.closeErr)
	})
	return l.closeErr
}

func (o *Options) validate() error {
	if o.Members == 0 {
		o.Members = 1
	}
	if o.Exits == 0 {
		o.Exits = 1
	}
	switch {
	case o.Members < 0 || o.Members > MaxMembers:
		return fmt.Errorf("netlab: options: members %d out of range [1, %d]", o.Members, MaxMembers)
	case o.Exits < 0 || o.Exits > MaxExits:
		return fmt.Errorf("netlab: options: exits %d out of range [1, %d]", o.Exits, MaxExits)
	case o.ExtraMemberAddrs < 0 || o.ExtraMemberAddrs > MaxExtraAddrs:
		return fmt.Errorf("netlab: options: extra member addresses %d out of range [0, %d]", o.ExtraMemberAddrs, MaxExtraAddrs)
	case o.Burst != 0 && o.Burst < MinBurst:
		return fmt.Errorf("netlab: options: burst %d bytes below %d (a veth TBF cannot reach its rate)", o.Burst, MinBurst)
	case o.QueueLatency < 0:
		return fmt.Errorf("netlab: options: negative queue latency %v", o.QueueLatency)
	case len(o.Prefix) > maxPrefixLen:
		return fmt.Errorf("netlab: options: prefix %q longer than %d", o.Prefix, maxPrefixLen)
	}
	return nil
}

// burstFor returns the TBF bucket for rate bits/s.
func (o *Options) burstFor(rate uint64) int {
	if o.Burst != 0 {
		return o.Burst
	}
	b := int(rate / 8 * uint64(defaultBurstSlice) / uint64(time.Second))
	return max(b, MinBurst)
}

func (l *Lab) nsName(role string) string { return l.Prefix + "-" + role }

func memberRole(i int) string { return "member" + strconv.Itoa(i) }

// exitRole is exit i's role: "exit" for exit 0 (the namespace every
// single-exit lab has), "exit1", "exit2", ... for the others.
func exitRole(i int) string {
	if i == 0 {
		return "exit"
	}
	return "exit" + strconv.Itoa(i)
}
