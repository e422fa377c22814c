package members

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"exitd/keys"
)

// Bucket layout (bbolt):
//
//	members:    public key (32 bytes) -> Member as JSON
//	quarantine: slot (4 bytes BE)     -> time freed (8 bytes BE unix nanos)
var (
	bucketMembers    = []byte("members")
	bucketQuarantine = []byte("quarantine")
)

// boltStore is the embedded store: one bbolt file with one writer (the
// file is locked by the process that opened it). Its index of slots,
// labels and keys is therefore in memory, and a Commit checks and writes
// in one bbolt transaction. Revisions count the commits since open.
type boltStore struct {
	path string

	mu     sync.Mutex
	db     *bbolt.DB
	rev    int64
	slots  map[uint32]boltSlot
	labels map[string]uint32
	keys   map[keys.Key]uint32
}

// boltSlot is what the store knows of a written slot.
type boltSlot struct {
	rev   int64
	key   keys.Key // zero: free
	label string
	freed time.Time
}

var _ Store = (*boltStore)(nil)

func openBolt(path string) (*boltStore, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("members: open %s: locked by another process (is exitd already running?)", path)
		}
		return nil, fmt.Errorf("members: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketMembers); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketQuarantine)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("members: open %s: %w", path, err)
	}
	return &boltStore{path: path, db: db}, nil
}

// Load reads the file; a private file has no layout to keep.
func (s *boltStore) Load(_ context.Context, _ string) (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.slots, s.labels, s.keys = map[uint32]boltSlot{}, map[string]uint32{}, map[keys.Key]uint32{}
	snap := Snapshot{Rev: s.rev}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			if len(k) == 4 && len(v) == 8 {
				i := binary.BigEndian.Uint32(k)
				freed := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				s.slots[i] = boltSlot{rev: s.rev, freed: freed}
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			m := new(Member)
			if err := json.Unmarshal(v, m); err != nil {
				return fmt.Errorf("member %x: %w", k, err)
			}
			s.slots[m.Index] = boltSlot{rev: s.rev, key: m.PublicKey, label: m.Label}
			s.labels[m.Label] = m.Index
			s.keys[m.PublicKey] = m.Index
			snap.Records = append(snap.Records, Record{Slot: m.Index, Rev: s.rev, Member: m})
			return nil
		})
	})
	if err != nil {
		return Snapshot{}, err
	}
	for i, sl := range s.slots {
		if sl.key.IsZero() {
			snap.Records = append(snap.Records, Record{Slot: i, Rev: s.rev, Freed: sl.freed})
		}
	}
	return snap, nil
}

// Commit checks every op against the index, then writes them in one
// transaction.
func (s *boltStore) Commit(_ context.Context, ops []Op) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c ConflictError
	for _, op := range ops {
		if err := op.Check(); err != nil {
			return nil, fmt.Errorf("members: commit: %w", err)
		}
		cur, ok := s.slots[op.Prev.Slot]
		if op.Prev.Absent() && ok || !op.Prev.Absent() && cur.rev != op.Prev.Rev {
			c.Slots = append(c.Slots, op.Prev.Slot)
		}
		if m := op.Next.Member; m != nil && op.Prev.Member == nil {
			if _, ok := s.labels[m.Label]; ok {
				c.Labels = append(c.Labels, m.Label)
			}
			if _, ok := s.keys[m.PublicKey]; ok {
				c.Keys = append(c.Keys, m.PublicKey)
			}
		}
	}
	if c.Slots != nil || c.Labels != nil || c.Keys != nil {
		return nil, &c
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		mb, qb := tx.Bucket(bucketMembers), tx.Bucket(bucketQuarantine)
		for _, op := range ops {
			if m := op.Prev.Member; m != nil {
				if err := mb.Delete(m.PublicKey[:]); err != nil {
					return err
				}
			}
			if m := op.Next.Member; m != nil {
				v, err := encode(m)
				if err != nil {
					return err
				}
				if err := mb.Put(m.PublicKey[:], v); err != nil {
					return err
				}
			}
			var err error
			if op.Next.Member == nil && !op.Next.Freed.IsZero() {
				var t [8]byte
				binary.BigEndian.PutUint64(t[:], uint64(op.Next.Freed.UnixNano()))
				err = qb.Put(slotKey(op.Next.Slot), t[:])
			} else {
				err = qb.Delete(slotKey(op.Next.Slot))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.rev++
	revs := make([]int64, len(ops))
	for i, op := range ops {
		revs[i] = s.rev
		if m := op.Prev.Member; m != nil {
			delete(s.labels, m.Label)
			delete(s.keys, m.PublicKey)
		}
		switch m := op.Next.Member; {
		case m != nil:
			s.slots[m.Index] = boltSlot{rev: s.rev, key: m.PublicKey, label: m.Label}
			s.labels[m.Label] = m.Index
			s.keys[m.PublicKey] = m.Index
		case op.Next.Freed.IsZero():
			delete(s.slots, op.Next.Slot)
		default:
			s.slots[op.Next.Slot] = boltSlot{rev: s.rev, freed: op.Next.Freed}
		}
	}
	return revs, nil
}

// scrub rewrites members loaded with a private key (written before the
// key store) without it, then rewrites the file so no copy stays in its
// free pages.
func (s *boltStore) scrub(ms []*Member) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		mb := tx.Bucket(bucketMembers)
		for _, m := range ms {
			v, err := encode(m)
			if err != nil {
				return err
			}
			if err := mb.Put(m.PublicKey[:], v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.db, err = compact(s.db, s.path)
	return err
}

func (s *boltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	return s.db.Close()
}

// compact rewrites the database at path into a fresh file and reopens it.
func compact(db *bbolt.DB, path string) (*bbolt.DB, error) {
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		db.Close()
		return nil, err
	}
	err = bbolt.Compact(dst, db, 1<<20)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	db.Close()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
}

func slotKey(i uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], i)
	return b[:]
}
