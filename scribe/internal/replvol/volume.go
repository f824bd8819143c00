package replvol

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// loc is one replica of an extent: a disk on a node.
type loc struct {
	node string
	disk chunkstore.ID
}

// extent is the owner's view of one extent.
type extent struct {
	mu sync.RWMutex // data requests hold it shared, set changes exclusively

	// Guarded by mu.
	present     bool // the extent has chunks on replicas
	gen         uint64
	replicas    []loc  // up to date
	missing     []loc  // dropped or stale: never served, never reused
	unavailable bool   // no trusted copy reachable
	regGen      uint64 // highest generation registered for it (genreg)

	bmu     sync.Mutex
	written []byte // one bit per block, as the replicas' chunk headers

	omu     sync.Mutex
	writing []*rangeWrite // data changes in flight (see order)
}

// rangeWrite is a data change in flight on [off, end) of an extent.
type rangeWrite struct {
	off, end int64
	// done is made by the first change that waits for this one (under
	// the extent's omu; most never overlap, so most never make one) and
	// closed when this one has finished on every replica.
	done chan struct{}
}

// order waits until no data change in flight overlaps [off, off+n) and
// registers one there; finish ends it. So changes to the same blocks reach
// every replica one after another, in one order: two overlapping writes
// in flight at once (NBD leaves their order to the server) could
// otherwise land in one order on one replica and in the other on the
// next, leaving the replicas different.
func (e *extent) order(off, n int64) *rangeWrite {
	for {
		e.omu.Lock()
		busy := e.overlapping(off, n)
		if busy == nil {
			w := &rangeWrite{off: off, end: off + n}
			e.writing = append(e.writing, w)
			e.omu.Unlock()
			return w
		}
		e.omu.Unlock()
		<-busy
	}
}

// await waits until no data change in flight overlaps [off, off+n): a
// read sees every write acknowledged before it, including those still on
// their way to the replicas (Config.WriteBack).
func (e *extent) await(off, n int64) {
	for {
		e.omu.Lock()
		busy := e.overlapping(off, n)
		e.omu.Unlock()
		if busy == nil {
			return
		}
		<-busy
	}
}

// overlapping returns a channel closed when a change in flight that
// overlaps [off, off+n) finishes, or nil if none does. Called with omu.
func (e *extent) overlapping(off, n int64) chan struct{} {
	for _, w := range e.writing {
		if w.off < off+n && off < w.end {
			if w.done == nil {
				w.done = make(chan struct{})
			}
			return w.done
		}
	}
	return nil
}

// finish ends a change registered by order.
func (e *extent) finish(w *rangeWrite) {
	e.omu.Lock()
	for i, x := range e.writing {
		if x == w {
			last := len(e.writing) - 1
			e.writing[i] = e.writing[last]
			e.writing[last] = nil
			e.writing = e.writing[:last]
			break
		}
	}
	done := w.done
	e.omu.Unlock()
	if done != nil {
		close(done)
	}
}

func (e *extent) stamp() chunkstore.Stamp {
	st := chunkstore.Stamp{Gen: e.gen}
	for i, r := range e.replicas {
		if i < len(st.Members) {
			st.Members[i] = r.disk
		}
	}
	return st
}

// Volume is a replicated VSD.
type Volume struct {
	cfg      Config
	chunk    int64
	minNodes int // fewest replicas of a new extent

	mu      sync.Mutex
	closed  bool
	extents map[uint64]*extent
	written map[string]bool // nodes written to since the last Flush took the set: it syncs them
	flushMu sync.Mutex      // one Flush at a time: a later one waits for the syncs of the one before
	dropped map[string]bool // nodes being or already swept
	reg     registrar       // batches generation register writes

	fan    *fanWorkers // run fanout's calls to all but the first replica
	wb     *writeBack  // writes acknowledged before they reached the replicas (Config.WriteBack)
	sweeps sync.WaitGroup
	stop   context.CancelFunc
	bg     context.Context

	winMu     sync.Mutex
	win       context.Context // shared by requests started before winEnd-Timeout (see timeout)
	winCancel context.CancelFunc
	winEnd    time.Time
}

