package scribe

import (
	"context"
	"strings"
)

// reclaim frees, on this node's disks, the chunks of every VSD recorded
// under DeletedPrefix. A VSD open here is skipped (it was removed with
// --force while in use: its chunks go once it is closed). IDs whose
// chunks are gone are remembered so later rounds skip them.
func (s *Scribe) reclaim(ctx context.Context, st *storage) {
	l, err := s.peer.ListState(ctx, DeletedPrefix)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Log.Warn("list removed vsds", "err", err)
		}
		return
	}
	s.vmu.Lock()
	open := map[string]bool{}
	for _, o := range s.open {
		open[o.rec.ID.String()] = true
	}
	s.vmu.Unlock()
	for _, r := range l.Records {
		idText := strings.TrimPrefix(r.Key, DeletedPrefix)
		if st.reclaimed[idText] || open[idText] {
			continue
		}
		id, err := parseID(idText)
		if err != nil {
			continue
		}
		freed, failed := 0, 0
		for _, d := range st.disks {
			for _, c := range d.Store.Chunks(id) {
				if err := d.Store.Free(ctx, c.Key, c.Epoch); err != nil {
					failed++
					s.cfg.Log.Warn("free a chunk of a removed vsd", "vsd", r.Fields["name"].Value, "id", idText, "disk", d.Path, "err", err)
					continue
				}
				freed++
			}
		}
		if freed > 0 {
			s.cfg.Log.Info("freed the chunks of a removed vsd", "vsd", r.Fields["name"].Value, "id", idText, "chunks", freed)
		}
		if failed == 0 {
			st.reclaimed[idText] = true
		}
	}
}
