package sched

/* Pipeline of the wrapper (download is the heavy direction):

   download (kernel → members):
     real TUN ──Read──▶ RoutineReadInner ──enqueue (downMu)──▶ down queue
       (GSO already split by tun;    (classify by inner dst, swap the
        one batch of BatchSize)       read buffer into a slot: no copy)
     down queue ──Device.Read (wireguard-go's RoutineReadFromTUN)──▶ wireguard-go
       budget = min(pacer tokens at EgressRate, InflightBytes − in flight);
       one copy into wireguard-go's buffer at its offset
     wireguard-go encrypts ──Bind.Send──▶ bindWrapper ──credit──▶ in flight
       (only type-4 data messages are counted; handshake, cookie and
        keepalive messages pass straight through, never delayed)

   upload (members → kernel):
     wireguard-go RoutineSequentialReceiver ──Device.Write──▶ up queue
       (concurrent, one per peer; classify by inner src; one copy; never
        blocks — overflow is a counted drop, as in a qdisc)
     up queue ──RoutineDrain (DRR order, optional IngressRate)──▶ real TUN
       (BatchSize packets per Write, headroom kept for the virtio header)

   Locks: downMu guards the down queue, upMu the up queue, registry.mu the
   member maps (read-locked once per batch, never held while taking a queue
   lock), readMu serializes Read and guards its pacer and staging buffers,
   inflight.mu the debt ring. Order: readMu → downMu; a queue lock is never
   held while calling into the inner device.
*/

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// classifyChunk bounds the per-call classification scratch (on the stack).
const classifyChunk = 128

// maxReadErrors is how many consecutive failed reads of the inner device
// are tolerated (counted, skipped) before the error is handed to Read.
const maxReadErrors = 100

// Options are the injected dependencies of a Device. The zero value is
// usable: no logging, the real clock and a random flow-hash key.
type Options struct {
	// Logger receives lifecycle and error messages, never per-packet ones.
	Logger *slog.Logger
	// Now is the clock; it must be monotonic (time.Now is).
	Now func() time.Time
	// Rand seeds the per-process flow-hash key (SFQ perturbation). nil =
	// math/rand/v2's randomly seeded generator.
	Rand rand.Source
}

// Device is a tun.Device that schedules packets between a real TUN and
// wireguard-go. Read is meant for a single caller (wireguard-go's TUN
// reader) but is safe to call concurrently; Write is safe for concurrent
// use and never blocks. Close is idempotent and safe from any goroutine.
type Device struct {
	inner   tun.Device
	log     *slog.Logger
	now     func() time.Time
	epoch   time.Time
	key     flowKey
	batch   int // inner.BatchSize()
	bufSize int // headroom + inner MTU, rounded
	mtu     int

	cfgMu sync.Mutex // serializes SetConfig
	cfg   atomic.Pointer[params]

	reg *registry

	downMu  sync.Mutex
	down    *queue
	readErr error // sticky error of the inner device, returned by Read

	upMu sync.Mutex
	up   *queue

	// writeMu serializes writes to the inner TUN (drain and bypass); lock
	// order: writeMu, then upMu.
	writeMu sync.Mutex

	readMu    sync.Mutex // serializes Read
	readStage [][]byte   // buffers swapped out of the down queue
	readLens  []int32
	egress    pacer
	readTimer *time.Timer

	infl inflight
	// outer6 is pacer debt in bytes for IPv6 outer headers: added by the
	// bind at each send to an IPv6 endpoint, charged by the next Read.
	outer6 atomic.Int64

	wakeRead  chan struct{} // cap 1: data queued, credit, config
	wakeDrain chan struct{} // cap 1: upload data queued, config
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	innerReadErrors  atomic.Uint64
	innerWriteErrors atomic.Uint64
	oversizeDrops    atomic.Uint64
	upBypassPkts     atomic.Uint64
	upCapped         atomic.Int64 // members with an upload rate cap (no bypass then)
}

var _ tun.Device = (*Device)(nil)

