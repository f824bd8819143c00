package statestore

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

// Get returns what readers see of the record key (no tombstones), or
// ErrNotFound.
func (s *Store) Get(key string) (*crdt.Record, error) {
	var r *crdt.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getRecord(tx, key)
		return err
	})
	if err != nil {
		return nil, err
	}
	if v := r.Visible(); v != nil {
		return v, nil
	}
	return nil, fmt.Errorf("get %q: %w", key, ErrNotFound)
}

// List returns the live records whose key starts with prefix, in key
// order, and the revision they reflect: watch from it to follow changes.
func (s *Store) List(prefix string) ([]crdt.Entry, uint64, error) {
	var out []crdt.Entry
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = getU64(tx.Bucket(bMeta).Get(kRev))
		c := tx.Bucket(bRecords).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			r, err := crdt.DecodeRecord(v)
			if err != nil {
				return fmt.Errorf("read record %q: %w", k, err)
			}
			if vis := r.Visible(); vis != nil {
				out = append(out, crdt.Entry{Key: string(k), Record: vis})
			}
		}
		return nil
	})
	return out, rev, err
}

// Digest returns a SHA-256 of everything readers see, in key order. Two
// replicas that merged the same changes have equal digests.
func (s *Store) Digest() ([32]byte, error) {
	h := sha256.New()
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRecords).ForEach(func(k, v []byte) error {
			r, err := crdt.DecodeRecord(v)
			if err != nil {
				return fmt.Errorf("read record %q: %w", k, err)
			}
			vis := r.Visible()
			if vis == nil {
				return nil
			}
			b := crdt.EncodeRecord(vis)
			var n [8]byte
			h.Write(appendLen(n[:0], len(k)))
			h.Write(k)
			h.Write(appendLen(n[:0], len(b)))
			h.Write(b)
			return nil
		})
	})
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d, err
}

func appendLen(b []byte, n int) []byte { return append(b, u64(uint64(n))...) }

// Dump returns every stored record, tombstones included, in key order:
// the full canonical state, for tests and debugging.
func (s *Store) Dump() ([]crdt.Entry, error) {
	var out []crdt.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRecords).ForEach(func(k, v []byte) error {
			r, err := crdt.DecodeRecord(v)
			if err != nil {
				return fmt.Errorf("read record %q: %w", k, err)
			}
			out = append(out, crdt.Entry{Key: string(k), Record: r})
			return nil
		})
	})
	return out, err
}

// Changes is what a peer with a given version vector is missing.
type Changes struct {
	Changes []*crdt.Change
	// More is set when maxBytes cut the list short: ask again.
	More bool
	// Snapshot is set when the peer is behind a compacted log for some
	// origin: it needs a snapshot; Changes is then empty.
	Snapshot bool
}

// ChangesSince returns the changes this store has that a peer with
// version vector vv lacks, origin by origin in seq order, up to about
// maxBytes of encoded changes (at least one change).
func (s *Store) ChangesSince(vv crdt.VersionVector, maxBytes int) (Changes, error) {
	var out Changes
	err := s.db.View(func(tx *bolt.Tx) error {
		mine := readVV(tx)
		size := 0
		fb, lb := tx.Bucket(bFloor), tx.Bucket(bLog)
		for _, o := range mine.Origins() {
			if mine[o] <= vv[o] {
				continue
			}
			if vv[o] < getU64(fb.Get([]byte(o))) {
				out = Changes{Snapshot: true}
				return nil
			}
		}
		for _, o := range mine.Origins() {
			if mine[o] <= vv[o] {
				continue
			}
			b := lb.Bucket([]byte(o))
			if b == nil {
				return fmt.Errorf("change log of %q missing", o)
			}
			c := b.Cursor()
			for k, v := c.Seek(u64(vv[o] + 1)); k != nil; k, v = c.Next() {
				if size > 0 && size+len(v) > maxBytes {
					out.More = true
					return nil
				}
				ch, err := crdt.DecodeChange(v)
				if err != nil {
					return fmt.Errorf("read change %s:%d: %w", o, getU64(k), err)
				}
				out.Changes = append(out.Changes, ch)
				size += len(v)
			}
		}
		return nil
	})
	return out, err
}

// Snapshot returns the chunk of the full state after key after (""
// for the first), up to about maxBytes of records (at least one), with
// this store's current version vector.
func (s *Store) Snapshot(after string, maxBytes int) (*crdt.SnapshotChunk, error) {
	ch := &crdt.SnapshotChunk{After: after}
	err := s.db.View(func(tx *bolt.Tx) error {
		ch.VV = readVV(tx)
		c := tx.Bucket(bRecords).Cursor()
		size := 0
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			if size > 0 && size+len(v) > maxBytes {
				ch.More = true
				return nil
			}
			r, err := crdt.DecodeRecord(v)
			if err != nil {
				return fmt.Errorf("read record %q: %w", k, err)
			}
			ch.Entries = append(ch.Entries, crdt.Entry{Key: string(k), Record: r})
			size += len(k) + len(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot after %q: %w", after, err)
	}
	return ch, nil
}
