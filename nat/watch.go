package nat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
)

// Watch keeps our table as exitd applied it until ctx ends. When someone
// else deletes it (`nft flush ruleset`, `systemctl reload nftables`, `nft
// delete table`) or edits it (flushes a chain, deletes a rule or a set
// element, changes a policy, marks the table dormant), Watch re-applies the
// last config passed to Apply, counts it (Restorations) and reports the
// outcome through onEvent (nil on success). Nothing happens before the
// first Apply or after Remove.
//
// A check dumps the whole table and compares it, in a canonical form (see
// snapshot.go), with the dump taken right after Apply. Watch checks once
// when it starts, after every nftables transaction that touches our table
// (it listens to the kernel's NFNLGRP_NFTABLES group and looks at whole
// transactions, so Apply's own delete-and-add is judged by its result, not
// mistaken for a deletion), and every Options.CheckInterval. If the event
// socket overflows it resubscribes and checks again, so an edit is never
// missed. Watch returns nil when ctx ends, or an error if it cannot
// subscribe.
//
// Pipeline: the library's monitor goroutine reads the socket and hands one
// MonitorEvents per transaction to the loop below, which also owns the
// ticker and checks and re-applies under the Manager's mutex.
func (m *Manager) Watch(ctx context.Context, onEvent func(error)) error {
	if onEvent == nil {
		onEvent = func(error) {}
	}
	var tick <-chan time.Time
	if m.checkEvery > 0 {
		c, stop := m.newTicker(m.checkEvery)
		defer stop()
		tick = c
	}
	for {
		err := m.watchOnce(ctx, tick, onEvent)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errSubscribe) {
			return err
		}
		m.log.Warn("nat: table watch lost events, resubscribing", "err", err)
	}
}

var errSubscribe = errors.New("subscribe to nftables events")

func (m *Manager) watchOnce(ctx context.Context, tick <-chan time.Time, onEvent func(error)) error {
	// A lasting connection so that closing it is what ends the monitor's
	// read; the monitor's own Close only closes transient connections.
	c, err := m.conn(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nat: watch: %w: %w", errSubscribe, err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectRuleset), nftables.WithMonitorEventBuffer(16))
	events, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		c.CloseLasting()
		return fmt.Errorf("nat: watch: %w: %w", errSubscribe, err)
	}
	defer func() {
		mon.Close()
		c.CloseLasting()
		for range events { // let the monitor goroutine finish
		}
	}()

	// Catch a change made before we subscribed (or while the previous
	// subscription was overflowing).
	m.check(onEvent)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			m.check(onEvent)
		case evs, ok := <-events:
			if !ok {
				return errors.New("nftables event stream closed")
			}
			if evs.GeneratedBy != nil && evs.GeneratedBy.Type == nftables.MonitorEventTypeOOB {
				return fmt.Errorf("nftables events: %w", evs.GeneratedBy.Error)
			}
			if m.touches(evs.Changes) {
				m.check(onEvent)
			}
		}
	}
}

// touches reports whether a transaction may have changed one of our
// tables (the inet table, or the split layout's ip and ip6 tables). Set
// element events do not say which table they belong to, so they count.
func (m *Manager) touches(changes []*nftables.MonitorEvent) bool {
	m.mu.Lock()
	tables := allTables(m.table)
	m.mu.Unlock()
	ours := func(t *nftables.Table) bool {
		return t == nil || slices.Contains(tables, tableRef{t.Family, t.Name})
	}
	for _, ev := range changes {
		switch d := ev.Data.(type) {
		case *nftables.Table:
			if ours(d) {
				return true
			}
		case *nftables.Chain:
			if d == nil || ours(d.Table) {
				return true
			}
		case *nftables.Rule:
			if d == nil || ours(d.Table) {
				return true
			}
		case *nftables.Set:
			if d == nil || ours(d.Table) {
				return true
			}
		case *nftables.NamedObj:
			if d == nil || ours(d.Table) {
				return true
			}
		case *nftables.CounterObj:
			if d == nil || ours(d.Table) {
				return true
			}
		default: // set elements, and anything the library could not parse
			return true
		}
	}
	return false
}

// check compares the table with what was applied and re-applies the last
// config on any difference (the table may be gone, or edited). Events can
// be stale (Apply may have run since), so the kernel's state decides.
func (m *Manager) check(onEvent func(error)) {
	m.checks.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.applied {
		return
	}
	what, err := m.differenceLocked()
	if err != nil {
		m.log.Warn("nat: cannot check the table", "table", m.table, "err", err)
		return
	}
	if what == "" {
		return
	}
	if err := m.applyLocked(m.last); err != nil {
		err = fmt.Errorf("nat: restore table (%s): %w", what, err)
		m.log.Error("nat: the table was changed by someone else and could not be restored", "table", m.table, "change", what, "err", err)
		onEvent(err)
		return
	}
	m.restorations.Add(1)
	m.log.Warn("nat: the table was changed by someone else; re-applied", "table", m.table, "change", what,
		"restorations", m.restorations.Load())
	onEvent(nil)
}

// differenceLocked describes how the kernel's table differs from what was
// applied, or returns "" when it does not.
func (m *Manager) differenceLocked() (string, error) {
	tables := layoutTables(m.table, m.layout)
	if m.expected == nil {
		ok, err := m.present(tables)
		if err != nil || ok {
			return "", err
		}
		return "table missing", nil
	}
	st, err := m.snapshot(tables)
	if err != nil {
		return "", err
	}
	return m.expected.diff(st), nil
}