var _ nbd.Backend = (*Volume)(nil)

// Open fences the VSD at cfg.Epoch on every reachable node, rebuilds the
// extent map from their chunk lists and returns the Volume. It fails with
// ErrFenced when a node has seen a newer epoch and with ErrTooFewNodes
// when too many nodes are unreachable.
func Open(ctx context.Context, cfg Config) (*Volume, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	v := &Volume{cfg: cfg, extents: map[uint64]*extent{}, written: map[string]bool{}, dropped: map[string]bool{}, fan: newFanWorkers(), wb: newWriteBack()}
	sc, err := v.scan(ctx)
	if err != nil {
		v.fan.stop()
		return nil, err
	}
	for _, e := range sc.extents() {
		v.extents[e] = v.resolve(e, sc.copies[e], sc.regs[e], sc.diskReachable)
	}
	v.bg, v.stop = context.WithCancel(context.Background())
	// Extents still naming an unreachable node as a member are served by
	// their reachable replicas; drop that node from them now (registered
	// on a majority, then stamped), so no later owner depends on it.
	for _, n := range sc.unreachable {
		if !cfg.ReadOnly {
			v.sweep(n)
		}
	}
	return v, nil
}

// found is a copy of an extent found on a node.
type found struct {
	loc
	info chunkstore.ChunkInfo
}

// scanned is what scan found.
type scanned struct {
	copies        map[uint64][]found
	regs          map[uint64]genreg.Entry // newest registered per extent
	unreachable   []string                // nodes with disks not reachable
	diskReachable func(chunkstore.ID) bool
}

// extents lists every extent with a copy or a register entry.
func (sc scanned) extents() []uint64 {
	var es []uint64
	for e := range sc.copies {
		es = append(es, e)
	}
	for e := range sc.regs {
		if _, ok := sc.copies[e]; !ok {
			es = append(es, e)
		}
	}
	slices.Sort(es)
	return es
}

