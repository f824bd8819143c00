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
			var a *ack
			if b := ab.Get(k); b != nil {
				if x, err := decodeAck(b); err == nil {
					a = &x
				}
			}
			if inc := bannedIncarnation(string(k), a, mine); inc > getU64(rb.Get(k)) {
				if err := rb.Put(k, u64(inc)); err != nil {
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
// are ignored. An ack under a newer incarnation makes the node a member
// in good standing again; its mark stays, so that messages of the old
// incarnation still in flight are refused.
func (s *Store) Ack(node, origin string, vv crdt.VersionVector) error {
	if node == s.cfg.NodeID {
		return nil
	}
	now := s.cfg.Now().UnixMilli()
	// A quiet cluster acknowledges the same vector every second: skip the
	// disk write unless something changed or the last one is getting old.
	fresh := false
	s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bAcks).Get([]byte(node)); b != nil {
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
		rb, ab := tx.Bucket(bResync), tx.Bucket(bAcks)
		if rb.Get(k) != nil {
			if isBanned(rb, origin) {
				return nil
			}
			if prev, ok := ackOrigin(ab, k); !ok || isBanned(rb, prev) {
				s.cfg.Logger.Info("member resynced under a new incarnation", "node", node, "origin", origin)
			}
		}
		return ab.Put(k, encodeAck(ack{at: now, origin: origin, vv: vv}))
	})
}

// ackOrigin returns the origin of the member's last acknowledgement.
func ackOrigin(ab *bolt.Bucket, node []byte) (string, bool) {
	b := ab.Get(node)
	if b == nil {
		return "", false
	}
	a, err := decodeAck(b)
	return a.origin, err == nil
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

// quorate reports whether self and the live members (heard from within
// the rejoin horizon) are a quorum of all members (self included, marked
// ones too): more than half, or exactly half including the lowest node ID.
// Two disjoint groups judging the same member list can never both be
// quorate, so at most one side of a partition expels the other.
func quorate(self string, members, live []string) bool {
	n, l := len(members)+1, len(live)+1
	if 2*l != n {
		return 2*l > n
	}
	lowest := self
	for _, m := range members {
		lowest = min(lowest, m)
	}
	return lowest == self || slices.Contains(live, lowest)
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
			h := heard{m: m, since: time.UnixMilli(int64(getU64(mb.Get(k))))}
			if b := ab.Get(k); b != nil {
				x, err := decodeAck(b)
				if err != nil {
					return fmt.Errorf("read ack of %q: %w", m, err)
				}
				h.a, h.since = &x, time.UnixMilli(x.at)
			}
			if rb.Get(k) != nil && (h.a == nil || isBanned(rb, h.a.origin)) {
				continue // marked for resync, not back yet: no longer holds collection back
			}
			if now.Sub(h.since) > horizon {
				silent = append(silent, h)
			} else {
				live = append(live, h)
			}
		}
		var liveIDs []string
		for _, h := range live {
			liveIDs = append(liveIDs, h.m)
		}
		if len(silent) > 0 && len(live) == 0 {
			// Everyone is silent: more likely this node was away (this
			// also keeps a two-member cluster from splitting by the tie
			// rule below). Expel nobody; peers will tell this node to reset.
			st.Blocked = "no member heard from within the rejoin horizon: this node may be the one that was away"
			return nil
		}
		if len(silent) > 0 && !quorate(s.cfg.NodeID, members, liveIDs) {
			// This node hears too few members to decide for the cluster:
			// it may be on the minority side of a partition. Expel nobody
			// and keep every tombstone; whoever holds a quorum expels this
			// side, and this node resets when it meets them.
			st.Blocked = fmt.Sprintf("heard from %d of %d members within the rejoin horizon, not a quorum: keeping tombstones, expelling nobody", len(live)+1, len(members)+1)
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

// ResyncMarks returns the members marked for resync here: node ID → the
// highest incarnation that must not be merged any more.
func (s *Store) ResyncMarks() (crdt.VersionVector, error) {
	marks := crdt.VersionVector{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bResync).ForEach(func(k, v []byte) error {
			marks[string(k)] = getU64(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read resync marks: %w", err)
	}
	return marks, nil
}

// AdoptResync takes over resync marks made by another node (node ID →
// incarnation, as ResyncMarks returns them), so that a decision to expel
// a node is kept by every node, not only by those that saw it silent. A
// mark naming this node is ignored (this node resets when a peer answers
// it with a reset), and so is one older than an incarnation the node has
// since acknowledged under. It reports whether any mark was new here.
func (s *Store) AdoptResync(marks crdt.VersionVector) (bool, error) {
	if len(marks) == 0 {
		return false, nil
	}
	added := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		ab, rb := tx.Bucket(bAcks), tx.Bucket(bResync)
		for _, node := range marks.Origins() {
			inc := marks[node]
			k := []byte(node)
			if node == s.cfg.NodeID || inc == 0 || inc <= getU64(rb.Get(k)) {
				continue
			}
			if prev, ok := ackOrigin(ab, k); ok {
				if _, acked := splitOrigin(prev); acked > inc {
					continue
				}
			}
			if err := rb.Put(k, u64(inc)); err != nil {
				return err
			}
			added = true
			s.cfg.Logger.Warn("member expelled by another node (silent past the rejoin horizon): it must resync from a snapshot when it returns",
				"node", node, "incarnation", inc)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("adopt resync marks: %w", err)
	}
	return added, nil
}
