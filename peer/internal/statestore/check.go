package statestore

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

// Check verifies the store's invariants (see the package doc) and bbolt's
// own page structure. It returns every problem found, joined.
func (s *Store) Check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			bad("bbolt: %w", err)
		}
		m := tx.Bucket(bMeta)
		if getU64(m.Get(kIncarnation)) == 0 {
			bad("meta: no incarnation")
		}
		rev, revFloor := getU64(m.Get(kRev)), getU64(m.Get(kRevFloor))
		if revFloor > rev {
			bad("meta: revision floor %d above revision %d", revFloor, rev)
		}
		tombs := tx.Bucket(bTombs)
		tx.Bucket(bRecords).ForEach(func(k, v []byte) error {
			if err := crdt.ValidKey(string(k)); err != nil {
				bad("record key: %w", err)
			}
			r, err := crdt.DecodeRecord(v)
			if err != nil {
				bad("record %q: %w", k, err)
				return nil
			}
			if r.Empty() {
				bad("record %q stored empty", k)
			}
			if r.HasTombstones() != (tombs.Get(k) != nil) {
				bad("record %q: tombstone index disagrees", k)
			}
			return nil
		})
		tombs.ForEach(func(k, _ []byte) error {
			if tx.Bucket(bRecords).Get(k) == nil {
				bad("tombstone index names missing record %q", k)
			}
			return nil
		})
		vv := readVV(tx)
		fb, lb := tx.Bucket(bFloor), tx.Bucket(bLog)
		for _, o := range vv.Origins() {
			floor := getU64(fb.Get([]byte(o)))
			if floor > vv[o] {
				bad("origin %q: log floor %d above applied %d", o, floor, vv[o])
				continue
			}
			b := lb.Bucket([]byte(o))
			if b == nil {
				if floor != vv[o] {
					bad("origin %q: no log but changes %d..%d should be kept", o, floor+1, vv[o])
				}
				continue
			}
			want := floor + 1
			b.ForEach(func(k, v []byte) error {
				seq := getU64(k)
				if seq != want {
					bad("origin %q: log has seq %d, want %d", o, seq, want)
				}
				want = seq + 1
				c, err := crdt.DecodeChange(v)
				if err != nil {
					bad("origin %q seq %d: %w", o, seq, err)
				} else if c.Origin != o || c.Seq != seq {
					bad("origin %q seq %d: log entry is %s", o, seq, c.Dot())
				}
				return nil
			})
			if want != vv[o]+1 {
				bad("origin %q: log ends at %d, applied %d", o, want-1, vv[o])
			}
		}
		lb.ForEachBucket(func(k []byte) error {
			if _, ok := vv[string(k)]; !ok {
				bad("log of origin %q without version vector entry", k)
			}
			return nil
		})
		tx.Bucket(bRevs).ForEach(func(k, _ []byte) error {
			if r := getU64(k); r <= revFloor || r > rev {
				bad("revision %d outside %d..%d", r, revFloor+1, rev)
			}
			return nil
		})
		return nil
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}
