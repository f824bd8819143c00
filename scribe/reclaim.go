package scribe

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
)

// freedField is the field of a "vsd-deleted/ID" record in which node
// NODE says it freed the VSD's chunks: "freed-NODE" = RFC 3339 time.
const freedFieldPrefix = "freed-"

// retiredEpoch fences a removed VSD on a node: no owner can write it again.
const retiredEpoch = math.MaxUint64

// reclaim frees, on this node's disks, the chunks of every VSD recorded
// under DeletedPrefix, and collects those records. The rule (docs/scribe.md
// "Removing a VSD"): removal wins over any open.
//
//   - An open VSD whose ID is removed refuses all I/O from the next round
//     on ("the VSD was removed") and is skipped until its sessions end.
//   - Otherwise the node first fences the VSD at the highest epoch (in its
//     generation register, so it outlives a restart): no owner, however
//     late, can write or allocate a chunk of it here again. Then it frees
//     the chunks and records "freed-NODE" in the vsd-deleted/ record.
//   - Once every member that has not left recorded it, any node deletes
//     the record. A member that is down keeps the record until it returns
//     (and frees its chunks) or is removed from the cluster.
func (s *Scribe) reclaim(ctx context.Context, st *storage) {
	l, err := s.peer.ListState(ctx, DeletedPrefix)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Warn("list removed vsds", "err", err)
		}
		return
	}
	if len(l.Records) == 0 {
		return
	}
	s.vmu.Lock()
	open := map[string]*openVSD{}
	for _, o := range s.open {
		open[o.rec.ID.String()] = o
	}
	s.vmu.Unlock()
	var members []client.Member
	for _, r := range l.Records {
		idText := strings.TrimPrefix(r.Key, DeletedPrefix)
		name := r.Fields["name"].Value
		if o := open[idText]; o != nil {
			if !o.removed.Swap(true) {
				s.cfg.Log.Warn("vsd removed while open here: its I/O is refused from now on; its chunks are freed once its clients disconnect", "vsd", name, "id", idText)
			}
			continue
		}
		id, err := parseID(idText)
		if err != nil {
			continue
		}
		if !st.reclaimed[idText] && s.reclaimOne(ctx, st, name, idText, id) {
			st.reclaimed[idText] = true
		}
		if !st.reclaimed[idText] {
			continue
		}
		mine := freedFieldPrefix + st.nodeID
		if _, ok := r.Fields[mine]; !ok {
			if _, err := s.peer.PutState(ctx, r.Key, map[string]string{mine: s.cfg.Now().UTC().Format(time.RFC3339)}); err != nil {
				s.cfg.Log.Warn("record that this node freed a removed vsd", "vsd", name, "err", err)
			}
			continue // collected in a later round, once this is seen
		}
		if members == nil {
			if members, err = s.peer.Nodes(ctx); err != nil {
				s.cfg.Log.Warn("list members to collect removed vsds", "err", err)
				return
			}
		}
		all := true
		for _, m := range members {
			if _, ok := r.Fields[freedFieldPrefix+m.ID]; !ok && m.State != client.StateLeft {
				all = false
				break
			}
		}
		if all {
			if _, err := s.peer.DeleteState(ctx, r.Key); err != nil {
				s.cfg.Log.Warn("collect the record of a removed vsd", "vsd", name, "err", err)
			} else {
				s.cfg.Log.Info("every node freed a removed vsd: record collected", "vsd", name, "id", idText)
			}
		}
	}
}

// reclaimOne fences removed VSD id at the highest epoch and frees its
// chunks on this node's disks; it reports whether all went well.
func (s *Scribe) reclaimOne(ctx context.Context, st *storage, name, idText string, id [16]byte) bool {
	local := st.pool.local
	if err := local.Fence(ctx, id, retiredEpoch); err != nil {
		s.cfg.Log.Warn("fence a removed vsd", "vsd", name, "id", idText, "err", err)
		return false
	}
	freed, failed := 0, 0
	for _, d := range st.disks {
		for _, c := range d.Store.Chunks(id) {
			if err := d.Store.Free(ctx, c.Key, c.Epoch); err != nil {
				failed++
				s.cfg.Log.Warn("free a chunk of a removed vsd", "vsd", name, "id", idText, "disk", d.Path, "err", err)
				continue
			}
			freed++
		}
	}
	if freed > 0 {
		s.cfg.Log.Info("freed the chunks of a removed vsd", "vsd", name, "id", idText, "chunks", freed)
	}
	return failed == 0
}
