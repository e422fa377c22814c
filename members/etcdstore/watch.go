package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"exitd/members"
)

// Watch follows the slot keys from revision from+1. The etcd client
// rides out disconnections itself, resuming after the last revision it
// delivered; a watch etcd cancels (compaction, lost leader) ends Watch.
func (s *Store) Watch(ctx context.Context, from int64, apply func([]members.Record, int64) error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithProgressNotify()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(from+1))
	}
	for resp := range s.cli.Watch(wctx, s.ks.slots(), opts...) {
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			return fmt.Errorf("etcdstore: watch from revision %d (compacted up to %d): %w", from+1, resp.CompactRevision, members.ErrCompacted)
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return s.unavailable("watch", err)
		}
		rev := resp.Header.Revision
		recs := make([]members.Record, 0, len(resp.Events))
		for _, ev := range resp.Events {
			kind, slot, _, _ := s.ks.parseKey(string(ev.Kv.Key))
			if kind != kindSlot {
				return fmt.Errorf("etcdstore: watch: %w: key %q", ErrForeignData, ev.Kv.Key)
			}
			rec := members.Record{Slot: slot, Rev: ev.Kv.ModRevision}
			if ev.Type == clientv3.EventTypePut {
				var err error
				if rec, err = decodeSlot(slot, ev.Kv.ModRevision, ev.Kv.Value); err != nil {
					return fmt.Errorf("etcdstore: watch: %w: %s: %v", ErrForeignData, ev.Kv.Key, err)
				}
			}
			recs = append(recs, rec)
			rev = ev.Kv.ModRevision
		}
		if len(recs) == 0 && !resp.IsProgressNotify() {
			continue
		}
		if err := apply(recs, rev); err != nil {
			return err
		}
		if s.cache != nil {
			if err := s.cache.put(recs, rev); err != nil {
				s.log.Warn("member cache not updated", "err", err)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.unavailable("watch", errors.New("watch closed"))
}
