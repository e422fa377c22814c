package nat

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
)

// Watch keeps our table in place until ctx ends: when someone else deletes
// it (`nft flush ruleset`, `systemctl reload nftables`, `nft delete table`)
// Watch re-applies the last config passed to Apply and reports the outcome
// through onEvent (nil on success). Nothing happens before the first Apply or
// after Remove.
//
// It listens to the kernel's nftables multicast group (NFNLGRP_NFTABLES) and
// looks at whole transactions, so Apply's own delete-and-add is not mistaken
// for a deletion. If the event socket overflows it resubscribes and checks
// the table once, so a deletion is never missed. Watch returns nil when ctx
// ends, or an error if it cannot subscribe.
//
// Pipeline: the library's monitor goroutine reads the socket and hands one
// MonitorEvents per transaction to the loop below, which re-applies under the
// Manager's mutex.
func (m *Manager) Watch(ctx context.Context, onEvent func(error)) error {
	if onEvent == nil {
		onEvent = func(error) {}
	}
	for {
		err := m.watchOnce(ctx, onEvent)
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

func (m *Manager) watchOnce(ctx context.Context, onEvent func(error)) error {
	// A lasting connection so that closing it is what ends the monitor's
	// read; the monitor's own Close only closes transient connections.
	c, err := m.conn(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nat: watch: %w: %w", errSubscribe, err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectTables), nftables.WithMonitorEventBuffer(16))
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

	// Catch a deletion that happened before we subscribed (or while the
	// previous subscription was overflowing).
	m.reapplyIfGone(onEvent)
	for {
		select {
		case <-ctx.Done():
			return nil
		case evs, ok := <-events:
			if !ok {
				return errors.New("nftables event stream closed")
			}
			if evs.GeneratedBy != nil && evs.GeneratedBy.Type == nftables.MonitorEventTypeOOB {
				return fmt.Errorf("nftables events: %w", evs.GeneratedBy.Error)
			}
			if m.deletedIn(evs.Changes) {
				m.reapplyIfGone(onEvent)
			}
		}
	}
}

// deletedIn reports whether a transaction ends with our table deleted.
func (m *Manager) deletedIn(changes []*nftables.MonitorEvent) bool {
	m.mu.Lock()
	table := m.table
	m.mu.Unlock()
	deleted := false
	for _, ev := range changes {
		t, ok := ev.Data.(*nftables.Table)
		if !ok || t == nil || t.Name != table || t.Family != nftables.TableFamilyINet {
			continue
		}
		switch ev.Type {
		case nftables.MonitorEventTypeDelTable:
			deleted = true
		case nftables.MonitorEventTypeNewTable:
			deleted = false
		}
	}
	return deleted
}

// reapplyIfGone re-applies the last config when it is wanted and the table
// is really missing (events can be stale: Apply may have run since).
func (m *Manager) reapplyIfGone(onEvent func(error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.applied {
		return
	}
	ok, err := m.present(m.table)
	if err == nil && ok {
		return
	}
	if err == nil {
		err = m.applyLocked(m.last)
	}
	if err != nil {
		err = fmt.Errorf("nat: re-apply deleted table: %w", err)
		m.log.Error("nat: table was deleted and could not be restored", "table", m.table, "err", err)
	} else {
		m.log.Warn("nat: table was deleted by someone else; re-applied", "table", m.table)
	}
	onEvent(err)
}
