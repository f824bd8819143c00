package replvol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/placement"
)

func (v *Volume) pieces(off, length int64) ([]chunkstore.Span, error) {
	if err := v.inRange(off, length); err != nil {
		return nil, err
	}
	return chunkstore.Spans(off, length, v.chunk), nil
}

// inRange fails unless [off, off+length) lies within the volume.
func (v *Volume) inRange(off, length int64) error {
	if off < 0 || length < 0 || off+length > v.cfg.Size || off+length < off {
		return fmt.Errorf("range [%d,+%d) outside the %d-byte volume: %w", off, length, v.cfg.Size, nbd.ErrInvalid)
	}
	return nil
}

func (v *Volume) key(e uint64) chunkstore.ChunkKey {
	return chunkstore.ChunkKey{VSD: v.cfg.VSD, Extent: e}
}

// nextGen is the generation after g: above every generation an owner
// with an older epoch can have stamped.
func (v *Volume) nextGen(g uint64) uint64 { return max(g+1, v.cfg.Epoch<<32) }

// startFunc sends an operation's request to a replica reached over the
// network without waiting for its response (chunksvc.Client's Start
// methods); fanout waits for it.
type startFunc func(ctx context.Context, c *chunksvc.Client, l loc) chunksvc.Pending

// fanout runs f against every replica in parallel, all under one
// per-request timeout, and returns their errors in order: the first on
// the calling goroutine, the rest on fan workers.
func (v *Volume) fanout(ctx context.Context, reps []loc, f func(context.Context, Replica, loc) error) []error {
	return v.fanoutStart(ctx, reps, f, nil)
}

// fanoutStart is fanout with the requests to network replicas
// (chunksvc.Client) pipelined when start is set: they are sent first with
// start, without waiting; the other replicas' calls run next (the first
// on the calling goroutine, the rest on fan workers); then the network
// responses are collected, in order. A write to a local and a remote
// replica thus overlaps the two without handing either to another
// goroutine. Replicas are looked up (Pool.Replica) one after another
// before any call runs.
func (v *Volume) fanoutStart(ctx context.Context, reps []loc, f func(context.Context, Replica, loc) error, start startFunc) []error {
	return v.fanoutSent(ctx, reps, f, start, nil)
}

// fanoutSent is fanoutStart that, when sent is set, marks every replica
// it reached as written (for Flush) and calls sent once the network
// requests are sent and the other replicas' calls have returned, before
// it waits for the network responses. A Sync sent afterwards on the same
// connections covers the requests (chunksvc.Client.SyncCoversSent).
func (v *Volume) fanoutSent(ctx context.Context, reps []loc, f func(context.Context, Replica, loc) error, start startFunc, sent func()) []error {
	errs := make([]error, len(reps))
	ctx, cancel := v.timeout(ctx)
	defer cancel()
	const (
		skip  = iota // failed to resolve: errs holds why
		call         // run f
		async        // started; wait for pend
	)
	var (
		kindBuf [chunkstore.MaxMembers]uint8
		repBuf  [chunkstore.MaxMembers]Replica
		pendBuf [chunkstore.MaxMembers]chunksvc.Pending
	)
	kind, rs, pend := kindBuf[:], repBuf[:], pendBuf[:]
	if len(reps) > len(kindBuf) {
		kind, rs, pend = make([]uint8, len(reps)), make([]Replica, len(reps)), make([]chunksvc.Pending, len(reps))
	}
	for i, l := range reps {
		r, err := v.cfg.Pool.Replica(l.node)
		if err != nil {
			kind[i], errs[i] = skip, fmt.Errorf("node %s: %w: %w", l.node, chunksvc.ErrUnreachable, err)
			continue
		}
		if c, ok := r.(*chunksvc.Client); ok && start != nil {
			kind[i], pend[i] = async, start(ctx, c, l)
			continue
		}
		kind[i], rs[i] = call, r
	}
	first := -1
	var wg sync.WaitGroup
	for i := range reps {
		switch {
		case kind[i] != call:
		case first < 0:
			first = i
		default:
			wg.Add(1)
			v.fan.run(func() {
				defer wg.Done()
				errs[i] = f(ctx, rs[i], reps[i])
			})
		}
	}
	if first >= 0 {
		errs[first] = f(ctx, rs[first], reps[first])
	}
	wg.Wait()
	if sent != nil {
		var reachedBuf [chunkstore.MaxMembers]loc
		reached := reachedBuf[:0]
		for i, r := range reps {
			if kind[i] != skip {
				reached = append(reached, r)
			}
		}
		v.markSent(reached)
		sent()
	}
	for i := range reps {
		if kind[i] == async {
			errs[i] = pend[i].Wait(ctx)
		}
	}
	return errs
}

