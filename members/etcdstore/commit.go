package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"exitd/members"
)

// Commit writes ops in as few transactions as etcd's limits allow (three
// compares and three writes per added member: 42 in one transaction at the
// default 128 ops). When a later transaction fails, the earlier ones are
// undone by compensating transactions (each requiring the slots unchanged
// since), so the batch is all or nothing; other nodes may see its members
// come and go meanwhile. Only when etcd becomes unreachable between two
// transactions can part of a batch stay; the error then says so.
func (s *Store) Commit(ctx context.Context, ops []members.Op) ([]int64, error) {
	for _, op := range ops {
		if err := op.Check(); err != nil {
			return nil, fmt.Errorf("etcdstore: commit: %w", err)
		}
	}
	txns, err := s.split(ops)
	if err != nil {
		return nil, err
	}
	revs := make([]int64, len(ops))
	done := 0
	for _, t := range txns {
		rev, err := s.commitTxn(ctx, ops[done:t])
		if err != nil {
			if done == 0 {
				return nil, err
			}
			undone, uerr := s.undo(ctx, ops[:done], revs[:done])
			if uerr != nil {
				return nil, fmt.Errorf("etcdstore: %d of %d changes of the batch are committed and undoing them failed: %w (the batch failed with: %v)",
					done, len(ops), uerr, err)
			}
			return undone, err
		}
		for i := done; i < t; i++ {
			revs[i] = rev
		}
		done = t
	}
	if s.cache != nil {
		recs := make([]members.Record, len(ops))
		for i, op := range ops {
			recs[i] = op.Next
			recs[i].Rev = revs[i]
		}
		if err := s.cache.put(recs, 0); err != nil {
			s.log.Warn("member cache not updated", "err", err)
		}
	}
	return revs, nil
}

// undo puts the committed ops' slots back to their Prev state and returns,
// for each op, the revision of that.
func (s *Store) undo(ctx context.Context, ops []members.Op, revs []int64) ([]int64, error) {
	inv := make([]members.Op, len(ops))
	for i, op := range ops {
		inv[i] = members.Op{Prev: op.Next, Next: op.Prev}
		inv[i].Prev.Rev = revs[i]
	}
	txns, err := s.split(inv)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(ops))
	done := 0
	for _, t := range txns {
		rev, err := s.commitTxn(ctx, inv[done:t])
		if err != nil {
			return nil, err
		}
		for i := done; i < t; i++ {
			out[i] = rev
		}
		done = t
	}
	return out, nil
}

// opCost is what one op adds to a transaction.
type opCost struct{ cmps, writes, reads, bytes int }

func (s *Store) cost(op members.Op) (opCost, error) {
	v, err := encodeSlot(op.Next)
	if err != nil {
		return opCost{}, err
	}
	keyLen := len(s.ks.slot(op.Next.Slot))
	c := opCost{cmps: 1, writes: 1, reads: 1, bytes: 3*(keyLen+16) + len(v)}
	if m := op.Next.Member; m != nil && op.Prev.Member == nil || op.Prev.Member != nil && op.Next.Member == nil {
		if m == nil {
			m = op.Prev.Member
		}
		claims := len(s.ks.label(m.Label)) + len(s.ks.key(m.PublicKey)) + 32
		c.writes += 2
		c.bytes += 3 * claims
		if op.Prev.Member == nil { // an add also compares and reads the claims
			c.cmps += 2
			c.reads += 2
		}
	}
	return c, nil
}

// split returns the end index of each transaction's ops.
func (s *Store) split(ops []members.Op) ([]int, error) {
	budget := s.opts.MaxRequestBytes - 4096
	var ends []int
	var sum opCost
	for i, op := range ops {
		c, err := s.cost(op)
		if err != nil {
			return nil, err
		}
		if c.cmps > s.opts.MaxTxnOps || c.writes > s.opts.MaxTxnOps || c.bytes > budget {
			return nil, fmt.Errorf("etcdstore: a member's record does not fit one transaction (max %d ops, %d bytes)", s.opts.MaxTxnOps, s.opts.MaxRequestBytes)
		}
		if sum.cmps+c.cmps > s.opts.MaxTxnOps || sum.writes+c.writes > s.opts.MaxTxnOps ||
			sum.reads+c.reads > s.opts.MaxTxnOps || sum.bytes+c.bytes > budget {
			ends = append(ends, i)
			sum = opCost{}
		}
		sum.cmps += c.cmps
		sum.writes += c.writes
		sum.reads += c.reads
		sum.bytes += c.bytes
	}
	if len(ops) > 0 {
		ends = append(ends, len(ops))
	}
	return ends, nil
}

// check is one compare of a transaction, to explain its failure.
type check struct {
	op    int
	what  string // "slot", "label", "key"
	rev   int64  // slot: the ModRevision wanted; 0: absent
	label string
}