// scan fences the VSD on every reachable node, lists its chunks there and
// reads the generation register of every node (fencing it too). It fails
// when a node has seen a newer epoch, too many nodes with disks are
// unreachable, or fewer than a majority of the pool's nodes answered the
// register read. The first scan also learns the chunk size.
func (v *Volume) scan(ctx context.Context) (scanned, error) {
	cfg := v.cfg
	known := map[chunkstore.ID]string{} // disk → node
	var nodes []string
	for _, d := range cfg.Pool.Disks() {
		if _, ok := known[d.ID]; ok {
			continue
		}
		known[d.ID] = d.Node
		if !slices.Contains(nodes, d.Node) {
			nodes = append(nodes, d.Node)
		}
	}
	diskNodes := slices.Clone(nodes)
	for _, n := range cfg.Pool.Nodes() {
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	sort.Strings(nodes)
	if v.minNodes == 0 {
		v.minNodes = min(cfg.Replicas, 2, max(len(diskNodes), 1))
	}
	copies := map[uint64][]found{}
	regs := map[uint64]genreg.Entry{}
	regNodes := 0
	reachable := map[string]bool{}
	var unreachable []string
	chunk := v.chunk
	for _, node := range nodes {
		r, err := cfg.Pool.Replica(node)
		var cs []chunksvc.Chunk
		var stats []chunksvc.DiskStat
		if err == nil && !cfg.ReadOnly {
			err = v.do(ctx, func(ctx context.Context) error { return r.Fence(ctx, cfg.VSD, cfg.Epoch) })
			if errors.Is(err, chunkstore.ErrStaleEpoch) {
				return scanned{}, fmt.Errorf("open VSD %s at epoch %d: node %s: %w: %w", cfg.VSD, cfg.Epoch, node, ErrFenced, err)
			}
		}
		if err == nil {
			err = v.do(ctx, func(ctx context.Context) (err error) { stats, err = r.Stat(ctx); return err })
		}
		if err == nil {
			err = v.do(ctx, func(ctx context.Context) (err error) { cs, err = r.Chunks(ctx, cfg.VSD); return err })
		}
		if err == nil {
			var es []genreg.Entry
			regEpoch := cfg.Epoch
			if cfg.ReadOnly {
				regEpoch = 0 // read without fencing
			}
			rerr := v.do(ctx, func(ctx context.Context) (err error) { es, err = r.RegisterGet(ctx, cfg.VSD, regEpoch); return err })
			switch {
			case errors.Is(rerr, chunkstore.ErrStaleEpoch):
				return scanned{}, fmt.Errorf("open VSD %s at epoch %d: node %s: %w: %w", cfg.VSD, cfg.Epoch, node, ErrFenced, rerr)
			case rerr != nil:
				cfg.Log.Warn("replicated vsd: generation register unreadable", "vsd", cfg.VSD, "node", node, "err", rerr)
			default:
				regNodes++
				for _, e := range es {
					if e.Gen > regs[e.Extent].Gen {
						regs[e.Extent] = e
					}
				}
			}
		}
		if err != nil {
			cfg.Log.Warn("replicated vsd: node unreachable while scanning", "vsd", cfg.VSD, "node", node, "err", err)
			if slices.Contains(diskNodes, node) {
				unreachable = append(unreachable, node)
			}
			continue
		}
		reachable[node] = true
		for _, s := range stats {
			if chunk == 0 {
				chunk = s.ChunkSize
			}
			if s.ChunkSize != chunk {
				return scanned{}, fmt.Errorf("open VSD %s: disk %s has %d-byte chunks, others %d: %w", cfg.VSD, s.ID, s.ChunkSize, chunk, nbd.ErrInvalid)
			}
		}
		for _, c := range cs {
			copies[c.Key.Extent] = append(copies[c.Key.Extent], found{loc{node, c.Disk}, c.ChunkInfo})
		}
	}
	if len(unreachable) >= v.minNodes {
		return scanned{}, fmt.Errorf("open VSD %s: nodes %v unreachable, at most %d may be: %w", cfg.VSD, unreachable, v.minNodes-1, ErrTooFewNodes)
	}
	if need := len(nodes)/2 + 1; regNodes < need {
		return scanned{}, fmt.Errorf("open VSD %s: the generation register answered on %d of %d nodes, %d needed: %w", cfg.VSD, regNodes, len(nodes), need, ErrTooFewNodes)
	}
	if v.chunk == 0 {
		v.chunk = cmp.Or(chunk, chunkstore.DefaultChunkSize)
	}
	return scanned{copies: copies, regs: regs, unreachable: unreachable, diskReachable: func(d chunkstore.ID) bool { n, ok := known[d]; return ok && reachable[n] }}, nil
}

// Rescan looks again at the extents that are unavailable (their newest
// copies name a node that was unreachable): it fences and lists every
// reachable node, as Open does, and makes available the extents whose
// members can now all be checked. Call it when a node comes back. It
// returns how many extents are still unavailable.
func (v *Volume) Rescan(ctx context.Context) (int, error) {
	sc, err := v.scan(ctx)
	if err != nil {
		return 0, err
	}
	v.mu.Lock()
	exs := map[uint64]*extent{}
	for e, ex := range v.extents {
		exs[e] = ex
	}
	v.mu.Unlock()
	left := 0
	for e, ex := range exs {
		ex.mu.Lock()
		if ex.unavailable {
			if fs, reg := sc.copies[e], sc.regs[e]; len(fs) > 0 || reg.Gen > 0 {
				if got := v.resolve(e, fs, reg, sc.diskReachable); !got.unavailable {
					ex.present, ex.unavailable, ex.gen, ex.replicas, ex.missing = got.present, false, got.gen, got.replicas, got.missing
					ex.regGen = max(ex.regGen, got.regGen)
					ex.bmu.Lock()
					ex.written = got.written
					ex.bmu.Unlock()
				}
			}
			if ex.unavailable {
				left++
			}
		}
		ex.mu.Unlock()
	}
	return left, nil
}

// Close stops background work. It does not flush: call Flush first.
func (v *Volume) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()
	v.wb.close()
	v.stop() // ends v.bg, so every shared request window too
	v.winMu.Lock()
	if v.winCancel != nil {
		v.winCancel()
	}
	v.winMu.Unlock()
	v.sweeps.Wait()
	v.fan.stop()
	return nil
}

