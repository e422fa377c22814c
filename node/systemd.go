package node

/* systemd integration of the node (the unit is packaging/exitd.service):

   start:   take the TUN and UDP sockets the previous process left in the fd
            store (LISTEN_FDS) → tunnel adopts them → store the current ones
            (FDSTORE=1) → rejoin: point peers at their persisted endpoints
            and start handshakes at once
   running: routineService, every serviceTick:
              STATUS= members connected and throughput
              endpoints.json in state_dir when members' endpoints changed
              WATCHDOG=1 only while Health passes: nftables table present
              and every data-path stage (TUN read/write, UDP send/receive,
              wireguard-go's TUN reader) makes progress
   stop:    with the files stored, the nftables table, member conntrack and
            (through the store) the TUN stay for the next process; `exitd
            cleanup` (ExecStopPost) removes them when no restart follows.
*/

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"exitd/keys"
	"exitd/service"
	"exitd/tunnel"
)

// Service is the service manager as the node uses it;
// *service.Manager implements it. All methods must be no-ops (or return
// an error) without a manager.
type Service interface {
	// StoreFile hands a duplicate of c's descriptor to the fd store.
	StoreFile(name string, c syscall.Conn) error
	// TakeFiles returns, and hands ownership of, the files a previous
	// process stored under name.
	TakeFiles(name string) []*os.File
	// WatchdogInterval is WatchdogSec; 0 when the watchdog is off.
	WatchdogInterval() time.Duration
}

var _ Service = (*service.Manager)(nil)

// serviceTick is how often STATUS and the persisted endpoints are refreshed.
const serviceTick = 2 * time.Second

// endpointsFile (in state_dir) holds members' last endpoints for Rejoin.
const endpointsFile = "endpoints.json"

// adoptFiles puts the previous process's TUN and UDP sockets into o.
func (n *Node) adoptFiles(o *tunnel.Options) {
	if n.svc == nil {
		return
	}
	if fs := n.svc.TakeFiles(tunnel.HandoverTUN); len(fs) > 0 {
		o.TUN = fs[0]
		for _, f := range fs[1:] {
			f.Close()
		}
	}
	o.UDP = append(n.svc.TakeFiles(tunnel.HandoverUDP4), n.svc.TakeFiles(tunnel.HandoverUDP6)...)
}

// storeFiles puts the tunnel's TUN and UDP sockets into the fd store. Only
// when all of them are stored does the node hand over at stop.
func (n *Node) storeFiles() {
	if n.svc == nil {
		return
	}
	var errs []error
	for name, c := range n.tun.Handover() {
		if err := n.svc.StoreFile(name, c); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	switch {
	case err == nil:
		n.handover.Store(true)
		n.log.Info("TUN and UDP sockets are in systemd's fd store; a restart keeps members connected")
	case errors.Is(err, service.ErrNoManager):
	default:
		n.log.Warn("fd store refused the TUN or UDP socket; a restart will drop sessions (FileDescriptorStoreMax?)", "err", err)
	}
}

// startHandover stores the files and rejoins members; it never fails the start.
func (n *Node) startHandover() (func(), error) {
	n.storeFiles()
	n.rejoin()
	return nil, nil
}

// handingOver reports whether stop must leave the data path to a successor.
func (n *Node) handingOver() bool { return n.handover.Load() }

// endpointState is endpoints.json.
type endpointState struct {
	Endpoints map[string]string `json:"endpoints"` // public key (base64) → ip:port
}

func (n *Node) endpointsPath() string { return filepath.Join(n.cfg.StateDir, endpointsFile) }

// loadEndpoints reads the persisted endpoints; a missing file is empty.
func loadEndpoints(path string) (map[keys.Key]netip.AddrPort, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: endpoints: %w", err)
	}
	var st endpointState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("node: endpoints %s: %w", path, err)
	}
	out := make(map[keys.Key]netip.AddrPort, len(st.Endpoints))
	for k, v := range st.Endpoints {
		key, kerr := keys.Parse(k)
		ap, aerr := netip.ParseAddrPort(v)
		if kerr != nil || aerr != nil {
			continue // one bad entry must not cost the others
		}
		out[key] = ap
	}
	return out, nil
}