// commitTxn commits ops in one transaction and returns its revision. On a
// failed compare the transaction reads the keys it compared, so the
// conflict can be told precisely.
func (s *Store) commitTxn(ctx context.Context, ops []members.Op) (int64, error) {
	var cmps []clientv3.Cmp
	var then, els []clientv3.Op
	var checks []check
	var outcome []written
	for i, op := range ops {
		slot := s.ks.slot(op.Prev.Slot)
		if op.Prev.Absent() {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(slot), "=", 0))
			checks = append(checks, check{op: i, what: "slot"})
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(slot), "=", op.Prev.Rev))
			checks = append(checks, check{op: i, what: "slot", rev: op.Prev.Rev})
		}
		els = append(els, clientv3.OpGet(slot, clientv3.WithKeysOnly()))
		v, err := encodeSlot(op.Next)
		if err != nil {
			return 0, fmt.Errorf("etcdstore: commit: %w", err)
		}
		outcome = append(outcome, written{key: slot, value: v, prevRev: op.Prev.Rev, prevAbsent: op.Prev.Absent()})
		if v == nil {
			then = append(then, clientv3.OpDelete(slot))
		} else {
			then = append(then, clientv3.OpPut(slot, string(v)))
		}
		switch prev, next := op.Prev.Member, op.Next.Member; {
		case prev == nil && next != nil:
			lk, kk := s.ks.label(next.Label), s.ks.key(next.PublicKey)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(lk), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(kk), "=", 0))
			checks = append(checks, check{op: i, what: "label", label: next.Label}, check{op: i, what: "key"})
			els = append(els, clientv3.OpGet(lk, clientv3.WithKeysOnly()), clientv3.OpGet(kk, clientv3.WithKeysOnly()))
			n := slotText(op.Next.Slot)
			then = append(then, clientv3.OpPut(lk, n), clientv3.OpPut(kk, n))
		case prev != nil && next == nil:
			then = append(then, clientv3.OpDelete(s.ks.label(prev.Label)), clientv3.OpDelete(s.ks.key(prev.PublicKey)))
		}
	}
	// An attempt that times out (an etcd member lost, a leader being
	// elected) may or may not have committed: read the slots to tell, and
	// try again while the request's time lasts.
	deadline := time.Now().Add(s.opts.RequestTimeout)
	var resp *clientv3.TxnResponse
	for {
		attempt := min(time.Until(deadline), max(s.opts.RequestTimeout*2/5, time.Second))
		rctx, cancel := context.WithTimeout(ctx, attempt)
		r, err := s.cli.Txn(rctx).If(cmps...).Then(then...).Else(els...).Commit()
		cancel()
		if err == nil {
			resp = r
			break
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if !isUnavailable(err) {
			return 0, fmt.Errorf("etcdstore: commit: %w", err)
		}
		if time.Until(deadline) <= 0 {
			return 0, s.unavailable("commit", err)
		}
		switch rev, state := s.outcome(ctx, outcome, deadline); state {
		case committed:
			return rev, nil
		case unknown:
			return 0, s.unavailable("commit", err)
		} // notCommitted: the same transaction again
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	var c members.ConflictError
	for i, r := range resp.Responses {
		kvs := r.GetResponseRange().GetKvs()
		ch, op := checks[i], ops[checks[i].op]
		switch ch.what {
		case "slot":
			if ch.rev == 0 && len(kvs) > 0 || ch.rev != 0 && (len(kvs) == 0 || kvs[0].ModRevision != ch.rev) {
				c.Slots = append(c.Slots, op.Prev.Slot)
			}
		case "label":
			if len(kvs) > 0 {
				c.Labels = append(c.Labels, ch.label)
			}
		case "key":
			if len(kvs) > 0 {
				c.Keys = append(c.Keys, op.Next.Member.PublicKey)
			}
		}
	}
	if c.Slots == nil && c.Labels == nil && c.Keys == nil {
		return 0, errors.New("etcdstore: commit: transaction refused without a visible conflict")
	}
	return 0, &c
}

// written is what a transaction does to one slot key: value (nil: delete)
// over the state it compared (prevRev, or prevAbsent).
type written struct {
	key        string
	value      []byte
	prevRev    int64
	prevAbsent bool
}

type txnState int

const (
	unknown txnState = iota
	committed
	notCommitted
)

// readBackRetry is the pause between read-backs refused while etcd has no
// leader.
const readBackRetry = 100 * time.Millisecond

// outcome reads the slot keys of a transaction whose answer was lost: all
// at their new values is committed (the revision that wrote them), all at
// the compared state is not committed, anything else (another node wrote
// since, or etcd still does not answer) is unknown.
func (s *Store) outcome(ctx context.Context, ws []written, deadline time.Time) (int64, txnState) {
	gets := make([]clientv3.Op, len(ws))
	for i, w := range ws {
		gets[i] = clientv3.OpGet(w.key)
	}
	var resp *clientv3.TxnResponse
	for {
		rctx, cancel := context.WithDeadline(ctx, deadline)
		r, err := s.cli.Txn(rctx).Then(gets...).Commit()
		cancel()
		if err == nil {
			resp = r
			break
		}
		// A cluster electing a leader refuses reads at once ("no
		// leader", "leader changed"): ask again while the request's
		// time lasts rather than give up on a commit that may be fine.
		if !isUnavailable(err) || ctx.Err() != nil || time.Until(deadline) <= readBackRetry {
			return 0, unknown
		}
		select {
		case <-ctx.Done():
			return 0, unknown
		case <-time.After(readBackRetry):
		}
	}
	var rev int64
	done, untouched := true, true
	for i, w := range ws {
		kvs := resp.Responses[i].GetResponseRange().GetKvs()
		var now []byte
		var modRev int64
		if len(kvs) > 0 {
			now, modRev = kvs[0].Value, kvs[0].ModRevision
		}
		if (w.value == nil) != (now == nil) || !bytes.Equal(now, w.value) {
			done = false
		}
		if modRev > rev {
			rev = modRev
		}
		if w.prevAbsent != (len(kvs) == 0) || !w.prevAbsent && modRev != w.prevRev {
			untouched = false
		}
	}
	switch {
	case done && !untouched:
		if rev == 0 { // only deletes: no key carries the revision
			rev = resp.Header.Revision
		}
		return rev, committed
	case untouched && !done:
		return 0, notCommitted
	}
	return 0, unknown
}
