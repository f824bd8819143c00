package statestore

import (
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

// SetMembers records the current cluster members by node ID (this node
// is always one): all members, alive or not, but not those removed. A
// node no longer listed is marked for resync, so that if it is added
// again it reloads from a snapshot instead of merging state that may
// predate deletes collected without it.
func (s *Store) SetMembers(ids []string) error {
	now := s.cfg.Now().UnixMilli()
	err := s.db.Update(func(tx *bolt.Tx) error {
		mb, ab, rb := tx.Bucket(bMembers), tx.Bucket(bAcks), tx.Bucket(bResync)
		want := map[string]bool{}
		for _, id := range ids {
			if id != s.cfg.NodeID {
				want[id] = true
			}
		}
		var drop [][]byte
		mb.ForEach(func(k, _ []byte) error {
			if !want[string(k)] {
				drop = append(drop, slices.Clone(k))
			}
			return nil
		})
		mine := readVV(tx)
		for _, k := range drop {
			if rb.Get(k) == nil {
				var a *ack
				if b := ab.Get(k); b != nil {
					if x, err := decodeAck(b); err == nil {
						a = &x
					}
				}
				if err := rb.Put(k, u64(bannedIncarnation(string(k), a, mine))); err != nil {
					return err
				}
				s.cfg.Logger.Info("member removed: it must resync from a snapshot if it is added again", "node", string(k))
			}
			for _, b := range []*bolt.Bucket{mb, ab} {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		for id := range want {
			if mb.Get([]byte(id)) == nil {
				if err := mb.Put([]byte(id), u64(uint64(now))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set members: %w", err)
	}
	return nil
}

// bannedIncarnation is the highest incarnation of node that a resync mark
// must cover: the one it acknowledged with and any in our version vector,
// at least 1.
func bannedIncarnation(node string, a *ack, mine crdt.VersionVector) uint64 {
	inc := uint64(1)
	if a != nil {
		if _, i := splitOrigin(a.origin); i > inc {
			inc = i
		}
	}
	for o := range mine {
		if n, i := splitOrigin(o); n == node && i > inc {
			inc = i
		}
	}
	return inc
}

// Members returns the member node IDs other than this node, sorted.
func (s *Store) Members() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bMembers).ForEach(func(k, _ []byte) error { out = append(out, string(k)); return nil })
	})
	return out, err
}

// ackRefresh is how old an unchanged acknowledgement may get before it is
// written again (it dates the member's last sign of life).
const ackRefresh = time.Minute

type ack struct {
	at     int64 // unix ms
	origin string
	vv     crdt.VersionVector
}

func encodeAck(a ack) []byte {
	e := &crdt.Encoder{}
	e.Uvarint(uint64(a.at))
	e.String(a.origin)
	e.VV(a.vv)
	return e.Bytes()
}

func decodeAck(b []byte) (ack, error) {
	d := crdt.NewDecoder(b)
	a := ack{at: int64(d.Uvarint()), origin: d.String(crdt.MaxOriginLen), vv: d.VV()}
	return a, d.Err()
}

// Ack records that member node, writing under origin, has applied every
// change in vv. Acks of non-members, and of an origin marked for resync,
// are ignored; an ack under a newer incarnation clears the resync mark.
func (s *Store) Ack(node, origin string, vv crdt.VersionVector) error {
	if node == s.cfg.NodeID {
		return nil
	}
	now := s.cfg.Now().UnixMilli()
	// A quiet cluster acknowledges the same vector every second: skip the
	// disk write unless something changed or the last one is getting old.
	fresh := false
	s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bAcks).Get([]byte(node)); b != nil && tx.Bucket(bResync).Get([]byte(node)) == nil {
			a, err := decodeAck(b)
			fresh = err == nil && a.origin == origin && a.vv.Equal(vv) && now-a.at < ackRefresh.Milliseconds()
		}
		return nil
	})
	if fresh {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		k := []byte(node)
		if tx.Bucket(bMembers).Get(k) == nil {
			return nil
		}
		rb := tx.Bucket(bResync)
		if rb.Get(k) != nil {
			if isBanned(rb, origin) {
				return nil
			}
			if err := rb.Delete(k); err != nil {
				return err
			}
			s.cfg.Logger.Info("member resynced under a new incarnation", "node", node, "origin", origin)
		}
		return tx.Bucket(bAcks).Put(k, encodeAck(ack{at: now, origin: origin, vv: vv}))
	})
}

