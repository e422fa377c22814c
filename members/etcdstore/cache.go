package etcdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"exitd/members"
)

// cache is the node's local copy of the slot records (bbolt), so that it
// starts and serves its last known members while etcd is unreachable.
//
//	meta:  "prefix", "layout" -> text; "rev" -> 8 bytes BE: every change
//	       up to this revision is in the cache
//	slots: slot (4 bytes BE) -> revision (8 bytes BE) + slot value as in etcd
//	       (nothing after the revision: the slot has no record)
//
// The node's own commits go in with their revisions but do not move
// "rev": changes of others before them may still be on their way.
type cache struct {
	db *bbolt.DB
}

var (
	cacheMeta  = []byte("meta")
	cacheSlots = []byte("slots")
)

func openCache(path string) (*cache, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("cache %s: locked by another process (is exitd already running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{cacheMeta, cacheSlots} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cache %s: %w", path, err)
	}
	return &cache{db: db}, nil
}

func (c *cache) close() error { return c.db.Close() }

// load returns the cached snapshot; ok is false when the cache is empty or
// belongs to another prefix or layout.
func (c *cache) load(prefix, layout string) (snap members.Snapshot, ok bool, err error) {
	err = c.db.View(func(tx *bbolt.Tx) error {
		mb := tx.Bucket(cacheMeta)
		rev := mb.Get([]byte("rev"))
		if string(mb.Get([]byte("prefix"))) != prefix || string(mb.Get([]byte("layout"))) != layout || len(rev) != 8 {
			return nil
		}
		snap.Rev = int64(binary.BigEndian.Uint64(rev))
		ok = true
		return tx.Bucket(cacheSlots).ForEach(func(k, v []byte) error {
			if len(k) != 4 || len(v) < 8 {
				return fmt.Errorf("bad entry %x", k)
			}
			if len(v) == 8 {
				return nil // no record
			}
			rec, err := decodeSlot(binary.BigEndian.Uint32(k), int64(binary.BigEndian.Uint64(v)), v[8:])
			if err != nil {
				return fmt.Errorf("slot %x: %w", k, err)
			}
			snap.Records = append(snap.Records, rec)
			return nil
		})
	})
	return snap, ok, err
}

// replace makes the cache a copy of snap.
func (c *cache) replace(prefix, layout string, snap members.Snapshot) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(cacheSlots); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(cacheSlots); err != nil {
			return err
		}
		mb := tx.Bucket(cacheMeta)
		if err := mb.Put([]byte("prefix"), []byte(prefix)); err != nil {
			return err
		}
		if err := mb.Put([]byte("layout"), []byte(layout)); err != nil {
			return err
		}
		return putRecords(tx, snap.Records, snap.Rev)
	})
}

// put stores records; rev > 0 also moves the cache's revision.
func (c *cache) put(recs []members.Record, rev int64) error {
	return c.db.Update(func(tx *bbolt.Tx) error { return putRecords(tx, recs, rev) })
}

func putRecords(tx *bbolt.Tx, recs []members.Record, rev int64) error {
	sb := tx.Bucket(cacheSlots)
	for _, rec := range recs {
		var k [4]byte
		binary.BigEndian.PutUint32(k[:], rec.Slot)
		if old := sb.Get(k[:]); len(old) >= 8 && int64(binary.BigEndian.Uint64(old)) > rec.Rev {
			continue // a newer state is in already
		}
		v, err := encodeSlot(rec)
		if err != nil {
			return err
		}
		// A slot without a record keeps its revision, with no value.
		val := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(v)), uint64(rec.Rev))
		if err := sb.Put(k[:], append(val, v...)); err != nil {
			return err
		}
	}
	if rev > 0 {
		return tx.Bucket(cacheMeta).Put([]byte("rev"), binary.BigEndian.AppendUint64(nil, uint64(rev)))
	}
	return nil
}