// fanWorkers run fanout's calls to the other replicas. A call goes to an
// idle worker if there is one, else to a new one; workers stay until the
// Volume closes, so their stacks, grown once by the write path (TLS,
// pwrite), are reused instead of grown for every write (which cost ~5 %
// of the CPU of 4 KiB writes). After stop, run calls f itself.
type fanWorkers struct {
	work chan func()
	quit chan struct{}

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func newFanWorkers() *fanWorkers {
	return &fanWorkers{work: make(chan func()), quit: make(chan struct{})}
}

func (w *fanWorkers) run(f func()) {
	select {
	case w.work <- f:
		return
	default:
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		f()
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	go func() {
		defer w.wg.Done()
		f()
		for {
			select {
			case f := <-w.work:
				f()
			case <-w.quit:
				return
			}
		}
	}()
}

// stop ends the idle workers and waits for the busy ones.
func (w *fanWorkers) stop() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	close(w.quit)
	w.wg.Wait()
}

// markSent records that a write was sent to (or done on) every node of
// reps: Flush syncs them (see fanoutSent).
func (v *Volume) markSent(reps []loc) {
	v.mu.Lock()
	for _, r := range reps {
		v.written[r.node] = true
	}
	v.mu.Unlock()
}

// markWritten records that node completed a write: Flush syncs it.
func (v *Volume) markWritten(reps []loc, errs []error) {
	v.mu.Lock()
	for i, r := range reps {
		if errs[i] == nil {
			v.written[r.node] = true
		}
	}
	v.mu.Unlock()
}

func fenced(err error) error {
	return fmt.Errorf("%w: %w: %w", nbd.ErrReadOnly, ErrFenced, err)
}

// modify applies op, a change of [off, off+n) of extent e, to every
// replica of e, after any overlapping change in flight (extent.order). An
// absent extent is placed first when create is set, else left alone.
// Replicas that fail are dropped (see drop) before modify returns.
func (v *Volume) modify(ctx context.Context, e uint64, off, n int64, create bool, op func(context.Context, Replica, loc, chunkstore.Stamp) error, start func(context.Context, *chunksvc.Client, loc, chunkstore.Stamp) chunksvc.Pending) error {
	if v.cfg.ReadOnly {
		return fmt.Errorf("extent %d: %w: the VSD is read-only", e, nbd.ErrReadOnly)
	}
	get := v.peek
	if create {
		get = v.get
	}
	ex, err := get(e)
	if err != nil || ex == nil {
		return err
	}
	w := ex.order(off, n)
	defer ex.finish(w)
	return v.apply(ctx, e, ex, create, op, start, nil)
}

// apply is modify's work once the change is ordered on extent ex; sent,
// if set, is called as fanoutSent describes (or not at all, when apply
// fails before it reaches the replicas).
func (v *Volume) apply(ctx context.Context, e uint64, ex *extent, create bool, op func(context.Context, Replica, loc, chunkstore.Stamp) error, start func(context.Context, *chunksvc.Client, loc, chunkstore.Stamp) chunksvc.Pending, sent func()) error {
	for {
		ex.mu.RLock()
		if ex.unavailable {
			ex.mu.RUnlock()
			return fmt.Errorf("extent %d: %w", e, ErrUnavailable)
		}
		if !ex.present {
			ex.mu.RUnlock()
			if !create {
				return nil
			}
			if err := v.place(ctx, e, ex); err != nil {
				return err
			}
			continue
		}
		reps, st := slices.Clone(ex.replicas), ex.stamp()
		var startSt startFunc
		if start != nil {
			startSt = func(ctx context.Context, c *chunksvc.Client, l loc) chunksvc.Pending { return start(ctx, c, l, st) }
		}
		errs := v.fanoutSent(ctx, reps, func(ctx context.Context, r Replica, l loc) error { return op(ctx, r, l, st) }, startSt, sent)
		ex.mu.RUnlock()
		v.markWritten(reps, errs)
		return v.settle(ctx, e, ex, reps, errs)
	}
}

// settle is apply's outcome once every replica in reps answered (errs):
// nil when all succeeded; else replicas that failed are dropped (see
// drop), or the change fails. ex.mu is not held.
func (v *Volume) settle(ctx context.Context, e uint64, ex *extent, reps []loc, errs []error) error {
	var failed []loc
	for i, err := range errs {
		switch {
		case err == nil:
			continue
		case errors.Is(err, chunkstore.ErrStaleEpoch):
			return fenced(err)
		case errors.Is(err, chunkstore.ErrRange), errors.Is(err, chunksvc.ErrProtocol), ctx.Err() != nil:
			return fmt.Errorf("extent %d on node %s: %w", e, reps[i].node, err)
		}
		failed = append(failed, reps[i])
	}
	switch {
	case len(failed) == 0:
		return nil
	case len(failed) == len(reps):
		return fmt.Errorf("extent %d: every replica failed: %w", e, errors.Join(errs...))
	}
	return v.drop(ctx, e, ex, failed, errors.Join(errs...))
}

// asyncWrite is a write-back write of one piece whose network replicas'
// responses are handled where they arrive (chunksvc.Pending.Then) instead
// of waited for (see writeAsync). The last of the writing goroutine and
// those responses to finish completes it.
type asyncWrite struct {
	v      *Volume
	pc     chunkstore.Span
	ex     *extent
	w      *rangeWrite
	done   func(error)
	cancel context.CancelFunc
	left   atomic.Int32 // outcomes still to come, the writer's own included

	repBuf [chunkstore.MaxMembers]loc
	errBuf [chunkstore.MaxMembers]error
	reps   []loc
	errs   []error
}

// writeAsync is writePiece (without FUA, under v.bg) for a write-back
// write: the network replicas' writes are sent, this node's replica
// written, and the write completed (ex.finish, then done with its
// outcome) by whichever finishes last, this goroutine or a Client's
// reader goroutine delivering a response, so the writer does not park
// waiting for the slower replica and no goroutine is woken to learn of
// it. A replica failing hands the outcome to a fan worker (settle may
// drop replicas, which waits for the network: never on a reader). It
// reports false, having done nothing, when the write does not fit
// (extent not placed or unavailable, a replica not resolved, more than
// one replica outside the network): writePiece does it then. sent is
// called as fanoutSent's: once the network writes are sent and this
// node's is done, before any outcome is handled; netSent before that,
// once the network writes are sent (a Flush may then send its Syncs to
// those nodes while this node's write is still on its way).
//
// The fan workers are not stopped while the write is held (Close drains
// write-back writes first), so the hand-off never runs on the reader.
func (v *Volume) writeAsync(pc chunkstore.Span, ex *extent, w *rangeWrite, data []byte, netSent, sent func(), done func(error)) bool {
	ex.mu.RLock()
	if ex.unavailable || !ex.present || len(ex.replicas) > chunkstore.MaxMembers {
		ex.mu.RUnlock()
		return false
	}
	a := &asyncWrite{v: v, pc: pc, ex: ex, w: w, done: done}
	a.reps = append(a.repBuf[:0], ex.replicas...)
	a.errs = a.errBuf[:len(a.reps)]
	var (
		rsBuf   [chunkstore.MaxMembers]Replica
		pendBuf [chunkstore.MaxMembers]chunksvc.Pending
	)
	rs, pend := rsBuf[:len(a.reps)], pendBuf[:len(a.reps)]
	local := -1
	for i, l := range a.reps {
		r, err := v.cfg.Pool.Replica(l.node)
		if err != nil {
			ex.mu.RUnlock()
			return false
		}
		if _, ok := r.(*chunksvc.Client); !ok {
			if local >= 0 {
				ex.mu.RUnlock()
				return false
			}
			local = i
		}
		rs[i] = r
	}
	st := ex.stamp()
	var ctx context.Context
	ctx, a.cancel = v.timeout(v.bg)
	key := v.key(pc.Extent)
	a.left.Store(int32(len(a.reps)))
	for i, l := range a.reps {
		if i != local {
			pend[i] = rs[i].(*chunksvc.Client).StartWrite(ctx, l.disk, key, v.cfg.Epoch, st, pc.Off, data, false)
		}
	}
	// Marked once sent: a Flush that takes a mark syncs after the write
	// it stands for (this node's is marked again once written, for a
	// Flush that took the first mark and synced before it).
	v.markSent(a.reps)
	netSent()
	if local >= 0 {
		a.errs[local] = rs[local].Write(ctx, a.reps[local].disk, key, v.cfg.Epoch, st, pc.Off, data, false)
		v.markSent(a.reps[local : local+1])
	}
	sent()
	for i := range a.reps {
		if i != local {
			pend[i].Then(ctx, func(err error) {
				a.errs[i] = err
				a.arrive()
			})
		}
	}
	if local >= 0 {
		a.arrive()
	}
	return true
}

// arrive counts one outcome in; the last completes the write.
func (a *asyncWrite) arrive() {
	if a.left.Add(-1) != 0 {
		return
	}
	v := a.v
	a.cancel()
	a.ex.mu.RUnlock()
	// No markWritten: every replica was marked once sent (writeAsync),
	// and marking them again now, after the Flush that covers this write
	// took the marks, would make the next Flush sync nodes this cycle
	// never wrote to.
	for _, err := range a.errs {
		if err != nil {
			v.fan.run(a.settle)
			return
		}
	}
	a.ex.setBits(a.pc.Off, a.pc.N, true)
	a.ex.finish(a.w)
	a.done(nil)
}

// settle completes a write a replica failed, as apply would.
func (a *asyncWrite) settle() {
	v := a.v
	err := v.settle(v.bg, a.pc.Extent, a.ex, a.reps, a.errs)
	if err == nil {
		a.ex.setBits(a.pc.Off, a.pc.N, true)
	}
	a.ex.finish(a.w)
	a.done(mapErr(err))
}

// place chooses the replicas of a new extent.
func (v *Volume) place(ctx context.Context, e uint64, ex *extent) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.present || ex.unavailable {
		return nil
	}
	var cands []placement.Disk
	up := map[string]bool{}
	for _, d := range v.cfg.Pool.Disks() {
		ok, seen := up[d.Node]
		if !seen {
			_, err := v.cfg.Pool.Replica(d.Node)
			ok = err == nil
			up[d.Node] = ok
		}
		if ok {
			cands = append(cands, placement.Disk{Node: d.Node, ID: d.ID, Free: d.Free})
		}
	}
	chosen := placement.ChooseNear(cands, v.cfg.VSD, e, v.cfg.Replicas, v.cfg.LocalNode)
	reps := make([]loc, len(chosen))
	for i, d := range chosen {
		reps[i] = loc{d.Node, d.ID}
	}
	// Free whatever is left under this key on the chosen disks (a stale
	// copy, or one this Volume never saw), so no old block survives in the
	// new chunk.
	errs := v.fanoutStart(ctx, reps, func(ctx context.Context, r Replica, l loc) error {
		return r.Free(ctx, l.disk, v.key(e), v.cfg.Epoch)
	}, func(ctx context.Context, c *chunksvc.Client, l loc) chunksvc.Pending {
		return c.StartFree(ctx, l.disk, v.key(e), v.cfg.Epoch)
	})
	var good []loc
	for i, err := range errs {
		if errors.Is(err, chunkstore.ErrStaleEpoch) {
			return fenced(err)
		}
		if err == nil {
			good = append(good, reps[i])
			ex.missing = slices.DeleteFunc(ex.missing, func(l loc) bool { return l == reps[i] })
		}
	}
	if len(good) < v.minNodes {
		return fmt.Errorf("place extent %d: %d of the %d nodes needed are reachable with free space: %w", e, len(good), v.minNodes, nbd.ErrNoSpace)
	}
	gen := v.nextGen(max(ex.gen, ex.regGen))
	if ex.gen > 0 || ex.regGen > 0 || len(ex.missing) > 0 {
		// Re-placing an extent whose older copies may linger: register
		// the new generation, so no later owner trusts those copies when
		// a new replica is unreachable (a first placement costs nothing).
		ex.regGen = gen // reserved even if registering fails
		if err := v.register(ctx, []genreg.Entry{entryOf(e, gen, good)}); err != nil {
			return fmt.Errorf("place extent %d: %w", e, err)
		}
	}
	ex.replicas, ex.gen, ex.present = good, gen, true
	ex.bmu.Lock()
	ex.written = make([]byte, v.chunk/chunkstore.BlockSize/8)
	ex.bmu.Unlock()
	return nil
}

