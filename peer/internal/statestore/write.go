package statestore

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

// Put writes register fields of the record key (creating it if needed).
func (s *Store) Put(key string, fields map[string][]byte) (*crdt.Change, error) {
	ops := make([]crdt.Op, 0, len(fields))
	for n, v := range fields {
		ops = append(ops, crdt.Op{Field: n, Set: true, Value: v})
	}
	return s.Write(key, ops...)
}

// Delete deletes the record key (a tombstone; later writes re-create it).
func (s *Store) Delete(key string) (*crdt.Change, error) {
	return s.Write(key, crdt.Op{Delete: true})
}

// Write applies ops to the record key as one local change, durable before
// it returns, and returns the change for replication. Bad input returns an
// error and changes nothing.
func (s *Store) Write(key string, ops ...crdt.Op) (*crdt.Change, error) {
	if err := crdt.ValidKey(key); err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("write %q: %w: no ops", key, crdt.ErrInvalid)
	}
	var ch *crdt.Change
	err := s.db.Update(func(tx *bolt.Tx) error {
		origin := s.Origin()
		cur, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		seq := getU64(tx.Bucket(bVV).Get([]byte(origin))) + 1
		ts := s.cfg.Clock.Now()
		st := crdt.Stamp{TS: ts, Origin: origin}
		delta, err := crdt.Delta(cur, s.cfg.Schemas[crdt.Type(key)].Version, st, crdt.Dot{Origin: origin, Seq: seq}, ops)
		if err != nil {
			return fmt.Errorf("write %q: %w", key, err)
		}
		ch = &crdt.Change{Origin: origin, Seq: seq, Key: key, Delta: delta}
		if err := s.applyOne(tx, ch); err != nil {
			return err
		}
		b, _ := ts.AppendBinary(nil)
		return tx.Bucket(bMeta).Put(kHLC, b)
	})
	if err != nil {
		return nil, err
	}
	s.wake()
	return ch, nil
}

// Apply merges changes received from peers, in order. A change already
// applied is ignored; one that would leave a gap in its origin's sequence
// is skipped (fetch the gap and resend). A change stamped beyond the
// clock's offset bound stops the batch with hlc.ErrClockOffset: the
// changes before it stay applied, and the caller should flag the peer.
// It returns how many changes were applied.
//
// Apply does not filter origins marked for resync: the replicator refuses
// pushes and pull answers from such a node itself (MustResync), while
// changes of it that another member accepted earlier are merged when
// relayed, so that every replica ends up with the same ones.
func (s *Store) Apply(changes []*crdt.Change) (int, error) {
	n := 0
	var clockErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		vv := tx.Bucket(bVV)
		for _, c := range changes {
			if c == nil || c.Delta == nil || c.Seq == 0 || c.Origin == "" {
				return fmt.Errorf("apply change: %w: incomplete change", crdt.ErrInvalid)
			}
			if err := crdt.ValidKey(c.Key); err != nil {
				return fmt.Errorf("apply change %s: %w", c.Dot(), err)
			}
			if c.Seq != getU64(vv.Get([]byte(c.Origin)))+1 {
				continue
			}
			if err := s.cfg.Clock.Update(c.Delta.MaxStamp()); err != nil {
				clockErr = fmt.Errorf("apply change %s from %s: %w", c.Dot(), c.Origin, err)
				return nil
			}
			if err := s.applyOne(tx, c); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.wake()
	}
	return n, clockErr
}

// applyOne merges c into its record, appends it to its origin's log,
// raises the version vector and compacts the log.
func (s *Store) applyOne(tx *bolt.Tx, c *crdt.Change) error {
	if _, err := s.mergeKey(tx, c.Key, c.Delta); err != nil {
		return err
	}
	o := []byte(c.Origin)
	lb, err := tx.Bucket(bLog).CreateBucketIfNotExists(o)
	if err != nil {
		return err
	}
	if err := lb.Put(u64(c.Seq), crdt.EncodeChange(c)); err != nil {
		return err
	}
	if err := tx.Bucket(bVV).Put(o, u64(c.Seq)); err != nil {
		return err
	}
	floor := getU64(tx.Bucket(bFloor).Get(o))
	if c.Seq-floor > uint64(s.cfg.LogRetain) {
		newFloor := c.Seq - uint64(s.cfg.LogRetain)
		for q := floor + 1; q <= newFloor; q++ {
			if err := lb.Delete(u64(q)); err != nil {
				return err
			}
		}
		return tx.Bucket(bFloor).Put(o, u64(newFloor))
	}
	return nil
}

func getRecord(tx *bolt.Tx, key string) (*crdt.Record, error) {
	b := tx.Bucket(bRecords).Get([]byte(key))
	if b == nil {
		return nil, nil
	}
	r, err := crdt.DecodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("read record %q: %w", key, err)
	}
	return r, nil
}

// mergeKey merges delta into the record key, keeps the tombstone index
// and, when what readers see changed, records a revision. It reports
// whether the visible record changed.
func (s *Store) mergeKey(tx *bolt.Tx, key string, delta *crdt.Record) (bool, error) {
	cur, err := getRecord(tx, key)
	if err != nil {
		return false, err
	}
	next := crdt.Merge(cur, delta)
	return s.storeRecord(tx, key, cur, next)
}