// saveEndpoints writes eps atomically (temp file + rename), mode 0600.
func saveEndpoints(path string, eps map[keys.Key]netip.AddrPort) error {
	st := endpointState{Endpoints: make(map[string]string, len(eps))}
	for k, v := range eps {
		st.Endpoints[k.String()] = v.String()
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("node: endpoints: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("node: endpoints: %w", err)
	}
	return nil
}

// currentEndpoints are the endpoints the device knows now.
func (n *Node) currentEndpoints() map[keys.Key]netip.AddrPort {
	out := map[keys.Key]netip.AddrPort{}
	for k, s := range n.peerStats() {
		if ap, err := netip.ParseAddrPort(s.Endpoint); err == nil {
			out[k] = ap
		}
	}
	return out
}

// rejoin starts handshakes to the members' last known endpoints.
func (n *Node) rejoin() {
	eps, err := loadEndpoints(n.endpointsPath())
	if err != nil {
		n.log.Warn("cannot read members' last endpoints; they reconnect on their own timers", "err", err)
		return
	}
	n.mu.Lock()
	want := map[keys.Key]netip.AddrPort{}
	for _, m := range n.reg.List() {
		if ep, ok := eps[m.PublicKey]; ok && !m.Disabled {
			want[m.PublicKey] = ep
		}
	}
	n.mu.Unlock()
	if len(want) == 0 {
		return
	}
	if err := n.tun.Rejoin(want); err != nil {
		n.log.Warn("rejoin: some members skipped", "err", err)
	}
	n.lastEndpoints = want
	n.log.Info("started handshakes to members' last endpoints", "members", len(want))
}

// persistEndpoints saves the endpoints when they changed since last time.
func (n *Node) persistEndpoints() {
	eps := n.currentEndpoints()
	merged := maps.Clone(n.lastEndpoints)
	if merged == nil {
		merged = map[keys.Key]netip.AddrPort{}
	}
	maps.Copy(merged, eps) // members not seen since start keep their old endpoint
	for k := range merged {
		if _, err := n.reg.Get(k.String()); err != nil {
			delete(merged, k) // removed members
		}
	}
	if maps.Equal(merged, n.lastEndpoints) {
		return
	}
	if err := saveEndpoints(n.endpointsPath(), merged); err != nil {
		n.log.Warn("cannot persist members' endpoints", "err", err)
		return
	}
	n.lastEndpoints = merged
}

// rates turns cumulative byte counters into throughput between ticks.
type rates struct {
	at       time.Time
	rx, tx   uint64
	down, up float64 // bit/s (down = sent to members)
}

func (r *rates) update(now time.Time, rx, tx uint64) {
	if !r.at.IsZero() && now.After(r.at) && rx >= r.rx && tx >= r.tx {
		d := now.Sub(r.at).Seconds()
		r.up, r.down = float64(rx-r.rx)*8/d, float64(tx-r.tx)*8/d
	}
	r.at, r.rx, r.tx = now, rx, tx
}

func formatRate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}

// serviceStatus is the STATUS line: members connected and throughput.
func (n *Node) serviceStatus(r *rates) string {
	s, err := backend{n}.Status(context.Background())
	if err != nil {
		return "status unavailable"
	}
	r.update(n.now(), s.RxBytes, s.TxBytes)
	line := fmt.Sprintf("%d/%d members connected, down %s, up %s", s.MembersConnected, s.MembersTotal, formatRate(r.down), formatRate(r.up))
	if !s.NATPresent {
		line += ", NFTABLES TABLE MISSING"
	}
	return line
}

// healthLimit is how long a data-path stage may stay busy: a third of
// WatchdogSec, between 1 s and 10 s.
func healthLimit(watchdog time.Duration) time.Duration {
	return min(max(watchdog/3, time.Second), 10*time.Second)
}

// setupHealth registers the checks; stages are added as the tunnel wraps.
func (n *Node) setupHealth() {
	var wd time.Duration
	if n.svc != nil {
		wd = n.svc.WatchdogInterval()
	}
	n.health = service.NewHealth(healthLimit(wd), n.now)
	n.health.AddCheck("nftables", func() error {
		ok, err := n.nat.Present()
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("table exitd is missing")
		}
		return nil
	})
}

// routineService refreshes STATUS and the persisted endpoints and pings
// the watchdog while the data path is healthy, until ctx ends; then it
// saves the endpoints a last time.
func (n *Node) routineService(ctx context.Context) {
	var r rates
	n.serviceStatus(&r) // baseline for throughput
	status := time.NewTicker(serviceTick)
	defer status.Stop()
	var wdTick <-chan time.Time
	if n.svc != nil {
		if p := service.WatchdogTick(n.svc.WatchdogInterval()); p > 0 {
			t := time.NewTicker(p)
			defer t.Stop()
			wdTick = t.C
			n.watchdog()
		}
	}
	for {
		select {
		case <-ctx.Done():
			n.persistEndpoints()
			return
		case <-wdTick:
			n.watchdog()
		case <-status.C:
			n.notify.Notify("STATUS=" + n.serviceStatus(&r))
			n.persistEndpoints()
		}
	}
}

func (n *Node) watchdog() {
	if err := n.health.Check(); err != nil {
		n.log.Error("data path unhealthy: not pinging the watchdog", "err", err)
		return
	}
	n.notify.Notify("WATCHDOG=1")
}

// healthWrapTUN is the tunnel's WrapTUN: the scheduler between the TUN and
// wireguard-go, with progress stages on both of its sides.
func (n *Node) healthWrapTUN(raw tun.Device) (tun.Device, error) {
	if n.health == nil {
		n.setupHealth()
	}
	inner := watchTUN(raw, n.health.Stage("tun-read"), n.health.Stage("tun-write"))
	d, err := n.wrapTUN(inner)
	if err != nil {
		return nil, err
	}
	return watchTUN(d, n.health.Stage("wireguard-tun-reader"), n.health.Stage("wireguard-tun-writer")), nil
}

// healthWrapBind is the tunnel's WrapBind: the scheduler's accounting plus
// progress stages on sends and receives.
func (n *Node) healthWrapBind(b conn.Bind) conn.Bind {
	if n.health == nil {
		n.setupHealth()
	}
	return &watchedBind{Bind: n.wrapBind(b), send: n.health.Stage("udp-send"), recv: n.health.Stage("udp-receive")}
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