// do runs f with the per-request timeout.
func (v *Volume) do(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := v.timeout(ctx)
	defer cancel()
	return f(ctx)
}

// timeout returns the context a request to replicas runs under: it ends
// Config.Timeout to 9/8 of it from now. A caller's context with no
// deadline of its own (an NBD request, a write-back write) is replaced by
// one the Volume shares between all requests started within Timeout/8,
// so a request arms no timer: arming one per request woke an idle thread
// each time (about 25 µs of CPU per write and per FLUSH on the owner). A
// shared context ends with the Volume (Close), not with the caller's: a
// request outlives a client that hangs up until its replicas answer or
// time out. A context with a deadline gets a timer of its own, as before.
func (v *Volume) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || v.bg == nil || v.bg.Err() != nil { // (not open yet, or closed: Check)
		return context.WithTimeout(ctx, v.cfg.Timeout)
	}
	now := time.Now()
	v.winMu.Lock()
	defer v.winMu.Unlock()
	if v.win == nil || v.winEnd.Before(now.Add(v.cfg.Timeout)) {
		// The window before ends by itself when its deadline passes
		// (its timer fires and releases it), or with v.bg.
		v.winEnd = now.Add(v.cfg.Timeout + v.cfg.Timeout/8)
		v.win, v.winCancel = context.WithDeadline(v.bg, v.winEnd)
	}
	return v.win, func() {}
}

func (v *Volume) get(e uint64) (*extent, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, ErrClosed
	}
	ex := v.extents[e]
	if ex == nil {
		ex = &extent{}
		v.extents[e] = ex
	}
	return ex, nil
}

// peek returns extent e if the Volume knows it, without creating it.
func (v *Volume) peek(e uint64) (*extent, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, ErrClosed
	}
	return v.extents[e], nil
}

// Status reports the replication state.
func (v *Volume) Status() Status {
	v.mu.Lock()
	keys := make([]uint64, 0, len(v.extents))
	for e := range v.extents {
		keys = append(keys, e)
	}
	v.mu.Unlock()
	slices.Sort(keys)
	var st Status
	for _, e := range keys {
		v.mu.Lock()
		ex := v.extents[e]
		v.mu.Unlock()
		ex.mu.RLock()
		st.StaleCopies += len(ex.missing)
		if ex.unavailable {
			st.Unavailable = append(st.Unavailable, e)
		}
		if ex.present {
			ex.bmu.Lock()
			n := 0
			for _, b := range ex.written {
				for ; b != 0; b &= b - 1 {
					n++
				}
			}
			ex.bmu.Unlock()
			if n > 0 {
				st.Extents++
			}
			st.BytesUsed += int64(n) * chunkstore.BlockSize * int64(len(ex.replicas))
			if len(ex.replicas) < v.cfg.Replicas {
				st.Degraded = append(st.Degraded, DegradedExtent{Extent: e, Replicas: v.disks(ex.replicas), Missing: v.disks(ex.missing)})
			}
		}
		ex.mu.RUnlock()
	}
	return st
}

func (v *Volume) disks(ls []loc) []Disk {
	var out []Disk
	for _, l := range ls {
		out = append(out, Disk{Node: l.node, ID: l.disk})
	}
	return out
}

// Size implements nbd.Backend.
func (v *Volume) Size() int64 { return v.cfg.Size }