// drop removes failed replicas from extent e: the new generation naming
// only the survivors is recorded in the generation register of a majority
// of nodes, then stamped on the survivors durably, before drop returns.
// cause is the failure, for the log.
func (v *Volume) drop(ctx context.Context, e uint64, ex *extent, failed []loc, cause error) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	var gone []loc
	for _, f := range failed {
		if slices.Contains(ex.replicas, f) {
			gone = append(gone, f)
		}
	}
	if len(gone) == 0 {
		return nil // dropped already, under this lock, durably
	}
	survivors := slices.DeleteFunc(slices.Clone(ex.replicas), func(l loc) bool { return slices.Contains(gone, l) })
	for {
		if len(survivors) == 0 {
			ex.unavailable, ex.replicas = true, nil
			ex.missing = append(ex.missing, gone...)
			return fmt.Errorf("extent %d: no replica left: %w: %w", e, ErrUnavailable, cause)
		}
		next := &extent{gen: v.nextGen(max(ex.gen, ex.regGen)), replicas: survivors}
		st := next.stamp()
		// Reserve the generation even if registering fails: the entry may
		// still land, and a retry must take a newer one.
		ex.regGen = next.gen
		if err := v.register(ctx, []genreg.Entry{entryOf(e, next.gen, survivors)}); err != nil {
			return fmt.Errorf("drop %d replicas of extent %d: %w (after: %w)", len(gone), e, err, cause)
		}
		errs := v.fanoutStart(ctx, survivors, func(ctx context.Context, r Replica, l loc) error {
			return r.SetStamp(ctx, l.disk, v.key(e), v.cfg.Epoch, st, true)
		}, func(ctx context.Context, c *chunksvc.Client, l loc) chunksvc.Pending {
			return c.StartSetStamp(ctx, l.disk, v.key(e), v.cfg.Epoch, st, true)
		})
		var bad []loc
		for i, err := range errs {
			if errors.Is(err, chunkstore.ErrStaleEpoch) {
				return fenced(err)
			}
			if err != nil {
				bad = append(bad, survivors[i])
			}
		}
		if len(bad) == 0 {
			ex.gen, ex.replicas = next.gen, survivors
			ex.missing = append(ex.missing, gone...)
			for _, g := range gone {
				v.cfg.Log.Warn("replicated vsd: replica dropped, extent degraded", "vsd", v.cfg.VSD, "extent", e, "node", g.node, "disk", g.disk, "generation", ex.gen, "err", cause)
				v.sweep(g.node)
			}
			return nil
		}
		gone = append(gone, bad...)
		survivors = slices.DeleteFunc(survivors, func(l loc) bool { return slices.Contains(bad, l) })
	}
}

