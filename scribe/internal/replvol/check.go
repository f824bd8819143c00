package replvol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// Check verifies that every up-to-date replica of every extent agrees with
// the Volume and with the others: its chunk carries the extent's stamp
// generation and written-block bitmap, and its data is byte for byte the
// same. Extents marked unavailable and replicas on nodes that cannot be
// reached now are skipped (the Volume drops those on its next request).
// Run it while no request is in flight (it waits for write-back writes
// still on their way); it returns every problem found, joined.
func (v *Volume) Check(ctx context.Context) error {
	v.wb.drain() // replicas differ while write-back writes are in flight
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	v.mu.Lock()
	es := make([]uint64, 0, len(v.extents))
	for e := range v.extents {
		es = append(es, e)
	}
	v.mu.Unlock()
	slices.Sort(es)

	// The chunks of the VSD on every node holding a replica.
	chunks := map[string]map[chunkstore.ChunkKey]chunkstore.ChunkInfo{}
	list := func(node string) (map[chunkstore.ChunkKey]chunkstore.ChunkInfo, error) {
		if m, ok := chunks[node]; ok {
			return m, nil
		}
		r, err := v.cfg.Pool.Replica(node)
		if err != nil {
			return nil, err
		}
		m := map[chunkstore.ChunkKey]chunkstore.ChunkInfo{}
		err = v.do(ctx, func(ctx context.Context) error {
			cs, err := r.Chunks(ctx, v.cfg.VSD)
			for _, c := range cs {
				m[c.Key] = c.ChunkInfo
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		chunks[node] = m
		return m, nil
	}

	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return err
		}
		v.mu.Lock()
		ex := v.extents[e]
		v.mu.Unlock()
		ex.mu.RLock()
		present, unavailable, gen, reps := ex.present, ex.unavailable, ex.gen, slices.Clone(ex.replicas)
		ex.mu.RUnlock()
		if !present || unavailable {
			continue
		}
		ex.bmu.Lock()
		written := slices.Clone(ex.written)
		ex.bmu.Unlock()
		var first []byte
		for _, l := range reps {
			if !v.reachable(l.node) {
				continue
			}
			m, err := list(l.node)
			if err != nil {
				bad("extent %d: replica on node %s: %w", e, l.node, err)
				continue
			}
			info, ok := m[v.key(e)]
			switch {
			case !ok && bytes.Count(written, []byte{0}) != len(written):
				bad("extent %d: replica on node %s has no chunk but %d bytes are written", e, l.node, len(written))
			case ok && info.Stamp.Gen != gen:
				bad("extent %d: replica on node %s at generation %d, the Volume at %d", e, l.node, info.Stamp.Gen, gen)
			case ok && !bytes.Equal(info.Written, written):
				bad("extent %d: replica on node %s has another written-block bitmap than the Volume", e, l.node)
			}
			data := make([]byte, v.chunk)
			r, err := v.cfg.Pool.Replica(l.node)
			if err == nil {
				err = v.do(ctx, func(ctx context.Context) error { return r.Read(ctx, l.disk, v.key(e), 0, data) })
			}
			if err != nil {
				bad("extent %d: read replica on node %s: %w", e, l.node, err)
				continue
			}
			if first == nil {
				first = data
			} else if !bytes.Equal(first, data) {
				bad("extent %d: replica on node %s holds other data than replica on node %s", e, l.node, reps[0].node)
			}
		}
	}
	return errors.Join(problems...)
}
