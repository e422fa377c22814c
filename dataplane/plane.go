// Package dataplane is the packet path of an exit node as one object: the
// TUN (opened or adopted), the one wrapper chain, the wireguard-go device
// and its UDP bind, members added, removed and updated across device and
// scheduler with rollback, peer sampling, the fd hand-over to a successor
// process and the rejoin of members after a restart. It is the only place
// where sched meets tunnel.
//
// A packet's way, download (internet → member), top to bottom:
//
//	kernel route → TUN (tunnel.Link)
//	  → health stage "tun-read"               (progress for the watchdog)
//	  → sched.Device                          (per-member, per-flow DRR + CoDel, pacer)
//	  → health stage "wireguard-tun-reader"
//	  → wireguard-go device                   (encrypt, parallel)
//	  → sched bind accounting → health "udp-send" → UDP/443 (tunnel's bind)
//
// Upload (member → internet) is the same chain read bottom to top:
// UDP/443 → "udp-receive" → wireguard-go (decrypt, allowed-IPs check) →
// "wireguard-tun-writer" → sched.Write (never blocks; fair drain) →
// "tun-write" → TUN → kernel forward filter and SNAT (package nat).
//
// Start-up order (Open): take the predecessor's files from the fd store →
// tunnel.OpenLink (TUN + UDP, link configured) → wrap (chain.go) →
// tunnel Start (wireguard-go up) → store the files for a successor. Members
// come next, from the caller (Sync), then Rejoin.
//
// It imports tunnel, sched, members (types), keys and service (health
// stages); it knows nothing of the control API, metrics or the daemon.
package dataplane

import (
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/keys"
	"exitd/sched"
	"exitd/service"
	"exitd/tunnel"
)

// Type aliases let callers use the plane's values without importing sched
// or tunnel (the layering rule: they meet only here).
type (
	// SchedConfig is the scheduler's configuration.
	SchedConfig = sched.Config
	// SchedStats are the scheduler's totals.
	SchedStats = sched.Stats
	// SchedDirStats are one direction's scheduler totals.
	SchedDirStats = sched.DirStats
	// MemberSchedStats are one member's scheduler counters.
	MemberSchedStats = sched.MemberStats
	// MemberDirStats are one member's counters in one direction.
	MemberDirStats = sched.MemberDirStats
	// PeerStats is one peer's session state in the device.
	PeerStats = tunnel.PeerStats
)

// SojournBuckets is the number of buckets of the scheduler's sojourn
// histogram.
const SojournBuckets = len(sched.Histogram{})

// HistogramBound is the upper bound of the scheduler's sojourn histogram
// bucket i.
func HistogramBound(i int) time.Duration { return sched.HistogramBound(i) }

// Config is what the plane needs from the daemon's configuration.
type Config struct {
	Name       string         // TUN name
	MTU        int            // inner MTU
	Port       int            // UDP port members dial
	PrivateKey keys.Key       // the node's identity
	Addrs      []netip.Prefix // gateway addresses with the member prefix length
	Sched      SchedConfig
	// EndpointsPath is where members' last endpoints are kept for rejoin
	// ("" = not kept).
	EndpointsPath string
	// StrictSource answers members only from the address they dialled
	// (tunnel.Options.StrictSource): for nodes sharing a cluster address.
	StrictSource bool
}

// FileStore is systemd's fd store as the plane uses it; *service.Manager
// implements it.
type FileStore interface {
	// StoreFile hands a duplicate of c's descriptor to the store.
	StoreFile(name string, c syscall.Conn) error
	// TakeFiles returns, and hands ownership of, the files a previous
	// process stored under name; they stay in the store.
	TakeFiles(name string) []*os.File
	// RemoveFiles drops every stored file named name.
	RemoveFiles(name string) error
}

// Options are the plane's dependencies.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Store is the fd store; nil means none (no hand-over).
	Store FileStore
	// Health receives the data path's progress stages; nil means none.
	Health *service.Health
	// Device and Bind replace the TUN and the UDP socket (tests: a
	// tuntest.ChannelTUN and a bindtest.ChannelBind); NoUAPI skips the
	// `wg` socket.
	Device tun.Device
	Bind   conn.Bind
	NoUAPI bool
}

// Plane is a running data path.
type Plane struct {
	log     *slog.Logger
	now     func() time.Time
	cfg     Config
	store   FileStore
	tun     *tunnel.Tunnel
	sched   *sched.Device
	sampler sampler
	peerSet peerSet // nil: the tunnel itself (tests inject failures)

	handover atomic.Bool // TUN and UDP are in the fd store: Close leaves the data path

	// epMu guards lastEndpoints (the endpoints last persisted) and
	// epSampleAt (the sample they were last merged from).
	epMu          sync.Mutex
	lastEndpoints map[keys.Key]netip.AddrPort
	epSampleAt    time.Time

	synced    bool                                 // the start's Sync is done (Sync is not concurrent)
	after     func(time.Duration) <-chan time.Time // the rejoin's pauses
	closing   chan struct{}                        // closed by Close: background routines end
	closeOnce sync.Once
	bg        sync.WaitGroup // background routines (the paced rejoin)
}

// Open builds the data path in order (see the package comment). On error
// everything it made is removed.
func Open(cfg Config, opts Options) (*Plane, error) {
	p := &Plane{log: opts.Logger, now: opts.Now, cfg: cfg, store: opts.Store, after: time.After, closing: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	to := tunnel.Options{
		Name: cfg.Name, MTU: cfg.MTU, Port: cfg.Port, PrivateKey: cfg.PrivateKey, Addrs: cfg.Addrs,
		Logger: p.log, Device: opts.Device, Bind: opts.Bind, NoUAPI: opts.NoUAPI,
		StrictSource: cfg.StrictSource,
	}
	p.takeFiles(&to)
	link, err := tunnel.OpenLink(to)
	if err != nil {
		return nil, err
	}
	c, err := newChain(link.TUN(), link.Bind(), cfg.Sched, opts.Health, p.log, p.now)
	if err != nil {
		link.Close()
		return nil, err
	}
	t, err := link.Start(c.tun, c.bind)
	if err != nil {
		return nil, err
	}
	p.tun, p.sched = t, c.sched
	p.storeFiles()
	return p, nil
}

// Close stops the device and removes the TUN (with the files stored, the
// fd store keeps the TUN and sockets alive for the successor). Idempotent.
func (p *Plane) Close() error {
	p.closeOnce.Do(func() { close(p.closing) })
	p.bg.Wait()
	return p.tun.Close()
}

// HandingOver reports whether the TUN and UDP sockets are in the fd store,
// so stopping must leave the rest of the data path (nftables, conntrack)
// to a successor.
func (p *Plane) HandingOver() bool { return p.handover.Load() }

// SetSchedConfig applies a new scheduler configuration in place.
func (p *Plane) SetSchedConfig(c SchedConfig) error { return p.sched.SetConfig(c) }

// SchedStats are the scheduler's totals.
func (p *Plane) SchedStats() SchedStats { return p.sched.Stats() }

// ForEachSchedMember calls fn with each scheduler member's counters.
func (p *Plane) ForEachSchedMember(fn func(id uint32, st MemberSchedStats)) {
	p.sched.ForEachMember(fn)
}

// LimitsEnforced reports whether member rate caps are applied: the srr
// scheduler enforces them; fifo, kept for A/B measurement, ignores them.
func LimitsEnforced(c SchedConfig) bool { return c.Discipline != "fifo" }

// peers is the device's peer table (overridable in tests).
func (p *Plane) peers() peerSet {
	if p.peerSet != nil {
		return p.peerSet
	}
	return p.tun
}