// sweep drops node from every extent in the background when it is
// unreachable, so that later owners need not wait for it.
func (v *Volume) sweep(node string) {
	if v.reachable(node) {
		return // only the one disk or request failed
	}
	v.mu.Lock()
	if v.dropped[node] || v.closed {
		v.mu.Unlock()
		return
	}
	v.dropped[node] = true
	v.sweeps.Add(1)
	v.mu.Unlock()
	go func() {
		defer v.sweeps.Done()
		v.dropNode(v.bg, node)
		v.mu.Lock()
		delete(v.dropped, node)
		v.mu.Unlock()
	}()
}

// reachable reports whether node's Replica is available and, for a
// network client, still connected.
func (v *Volume) reachable(node string) bool {
	r, err := v.cfg.Pool.Replica(node)
	if err != nil {
		return false
	}
	c, ok := r.(*chunksvc.Client)
	return !ok || c.Err() == nil
}

// dropParallel bounds the extents dropNode works on at once; their
// register writes share batches.
const dropParallel = 32

// dropNode drops node's replicas from every extent, many extents at once
// (their register writes are batched).
func (v *Volume) dropNode(ctx context.Context, node string) error {
	v.mu.Lock()
	var es []uint64
	for e := range v.extents {
		es = append(es, e)
	}
	v.mu.Unlock()
	slices.Sort(es)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, dropParallel)
	)
	for _, e := range es {
		if ctx.Err() != nil {
			break
		}
		v.mu.Lock()
		ex := v.extents[e]
		v.mu.Unlock()
		ex.mu.RLock()
		var on []loc
		for _, r := range ex.replicas {
			if r.node == node {
				on = append(on, r)
			}
		}
		ex.mu.RUnlock()
		if len(on) == 0 {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := v.drop(ctx, e, ex, on, fmt.Errorf("node %s failed", node)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// mapErr turns errors into the ones the NBD server maps.
func mapErr(err error) error {
	if err != nil && errors.Is(err, chunkstore.ErrFull) && !errors.Is(err, nbd.ErrNoSpace) {
		return fmt.Errorf("%w: %w", nbd.ErrNoSpace, err)
	}
	return err
}

func (ex *extent) setBits(off, n int64, to bool) {
	ex.bmu.Lock()
	defer ex.bmu.Unlock()
	if ex.written == nil {
		return
	}
	first, last := off/chunkstore.BlockSize, (off+n-1)/chunkstore.BlockSize
	if !to {
		// Only whole blocks become unwritten.
		first, last = (off+chunkstore.BlockSize-1)/chunkstore.BlockSize, (off+n)/chunkstore.BlockSize-1
	}
	for b := first; b <= last; b++ {
		if to {
			ex.written[b/8] |= 1 << (b % 8)
		} else {
			ex.written[b/8] &^= 1 << (b % 8)
		}
	}
}

// WriteAt implements nbd.Backend. With Config.WriteBack a write without
// fua returns once ordered (see writeBehind).
func (v *Volume) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if v.cfg.ReadOnly {
		return fmt.Errorf("write: %w: the VSD is read-only", nbd.ErrReadOnly)
	}
	ps, err := v.pieces(off, int64(len(p)))
	if err != nil {
		return err
	}
	if v.cfg.WriteBack && !fua && len(p) <= writeBackMaxWrite {
		return v.writeBehind(p, off, ps)
	}
	for _, pc := range ps {
		ex, err := v.get(pc.Extent)
		if err != nil {
			return err
		}
		if err := v.writePiece(ctx, pc, ex, ex.order(pc.Off, pc.N), p[pc.ReqStart:pc.ReqStart+pc.N], fua, nil); err != nil {
			return err
		}
	}
	return nil
}

// writePiece writes data, the piece pc of a write, to every replica of
// extent ex, where the write is ordered as w, and ends w. sent is
// apply's.
//
// A block-aligned piece of at least sumsMinWrite bytes has its block
// checksums computed once here and handed to every replica with the
// data (chunksvc's WriteSums), instead of each replica's store computing
// them again.
func (v *Volume) writePiece(ctx context.Context, pc chunkstore.Span, ex *extent, w *rangeWrite, data []byte, fua bool, sent func()) error {
	defer ex.finish(w)
	var sums []uint32
	if pc.Off%chunkstore.BlockSize == 0 && pc.N%chunkstore.BlockSize == 0 && pc.N >= sumsMinWrite {
		sp := sumsPool.Get().(*[]uint32)
		defer sumsPool.Put(sp)
		*sp = chunkstore.BlockSums((*sp)[:0], data)
		sums = *sp
	}
	err := v.apply(ctx, pc.Extent, ex, true, func(ctx context.Context, r Replica, l loc, st chunkstore.Stamp) error {
		if sw, ok := r.(sumsWriter); ok && sums != nil {
			return sw.WriteSums(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch, st, pc.Off, data, sums, fua)
		}
		return r.Write(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch, st, pc.Off, data, fua)
	}, func(ctx context.Context, c *chunksvc.Client, l loc, st chunkstore.Stamp) chunksvc.Pending {
		if sums != nil {
			return c.StartWriteSums(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch, st, pc.Off, data, sums, fua)
		}
		return c.StartWrite(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch, st, pc.Off, data, fua)
	}, sent)
	if err != nil {
		return mapErr(err)
	}
	ex.setBits(pc.Off, pc.N, true)
	return nil
}

// sumsMinWrite is the smallest write piece whose checksums writePiece
// computes for the replicas: below it the checksums on the wire and the
// replica's check of two blocks save little.
const sumsMinWrite = 64 << 10

// sumsWriter is a Replica that takes a write's block checksums with its
// data (chunksvc.LocalReplica and Client).
type sumsWriter interface {
	WriteSums(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, sums []uint32, fua bool) error
}

// sumsPool recycles writePiece's checksums (up to a whole chunk's).
var sumsPool = sync.Pool{New: func() any {
	s := make([]uint32, 0, chunkstore.MaxChunkSize/chunkstore.BlockSize)
	return &s
}}

// ReadAt implements nbd.Backend. It reads the extents one after
// another (the pieces of pieces, without the slice of them).
func (v *Volume) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := v.inRange(off, int64(len(p))); err != nil {
		return err
	}
	end := off + int64(len(p))
	for pos := off; pos < end; {
		in := pos % v.chunk
		n := min(v.chunk-in, end-pos)
		if err := v.readPiece(ctx, uint64(pos/v.chunk), in, p[pos-off:pos-off+n]); err != nil {
			return err
		}
		pos += n
	}
	return nil
}

func (v *Volume) readPiece(ctx context.Context, e uint64, off int64, p []byte) error {
	ex, err := v.peek(e)
	if err != nil {
		return err
	}
	if ex == nil {
		clear(p)
		return nil
	}
	ex.await(off, int64(len(p)))
	ex.mu.RLock()
	if ex.unavailable {
		ex.mu.RUnlock()
		return fmt.Errorf("read extent %d: %w", e, ErrUnavailable)
	}
	if !ex.present {
		ex.mu.RUnlock()
		clear(p)
		return nil
	}
	var orderBuf [chunkstore.MaxMembers]loc
	order := append(orderBuf[:0], ex.replicas...)
	ex.mu.RUnlock()
	// Prefer this node's replica (replicas are on distinct nodes); keep
	// the rest in placement order.
	if i := slices.IndexFunc(order, func(l loc) bool { return l.node == v.cfg.LocalNode }); i > 0 {
		local := order[i]
		copy(order[1:i+1], order[:i])
		order[0] = local
	}
	var bad []loc
	var errs []error
	for _, l := range order {
		r, err := v.cfg.Pool.Replica(l.node)
		if err == nil {
			err = v.readFrom(ctx, r, l, e, off, p)
		}
		if err == nil {
			if len(bad) > 0 {
				v.repair(ctx, e, ex, l, bad, off, int64(len(p)))
			}
			return nil
		}
		if errors.Is(err, chunkstore.ErrChecksum) {
			bad = append(bad, l)
		}
		errs = append(errs, fmt.Errorf("node %s: %w", l.node, err))
	}
	clear(p)
	return fmt.Errorf("read extent %d: no replica returned good data: %w", e, errors.Join(errs...))
}

// readFrom reads [off, off+len(p)) of extent e from replica r at l. A
// replica in this process (chunksvc.LocalReplica) is read without the
// per-request timeout: its disk read cannot be cancelled anyway.
func (v *Volume) readFrom(ctx context.Context, r Replica, l loc, e uint64, off int64, p []byte) error {
	if _, local := r.(*chunksvc.LocalReplica); local {
		return r.Read(ctx, l.disk, v.key(e), off, p)
	}
	return v.do(ctx, func(ctx context.Context) error { return r.Read(ctx, l.disk, v.key(e), off, p) })
}

// repair rewrites the blocks covering [off, off+n) of extent e on the bad
// replicas with the data of good.
func (v *Volume) repair(ctx context.Context, e uint64, ex *extent, good loc, bad []loc, off, n int64) {
	if v.cfg.ReadOnly {
		return // a reader rewrites nothing: the bad blocks stay until healed
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	a := off / chunkstore.BlockSize * chunkstore.BlockSize
	b := min((off+n+chunkstore.BlockSize-1)/chunkstore.BlockSize*chunkstore.BlockSize, v.chunk)
	buf := make([]byte, b-a)
	r, err := v.cfg.Pool.Replica(good.node)
	if err == nil {
		err = v.do(ctx, func(ctx context.Context) error { return r.Read(ctx, good.disk, v.key(e), a, buf) })
	}
	if err != nil {
		v.cfg.Log.Warn("replicated vsd: repair read", "vsd", v.cfg.VSD, "extent", e, "err", err)
		return
	}
	st := ex.stamp()
	for _, l := range bad {
		if !slices.Contains(ex.replicas, l) {
			continue
		}
		r, err := v.cfg.Pool.Replica(l.node)
		if err == nil {
			err = v.do(ctx, func(ctx context.Context) error {
				return r.Write(ctx, l.disk, v.key(e), v.cfg.Epoch, st, a, buf, true)
			})
		}
		v.cfg.Log.Warn("replicated vsd: rewrote blocks that failed their checksum", "vsd", v.cfg.VSD, "extent", e, "node", l.node, "disk", l.disk, "offset", a, "length", b-a, "err", err)
	}
}

// Flush implements nbd.Backend: every node written to since the last
// Flush syncs; a node that fails is dropped from every extent it holds.
// Nodes not written to since are not asked: the writes they completed
// were made durable by an earlier Flush (flushes run one at a time, so a
// Flush returns only after the syncs of any before it). A node that died
// meanwhile is dropped by the next write to it.
//
// Writes acknowledged early (Config.WriteBack) that are still on their
// way are covered without waiting for their responses first: once each
// is sent, the Syncs go out on the same connections (this node's Sync
// once its own writes are done, while the others' run), and a chunk service of this release answers a Sync
// only after the changes received before it (chunksvc.Client.SyncCoversSent;
// with an older one Flush waits for the writes first). Flush then waits
// for those writes too and fails if one failed on every replica.
func (v *Volume) Flush(ctx context.Context) error {
	v.flushMu.Lock()
	defer v.flushMu.Unlock()
	held := v.wb.cut()
	// Network writes sent is enough to send their Syncs; a local
	// replica's Sync waits until this node's writes are done (below).
	held.netSent.Wait()
	v.mu.Lock()
	var reps []loc
	for n := range v.written {
		reps = append(reps, loc{node: n})
	}
	clear(v.written)
	v.mu.Unlock()
	if !v.syncsCoverSent(reps) {
		if err := held.wait(); err != nil {
			// The nodes those writes reached are still synced by the next
			// Flush.
			v.remark(reps)
			return fmt.Errorf("flush: %w", err)
		}
	}
	errs := v.fanoutStart(ctx, reps, func(ctx context.Context, r Replica, _ loc) error {
		held.sent.Wait()
		return r.Sync(ctx)
	}, func(ctx context.Context, c *chunksvc.Client, _ loc) chunksvc.Pending { return c.StartSync(ctx) })
	if err := held.wait(); err != nil {
		for i, serr := range errs {
			if serr != nil {
				v.remark(reps[i : i+1])
			}
		}
		return fmt.Errorf("flush: %w", err)
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			v.remark(reps[i:])
			return err
		}
		v.cfg.Log.Warn("replicated vsd: sync failed; dropping the node's replicas", "vsd", v.cfg.VSD, "node", reps[i].node, "err", err)
		if err := v.dropNode(ctx, reps[i].node); err != nil {
			v.remark(reps[i:])
			return fmt.Errorf("flush: %w", err)
		}
	}
	return nil
}

// syncsCoverSent reports whether a Sync of every node in reps covers
// the writes sent to it whose responses have not arrived: it does for
// this node and for chunk services of this release.
func (v *Volume) syncsCoverSent(reps []loc) bool {
	for _, l := range reps {
		r, err := v.cfg.Pool.Replica(l.node)
		if err != nil {
			continue // Sync fails anyway
		}
		if c, ok := r.(*chunksvc.Client); ok && !c.SyncCoversSent() {
			return false
		}
	}
	return true
}

// remark puts back nodes a failed Flush took but did not make durable,
// so the next Flush syncs them again.
func (v *Volume) remark(reps []loc) {
	v.mu.Lock()
	for _, r := range reps {
		v.written[r.node] = true
	}
	v.mu.Unlock()
}

// Trim implements nbd.Backend: trimmed ranges read as zero.
func (v *Volume) Trim(ctx context.Context, off, length int64, fua bool) error {
	return v.WriteZeroes(ctx, off, length, nbd.ZeroFlags{FUA: fua})
}

// WriteZeroes implements nbd.Backend.
func (v *Volume) WriteZeroes(ctx context.Context, off, length int64, f nbd.ZeroFlags) error {
	ps, err := v.pieces(off, length)
	if err != nil {
		return err
	}
	if f.NoHole {
		if f.Fast {
			return nbd.ErrNotFast
		}
		zero := make([]byte, min(length, v.chunk))
		for _, pc := range ps {
			if err := v.WriteAt(ctx, zero[:pc.N], off+pc.ReqStart, f.FUA); err != nil {
				return err
			}
		}
		return nil
	}
	for _, pc := range ps {
		err := v.modify(ctx, pc.Extent, pc.Off, pc.N, false, func(ctx context.Context, r Replica, l loc, st chunkstore.Stamp) error {
			if pc.N == v.chunk {
				if err := r.Free(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch); err != nil || !f.FUA {
					return err
				}
				return r.Sync(ctx)
			}
			return r.Zero(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch, st, pc.Off, pc.N, f.FUA)
		}, startZero(v, pc, f.FUA))
		if err != nil {
			return mapErr(err)
		}
		if ex, _ := v.peek(pc.Extent); ex != nil {
			ex.setBits(pc.Off, pc.N, false)
		}
	}
	return nil
}

// startZero is WriteZeroes' operation on piece pc as a start function, or
// nil for the one that takes two requests (Free then Sync, for FUA).
func startZero(v *Volume, pc chunkstore.Span, fua bool) func(context.Context, *chunksvc.Client, loc, chunkstore.Stamp) chunksvc.Pending {
	if pc.N == v.chunk {
		if fua {
			return nil
		}
		return func(ctx context.Context, c *chunksvc.Client, l loc, _ chunkstore.Stamp) chunksvc.Pending {
			return c.StartFree(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch)
		}
	}
	return func(ctx context.Context, c *chunksvc.Client, l loc, st chunkstore.Stamp) chunksvc.Pending {
		return c.StartZero(ctx, l.disk, v.key(pc.Extent), v.cfg.Epoch, st, pc.Off, pc.N, fua)
	}
}

// BlockStatus implements nbd.Backend: unwritten blocks are holes.
func (v *Volume) BlockStatus(ctx context.Context, off, length int64, maxExtents int) ([]nbd.Extent, error) {
	ps, err := v.pieces(off, length)
	if err != nil {
		return nil, err
	}
	var runs []chunkstore.Run
	for _, pc := range ps {
		ex, err := v.peek(pc.Extent)
		if err != nil {
			return nil, err
		}
		var written []byte
		if ex != nil {
			ex.await(pc.Off, pc.N)
			ex.mu.RLock()
			unavailable := ex.unavailable
			ex.mu.RUnlock()
			ex.bmu.Lock()
			written = slices.Clone(ex.written)
			ex.bmu.Unlock()
			if unavailable { // unknown content: report data, reads fail
				written = bytes.Repeat([]byte{0xff}, int(v.chunk/chunkstore.BlockSize/8))
			}
		}
		var more bool
		if runs, more = chunkstore.AppendRuns(runs, written, pc.Off, pc.N, maxExtents); !more {
			break
		}
	}
	out := make([]nbd.Extent, len(runs))
	for i, r := range runs {
		out[i] = nbd.Extent{Length: r.Length, Hole: !r.Written, Zero: !r.Written}
	}
	return out, nil
}