func (s *Store) storeRecord(tx *bolt.Tx, key string, cur, next *crdt.Record) (bool, error) {
	k := []byte(key)
	if next.Empty() {
		if err := tx.Bucket(bRecords).Delete(k); err != nil {
			return false, err
		}
	} else if err := tx.Bucket(bRecords).Put(k, crdt.EncodeRecord(next)); err != nil {
		return false, err
	}
	if next != nil && next.HasTombstones() {
		if err := tx.Bucket(bTombs).Put(k, nil); err != nil {
			return false, err
		}
	} else if err := tx.Bucket(bTombs).Delete(k); err != nil {
		return false, err
	}
	before, after := visibleBytes(cur), visibleBytes(next)
	if bytes.Equal(before, after) {
		return false, nil
	}
	return true, s.appendRev(tx, key, after)
}

func visibleBytes(r *crdt.Record) []byte {
	if v := r.Visible(); v != nil {
		return crdt.EncodeRecord(v)
	}
	return nil
}

func (s *Store) appendRev(tx *bolt.Tx, key string, visible []byte) error {
	m := tx.Bucket(bMeta)
	rev := getU64(m.Get(kRev)) + 1
	if err := m.Put(kRev, u64(rev)); err != nil {
		return err
	}
	e := &crdt.Encoder{}
	e.String(key)
	e.Raw(visible)
	revs := tx.Bucket(bRevs)
	if err := revs.Put(u64(rev), e.Bytes()); err != nil {
		return err
	}
	floor := getU64(m.Get(kRevFloor))
	if rev-floor > uint64(s.cfg.RevRetain) {
		c := revs.Cursor()
		for k, _ := c.First(); k != nil && getU64(k) <= rev-uint64(s.cfg.RevRetain); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return m.Put(kRevFloor, u64(rev-uint64(s.cfg.RevRetain)))
	}
	return nil
}

// ImportSnapshot merges one snapshot chunk like any change. Chunks must
// come in order: the first has After "" and its VV is remembered; the last
// (More false) raises this store's version vector to it. A chunk stamped
// beyond the clock's offset bound is refused whole with hlc.ErrClockOffset.
func (s *Store) ImportSnapshot(ch *crdt.SnapshotChunk) error {
	var maxTS hlc.Timestamp
	for _, e := range ch.Entries {
		if err := crdt.ValidKey(e.Key); err != nil || e.Record == nil {
			return fmt.Errorf("import snapshot: %w: bad entry %q", crdt.ErrInvalid, e.Key)
		}
		if t := e.Record.MaxStamp(); t.Compare(maxTS) > 0 {
			maxTS = t
		}
	}
	if err := s.cfg.Clock.Update(maxTS); err != nil {
		return fmt.Errorf("import snapshot: %w", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if ch.After == "" {
			if err := m.Put(kPendingVV, crdt.EncodeVV(ch.VV)); err != nil {
				return err
			}
		} else if m.Get(kPendingVV) == nil {
			return fmt.Errorf("import snapshot chunk after %q: %w: no first chunk", ch.After, ErrSnapshotOrder)
		}
		for _, e := range ch.Entries {
			if _, err := s.mergeKey(tx, e.Key, e.Record); err != nil {
				return err
			}
		}
		if ch.More {
			return nil
		}
		pending, err := crdt.DecodeVV(m.Get(kPendingVV))
		if err != nil {
			return fmt.Errorf("read pending snapshot version vector: %w", err)
		}
		vvb, fb, lb := tx.Bucket(bVV), tx.Bucket(bFloor), tx.Bucket(bLog)
		for o, seq := range pending {
			ok := []byte(o)
			if seq <= getU64(vvb.Get(ok)) {
				continue
			}
			// the log for o now has a gap: drop it, peers behind get a snapshot
			if lb.Bucket(ok) != nil {
				if err := lb.DeleteBucket(ok); err != nil {
					return err
				}
			}
			if err := vvb.Put(ok, u64(seq)); err != nil {
				return err
			}
			if err := fb.Put(ok, u64(seq)); err != nil {
				return err
			}
		}
		if err := m.Delete(kPendingVV); err != nil {
			return err
		}
		return m.Delete(kResetting)
	})
	if err != nil {
		return err
	}
	s.wake()
	return nil
}

// Reset throws away the local state and starts a new incarnation: use it
// when peers say this node was away longer than the rejoin horizon. Reload
// the state with ImportSnapshot; until the last chunk is in, NeedsReset
// reports true (also across restarts). Local writes not yet replicated
// are lost: that is the point, they could bring deleted records back.
func (s *Store) Reset() error {
	var origin string
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bRecords, bVV, bFloor, bLog, bTombs, bAcks, bResync} {
			if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		inc := getU64(m.Get(kIncarnation)) + 1
		if err := m.Put(kIncarnation, u64(inc)); err != nil {
			return err
		}
		// watchers must resync: every revision so far is invalid
		if err := m.Put(kRevFloor, m.Get(kRev)); err != nil {
			return err
		}
		c := tx.Bucket(bRevs).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if err := m.Delete(kPendingVV); err != nil {
			return err
		}
		if err := m.Put(kResetting, []byte{1}); err != nil {
			return err
		}
		origin = originOf(s.cfg.NodeID, inc)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset state store: %w", err)
	}
	s.mu.Lock()
	s.origin = origin
	s.mu.Unlock()
	s.cfg.Logger.Warn("state store reset: reloading cluster state from a peer's snapshot", "origin", s.Origin())
	s.wake()
	return nil
}

// NeedsReset reports whether a Reset has not been completed by the last
// chunk of a snapshot.
func (s *Store) NeedsReset() (bool, error) {
	var r bool
	err := s.db.View(func(tx *bolt.Tx) error { r = tx.Bucket(bMeta).Get(kResetting) != nil; return nil })
	return r, err
}