// isBanned reports whether origin's node is marked for resync and origin
// is of the incarnation marked or an older one.
func isBanned(rb *bolt.Bucket, origin string) bool {
	node, inc := splitOrigin(origin)
	b := rb.Get([]byte(node))
	return b != nil && inc <= getU64(b)
}

// MustResync reports whether origin belongs to a member that was silent
// past the rejoin horizon (and has not come back under a new incarnation
// since): do not merge its changes, send it a reset.
func (s *Store) MustResync(node, origin string) (bool, error) {
	var r bool
	err := s.db.View(func(tx *bolt.Tx) error {
		n, _ := splitOrigin(origin)
		r = n == node && isBanned(tx.Bucket(bResync), origin)
		return nil
	})
	return r, err
}

// GCStats reports one tombstone collection pass.
type GCStats struct {
	Collected int                // records whose tombstones were collected
	Expelled  []string           // members newly marked for resync
	Blocked   string             // why nothing could be collected, if so
	Stable    crdt.VersionVector // changes every member has acknowledged
}

// CollectGarbage marks members silent past the rejoin horizon for resync
// and collects every causally stable tombstone (see the package doc).
func (s *Store) CollectGarbage() (GCStats, error) {
	var st GCStats
	now := s.cfg.Now()
	horizon := s.cfg.RejoinHorizon
	err := s.db.Update(func(tx *bolt.Tx) error {
		mine := readVV(tx)
		vvs := []crdt.VersionVector{mine}
		mb, ab, rb := tx.Bucket(bMembers), tx.Bucket(bAcks), tx.Bucket(bResync)
		var members []string
		mb.ForEach(func(k, _ []byte) error { members = append(members, string(k)); return nil })
		type heard struct {
			m     string
			since time.Time
			a     *ack
		}
		var live, silent []heard
		for _, m := range members {
			k := []byte(m)
			if rb.Get(k) != nil {
				continue // marked for resync: no longer holds collection back
			}
			h := heard{m: m, since: time.UnixMilli(int64(getU64(mb.Get(k))))}
			if b := ab.Get(k); b != nil {
				x, err := decodeAck(b)
				if err != nil {
					return fmt.Errorf("read ack of %q: %w", m, err)
				}
				h.a, h.since = &x, time.UnixMilli(x.at)
			}
			if now.Sub(h.since) > horizon {
				silent = append(silent, h)
			} else {
				live = append(live, h)
			}
		}
		if len(live) == 0 && len(silent) > 0 {
			// Everyone is silent: more likely this node was away. Expel
			// nobody; peers will tell this node to reset.
			st.Blocked = "no member heard from within the rejoin horizon: this node may be the one that was away"
			return nil
		}
		for _, h := range silent {
			if err := rb.Put([]byte(h.m), u64(bannedIncarnation(h.m, h.a, mine))); err != nil {
				return err
			}
			st.Expelled = append(st.Expelled, h.m)
			s.cfg.Logger.Warn("member silent past the rejoin horizon: it must resync from a snapshot when it returns",
				"node", h.m, "last_heard", h.since, "horizon", horizon)
		}
		for _, h := range live {
			if h.a == nil {
				st.Blocked = fmt.Sprintf("no acknowledgement from %s yet", h.m)
				return nil
			}
			if !mine.Dominates(h.a.vv) {
				st.Blocked = fmt.Sprintf("not yet applied everything %s had", h.m)
				return nil
			}
			vvs = append(vvs, h.a.vv)
		}
		st.Stable = crdt.Min(vvs...)
		var keys []string
		tx.Bucket(bTombs).ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
		for _, key := range keys {
			r, err := getRecord(tx, key)
			if err != nil {
				return err
			}
			if r == nil {
				if err := tx.Bucket(bTombs).Delete([]byte(key)); err != nil {
					return err
				}
				continue
			}
			old := r.Clone()
			if !r.CollectTombstones(st.Stable.Covers) {
				continue
			}
			if _, err := s.storeRecord(tx, key, old, r); err != nil {
				return err
			}
			st.Collected++
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("collect tombstones: %w", err)
	}
	return st, nil
}
