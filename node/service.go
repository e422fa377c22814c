package node

/* systemd integration of the node (the unit is packaging/exitd.service);
   the fd hand-over and the rejoin are the data plane's (dataplane/handover.go).

   running: routineService, every serviceTick:
              STATUS= members connected and throughput
              members' endpoints persisted when they changed
              WATCHDOG=1 only while Health passes: nftables table present
              and every data-path stage (TUN read/write, UDP send/receive,
              wireguard-go's TUN reader) makes progress
   stop:    with the files stored, the nftables table, member conntrack and
            (through the store) the TUN stay for the next process; `exitd
            cleanup` (ExecStopPost) removes them when no restart follows.
*/

import (
	"context"
	"errors"
	"fmt"
	"time"

	"exitd/control"
	"exitd/dataplane"
	"exitd/keys"
	"exitd/service"
	"exitd/units"
)

// Service is the service manager as the node uses it: the fd store (for
// the data plane) and the watchdog; *service.Manager implements it. All
// methods must be no-ops (or return an error) without a manager.
type Service interface {
	dataplane.FileStore
	// WatchdogInterval is WatchdogSec; 0 when the watchdog is off.
	WatchdogInterval() time.Duration
}

var _ Service = (*service.Manager)(nil)

// serviceTick is how often STATUS and the persisted endpoints are refreshed.
const serviceTick = 2 * time.Second

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

// serviceStatus is the STATUS line: members connected and throughput.
func (n *Node) serviceStatus(r *rates) string {
	s := n.summary()
	r.update(n.now(), s.rx, s.tx)
	line := fmt.Sprintf("%d/%d members connected, down %s, up %s", s.connected, s.total, units.FormatBitRate(r.down), units.FormatBitRate(r.up))
	if !s.natPresent {
		line += ", NFTABLES TABLE MISSING"
	}
	return line
}

// summaryFigures are the node's headline figures.
type summaryFigures struct {
	connected, total int
	rx, tx           uint64
	natPresent       bool
}

// summary is what STATUS= and the cluster record show: one peer sample
// (shared with every reader for 100 ms) and the table's presence — not the
// full Status, which walks the conntrack table and copies the registry.
func (n *Node) summary() summaryFigures {
	s := summaryFigures{total: n.reg.Len()}
	now := n.now()
	for _, ps := range n.plane.BackgroundSample().Cur {
		s.rx += ps.RxBytes
		s.tx += ps.TxBytes
		if control.Connected(ps.LastHandshake, now) {
			s.connected++
		}
	}
	if n.nat != nil {
		s.natPresent, _ = n.nat.Present()
	}
	return s
}

// healthLimit is how long a data-path stage may stay busy: a third of
// WatchdogSec, between 1 s and 10 s.
func healthLimit(watchdog time.Duration) time.Duration {
	return min(max(watchdog/3, time.Second), 10*time.Second)
}

// setupHealth registers the checks; the data plane adds its stages.
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
			n.persistEndpoints(true)
			return
		case <-wdTick:
			n.watchdog()
		case <-status.C:
			n.notify.Notify("STATUS=" + n.serviceStatus(&r))
			n.persistEndpoints(false)
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

// persistEndpoints saves members' endpoints for the next start's rejoin;
// final at stop.
func (n *Node) persistEndpoints(final bool) {
	n.plane.PersistEndpoints(func(k keys.Key) bool {
		_, err := n.reg.Get(k.String())
		return err == nil
	}, final)
}
