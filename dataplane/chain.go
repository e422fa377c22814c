package dataplane

import (
	"log/slog"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/sched"
	"exitd/service"
)

// chain is the one wrapper chain between the link and wireguard-go, built
// in one place and read top to bottom (device side last):
//
//	TUN:  raw → health(tun-read, tun-write) → sched → health(wireguard-tun-reader, wireguard-tun-writer) → wireguard-go
//	bind: raw → health(udp-send, udp-receive) → sched accounting → wireguard-go
type chain struct {
	tun   tun.Device
	bind  conn.Bind
	sched *sched.Device
}

// newChain wraps raw and bind. With a nil health the progress stages are
// left out.
func newChain(raw tun.Device, bind conn.Bind, cfg sched.Config, health *service.Health, log *slog.Logger, now func() time.Time) (chain, error) {
	var c chain
	var inner tun.Device = raw
	if health != nil {
		inner = watchTUN(raw, health.Stage("tun-read"), health.Stage("tun-write"))
		bind = &watchedBind{Bind: bind, send: health.Stage("udp-send"), recv: health.Stage("udp-receive")}
	}
	d, err := sched.NewDevice(inner, cfg, sched.Options{Logger: log, Now: now})
	if err != nil {
		return chain{}, err
	}
	c.sched = d
	c.tun = d
	if health != nil {
		c.tun = watchTUN(d, health.Stage("wireguard-tun-reader"), health.Stage("wireguard-tun-writer"))
	}
	c.bind = d.WrapBind(bind)
	return c, nil
}

// watchedTUN marks a tun.Device's reader busy from the return of Read to
// the next call (it is working on what it read) and writers busy inside
// Write.
type watchedTUN struct {
	tun.Device
	read, write *service.Stage
	reading     atomic.Bool
}

func watchTUN(d tun.Device, read, write *service.Stage) *watchedTUN {
	return &watchedTUN{Device: d, read: read, write: write}
}

// Read is called by one goroutine at a time (the device's reader).
func (w *watchedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if w.reading.Swap(false) {
		w.read.Idle()
	}
	n, err := w.Device.Read(bufs, sizes, offset)
	if err == nil {
		w.reading.Store(true)
		w.read.Busy()
	}
	return n, err
}

// Write may be called concurrently.
func (w *watchedTUN) Write(bufs [][]byte, offset int) (int, error) {
	w.write.Busy()
	defer w.write.Idle()
	return w.Device.Write(bufs, offset)
}

// watchedBind marks sends busy while they run and each receive function
// busy between returning packets and being called again.
type watchedBind struct {
	conn.Bind
	send, recv *service.Stage
}

func (b *watchedBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := b.Bind.Open(port)
	for i, fn := range fns {
		fns[i] = b.watchReceive(fn)
	}
	return fns, p, err
}

func (b *watchedBind) watchReceive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	var busy atomic.Bool // one goroutine calls fn; atomic for the race detector's peace
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		if busy.Swap(false) {
			b.recv.Idle()
		}
		n, err := fn(packets, sizes, eps)
		if err == nil {
			busy.Store(true)
			b.recv.Busy()
		}
		return n, err
	}
}

func (b *watchedBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.send.Busy()
	defer b.send.Idle()
	return b.Bind.Send(bufs, ep)
}
