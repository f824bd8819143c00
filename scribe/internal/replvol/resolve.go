package replvol

import (
	"slices"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// resolve decides, from the copies fs of extent e a scan found and the
// newest generation registered for it (reg, Gen 0 if none), what the
// extent is: its replicas, its stale copies, a hole, or unavailable. See
// doc.go and docs/scribe.md "Failover".
//
// Let cg be the newest generation among the copies.
//
//   - reg.Gen > cg: an owner registered a drop whose stamp no reachable
//     copy carries. If a member the register names is unreachable, it may
//     hold that generation with newer data: unavailable. Otherwise the
//     stamp never landed (so nothing after the drop was acknowledged) and
//     the members' newest copies are current, the dropped ones not.
//   - reg.Gen <= cg: no drop beyond cg was ever acknowledged (it would be
//     registered on a majority, and the scan read one), so no copy newer
//     than cg exists: the copies at cg are current even when a member
//     they name is unreachable. Such a member stays in the replica set, to
//     be dropped (registered, stamped) by the first write or the sweep
//     that Open starts.
//
// In both cases a reachable member without any copy freed the extent
// (TRIM) after the others went stale, so the extent is a hole, and a
// reachable member holding an older generation is stale.
func (v *Volume) resolve(e uint64, fs []found, reg genreg.Entry, diskReachable func(chunkstore.ID) bool) *extent {
	ex := &extent{regGen: reg.Gen}
	var cg uint64
	byDisk := map[chunkstore.ID]found{}
	for _, f := range fs {
		cg = max(cg, f.info.Stamp.Gen)
		byDisk[f.disk] = f
	}
	var members []chunkstore.ID
	add := func(m chunkstore.ID) {
		if m != (chunkstore.ID{}) && !slices.Contains(members, m) {
			members = append(members, m)
		}
	}
	registered := reg.Gen > cg
	if registered {
		for _, m := range reg.Members {
			add(m)
		}
	} else {
		for _, f := range fs {
			if f.info.Stamp.Gen != cg {
				continue
			}
			for _, m := range f.info.Stamp.Members {
				add(m)
			}
			if f.info.Stamp.Members == ([chunkstore.MaxMembers]chunkstore.ID{}) {
				add(f.disk) // written without a stamp
			}
		}
	}
	var held []found // reachable members' copies
	var away []chunkstore.ID
	freed := false
	for _, m := range members {
		f, ok := byDisk[m]
		switch {
		case !diskReachable(m):
			away = append(away, m)
		case !ok:
			freed = true
		default:
			held = append(held, f)
		}
	}
	best := uint64(0)
	for _, f := range held {
		best = max(best, f.info.Stamp.Gen)
	}
	if !registered {
		best = cg
	}
	for _, f := range held {
		if f.info.Stamp.Gen == best {
			ex.replicas = append(ex.replicas, f.loc)
			if ex.written == nil {
				ex.written = f.info.Written
			}
		}
	}
	// The copies' generation: a registered drop whose stamp never landed
	// stays in regGen (the next generation given is above it) and keeps
	// deciding, through the register, until a later drop supersedes it.
	ex.gen = best
	for _, f := range fs {
		if !slices.Contains(ex.replicas, f.loc) {
			ex.missing = append(ex.missing, f.loc)
		}
	}
	switch {
	case registered && len(away) > 0, len(ex.replicas) == 0 && len(away) > 0 && !freed:
		ex.replicas, ex.written = nil, nil
		ex.unavailable = true
		v.cfg.Log.Warn("replicated vsd: extent unavailable, a replica that may hold its newest generation is unreachable", "vsd", v.cfg.VSD, "extent", e, "generation", ex.gen)
	case freed || len(ex.replicas) == 0:
		// The extent was freed on a member after these copies went
		// stale (or nothing is left): every copy is stale, a hole.
		ex.missing = append(ex.missing, ex.replicas...)
		ex.replicas, ex.written = nil, nil
	default:
		// Unreachable members stay replicas until dropped: the first
		// request to them fails and drops them (registered first).
		for _, m := range away {
			ex.replicas = append(ex.replicas, loc{node: v.nodeOf(m), disk: m})
		}
		ex.present = true
	}
	return ex
}

// nodeOf names the node holding disk d ("" if the pool does not list it).
func (v *Volume) nodeOf(d chunkstore.ID) string {
	for _, disk := range v.cfg.Pool.Disks() {
		if disk.ID == d {
			return disk.Node
		}
	}
	return ""
}
