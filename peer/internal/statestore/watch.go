package statestore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

// Event is one change of what readers see.
type Event struct {
	Rev    uint64       // local revision, increasing by one per change of any key
	Key    string       // record key
	Record *crdt.Record // the record after the change; nil when it was deleted
}

// Watcher follows the changes under a prefix. Not safe for concurrent use.
type Watcher struct {
	s      *Store
	prefix []byte
	rev    uint64
	buf    []Event
}

// Watch returns a watcher of keys starting with prefix that yields every
// event after revision fromRev exactly once, in order. Resuming with the
// Rev of the last event handled neither misses nor repeats one.
func (s *Store) Watch(prefix string, fromRev uint64) *Watcher {
	return &Watcher{s: s, prefix: []byte(prefix), rev: fromRev}
}

// Rev returns the revision up to which the watcher has looked.
func (w *Watcher) Rev() uint64 { return w.rev }

// Next returns the next event, blocking until there is one or ctx ends.
// It returns ErrResync when the events after the watcher's revision are no
// longer kept (List again and watch from the revision it returns), and
// ErrClosed after the store is closed.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	for {
		if len(w.buf) > 0 {
			ev := w.buf[0]
			w.buf = w.buf[1:]
			return ev, nil
		}
		changed := w.s.Changed()
		w.s.mu.Lock()
		closed := w.s.closed
		w.s.mu.Unlock()
		if closed {
			return Event{}, ErrClosed
		}
		if err := w.fill(); err != nil {
			return Event{}, err
		}
		if len(w.buf) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-changed:
		}
	}
}

func (w *Watcher) fill() error {
	return w.s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		floor, cur := getU64(m.Get(kRevFloor)), getU64(m.Get(kRev))
		if w.rev < floor || w.rev > cur {
			return fmt.Errorf("watch %q from revision %d (kept %d to %d): %w", w.prefix, w.rev, floor, cur, ErrResync)
		}
		c := tx.Bucket(bRevs).Cursor()
		n := 0
		for k, v := c.Seek(u64(w.rev + 1)); k != nil && n < 1000; k, v = c.Next() {
			n++
			w.rev = getU64(k)
			d := crdt.NewDecoder(v)
			key := d.String(crdt.MaxKeyLen)
			rec := d.Raw(1 << 30)
			if err := d.Err(); err != nil {
				return fmt.Errorf("read revision %d: %w", w.rev, err)
			}
			if !bytes.HasPrefix([]byte(key), w.prefix) {
				continue
			}
			ev := Event{Rev: w.rev, Key: key}
			if len(rec) > 0 {
				r, err := crdt.DecodeRecord(rec)
				if err != nil {
					return fmt.Errorf("read revision %d: %w", w.rev, err)
				}
				ev.Record = r
			}
			w.buf = append(w.buf, ev)
		}
		return nil
	})
}