// NewDevice wraps inner and starts RoutineReadInner and RoutineDrain. The
// buffer size of queued packets is fixed from inner's MTU now (at least
// 1500); larger packets read from inner later are truncated by it, larger
// ones written by wireguard-go get an individually allocated buffer.
func NewDevice(inner tun.Device, cfg Config, opts Options) (*Device, error) {
	mtu, err := inner.MTU()
	if err != nil || mtu <= 0 {
		mtu = 1500
	}
	mtu = clampInt(mtu, 576, 65535)
	p, err := cfg.normalize(mtu)
	if err != nil {
		return nil, err
	}
	d := &Device{
		inner:     inner,
		log:       opts.Logger,
		now:       opts.Now,
		batch:     max(inner.BatchSize(), 1),
		bufSize:   headroom + (max(mtu, 1500)+63)&^63,
		mtu:       mtu,
		reg:       newRegistry(),
		wakeRead:  make(chan struct{}, 1),
		wakeDrain: make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.epoch = d.now()
	if opts.Rand != nil {
		d.key = flowKey{opts.Rand.Uint64(), opts.Rand.Uint64(), opts.Rand.Uint64()}
	} else {
		d.key = flowKey{rand.Uint64(), rand.Uint64(), rand.Uint64()}
	}
	d.cfg.Store(&p)
	d.down = newQueue(&p, p.downLimit)
	d.up = newQueue(&p, p.upLimit)
	d.readStage = make([][]byte, 0, d.batch)
	d.readTimer = time.NewTimer(time.Hour)
	d.readTimer.Stop()
	d.egress.configure(p.egressRate, p.burst, p.quantum, 0)
	d.wg.Add(2)
	go d.RoutineReadInner()
	go d.RoutineDrain()
	d.log.Info("sched: started", "discipline", disciplineName(&p), "mtu", mtu,
		"batch", d.batch, "egress_rate", p.egressRate, "ingress_rate", p.ingressRate)
	return d, nil
}

// nanotime is the scheduler clock: ns since NewDevice, monotonic.
func (d *Device) nanotime() int64 { return int64(d.now().Sub(d.epoch)) }

func nudge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (d *Device) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// SetConfig applies cfg at run time. Queued packets are kept, also when
// switching between fifo and srr; lowered limits apply from the next
// enqueue. Only an unknown discipline is an error (nothing changes then).
func (d *Device) SetConfig(cfg Config) error {
	p, err := cfg.normalize(d.mtu)
	if err != nil {
		return err
	}
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	d.cfg.Store(&p)
	d.downMu.Lock()
	d.down.setParams(&p, p.downLimit)
	d.downMu.Unlock()
	d.upMu.Lock()
	d.up.setParams(&p, p.upLimit)
	d.upMu.Unlock()
	nudge(d.wakeRead)
	nudge(d.wakeDrain)
	d.log.Info("sched: config applied", "discipline", disciplineName(&p),
		"egress_rate", p.egressRate, "ingress_rate", p.ingressRate)
	return nil
}

func disciplineName(p *params) string {
	if p.fifo {
		return DisciplineFIFO
	}
	return DisciplineSRR
}

// File returns the inner device's file.
func (d *Device) File() *os.File { return d.inner.File() }

// MTU returns the inner device's MTU.
func (d *Device) MTU() (int, error) { return d.inner.MTU() }

// Name returns the inner device's name.
func (d *Device) Name() (string, error) { return d.inner.Name() }

// Events returns the inner device's events (closed by its Close).
func (d *Device) Events() <-chan tun.Event { return d.inner.Events() }

// BatchSize returns the inner device's batch size.
func (d *Device) BatchSize() int { return d.batch }

// Close stops both routines and closes the inner device. It is idempotent
// and safe to call concurrently; later calls return the first result.
// Read and Write return os.ErrClosed afterwards.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.closed)
		d.closeErr = d.inner.Close()
		d.wg.Wait()
		d.log.Info("sched: closed")
	})
	return d.closeErr
}

// errClosedInner reports errors that mean the inner device is gone.
func errClosedInner(err error) bool {
	return errors.Is(err, os.ErrClosed)
}
