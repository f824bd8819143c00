package replvol

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/shoal-hci/shoal/scribe/internal/bufpool"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// Write-back limits (Config.WriteBack): a Volume holds at most this many
// acknowledged writes, and this many of their bytes, not yet on every
// replica; a write beyond them waits for room.
//
// Only writes up to writeBackMaxWrite bytes are held: a larger one is
// written through. Acknowledging early saves a small write most of its
// latency, but a large one is bound by throughput, and holding them (a
// copy each, more in flight at once) cost a 1 MiB sequential write at
// queue depth 8 a third of its rate in `shoal-qa bench scribe`.
const (
	writeBackMaxWrites = 64
	writeBackMaxBytes  = 8 << 20
	writeBackMaxWrite  = 128 << 10
)

// writeBack tracks the writes a Volume has acknowledged before they
// reached their replicas (Config.WriteBack).
type writeBack struct {
	mu     sync.Mutex
	room   *sync.Cond // signalled when a write finishes or the Volume closes
	writes int
	bytes  int64
	closed bool
	cur    *wbGroup // the writes the next Flush covers
	fenced error    // set once a replica refused a write for a newer epoch
}

// wbGroup is the writes acknowledged between two flushes: the later Flush
// waits for them and reports their failures.
type wbGroup struct {
	wg   sync.WaitGroup // the writes, until they are done
	sent sync.WaitGroup // the writes, until they are sent (fanoutSent)
	// netSent: the writes, until their network replicas' requests are
	// sent (writeAsync; at the latest when sent).
	netSent sync.WaitGroup
	mu      sync.Mutex
	errs    []error // the first few failures
	n       int     // failed writes
}

func newWriteBack() *writeBack {
	w := &writeBack{cur: &wbGroup{}}
	w.room = sync.NewCond(&w.mu)
	return w
}

// begin waits for room for a write of n bytes and counts it in the
// current group, which it returns. It fails once the Volume closes or
// was fenced.
func (w *writeBack) begin(n int) (*wbGroup, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && w.fenced == nil && w.writes > 0 && (w.writes >= writeBackMaxWrites || w.bytes+int64(n) > writeBackMaxBytes) {
		w.room.Wait()
	}
	switch {
	case w.fenced != nil:
		return nil, w.fenced
	case w.closed:
		return nil, ErrClosed
	}
	w.writes++
	w.bytes += int64(n)
	g := w.cur
	g.wg.Add(1)
	g.sent.Add(1)
	g.netSent.Add(1)
	return g, nil
}

// end finishes a write begin counted, with its outcome.
func (w *writeBack) end(g *wbGroup, n int, err error) {
	if err != nil {
		g.mu.Lock()
		if len(g.errs) < 4 {
			g.errs = append(g.errs, err)
		}
		g.n++
		g.mu.Unlock()
	}
	w.mu.Lock()
	if err != nil && errors.Is(err, ErrFenced) && w.fenced == nil {
		w.fenced = err
	}
	w.writes--
	w.bytes -= int64(n)
	w.mu.Unlock()
	w.room.Broadcast()
	g.wg.Done()
}

// cut starts a new group for the writes acknowledged from now on and
// returns the one before: a Flush waits for it.
func (w *writeBack) cut() *wbGroup {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.cur
	w.cur = &wbGroup{}
	return g
}

// wait waits for every write of g and returns their failures.
func (g *wbGroup) wait() error {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		return nil
	}
	return fmt.Errorf("%d acknowledged write(s) did not reach their replicas, their data is lost: %w", g.n, errors.Join(g.errs...))
}

// close makes begin fail and waits for every write in flight.
func (w *writeBack) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.room.Broadcast()
	w.drain()
}

// drain waits until no write is in flight (a write begun meanwhile
// included).
func (w *writeBack) drain() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.writes > 0 {
		w.room.Wait()
	}
}

// writeBehind acknowledges a write before it reaches the replicas
// (Config.WriteBack): it copies p, orders it on each extent it covers
// (so later reads, writes and zeroes of those blocks come after it) and
// hands it to a fan worker. A failure is reported by the next Flush.
func (v *Volume) writeBehind(p []byte, off int64, ps []chunkstore.Span) error {
	rest, err := v.holdWrite(p, off, ps)
	if err != nil {
		return err
	}
	v.fan.run(rest)
	return nil
}

// WriteDeferred implements nbd.DeferredWriter: a write that WriteAt would
// acknowledge early (Config.WriteBack, no FUA, up to 128 KiB) is ordered
// and copied, and rest, the work of taking it to the replicas, is
// returned for the caller to run after its reply (on its own goroutine,
// instead of a hand-off to a fan worker; rest must be run exactly once).
// Any other write is done as by WriteAt and rest is nil.
func (v *Volume) WriteDeferred(ctx context.Context, p []byte, off int64) (rest func(), err error) {
	if v.cfg.ReadOnly || !v.cfg.WriteBack || len(p) > writeBackMaxWrite {
		return nil, v.WriteAt(ctx, p, off, false)
	}
	ps, err := v.pieces(off, int64(len(p)))
	if err != nil {
		return nil, err
	}
	return v.holdWrite(p, off, ps)
}

// holdWrite is writeBehind but for the hand-off: it returns the work
// left, which reports its outcome to the write-back group it was counted
// in.
func (v *Volume) holdWrite(p []byte, off int64, ps []chunkstore.Span) (func(), error) {
	g, err := v.wb.begin(len(p))
	if err != nil {
		return nil, err
	}
	type piece struct {
		pc chunkstore.Span
		ex *extent
		w  *rangeWrite
	}
	pieces := make([]piece, 0, len(ps))
	for _, pc := range ps {
		ex, err := v.get(pc.Extent)
		if err != nil {
			for _, x := range pieces {
				x.ex.finish(x.w)
			}
			g.netSent.Done()
			g.sent.Done()
			v.wb.end(g, len(p), nil)
			return nil, err
		}
		pieces = append(pieces, piece{pc, ex, ex.order(pc.Off, pc.N)})
	}
	buf := bufpool.Get(len(p))
	copy(*buf, p)
	return func() {
		// The write counts as sent once its last piece is (the pieces
		// before it are done by then), or when it ends short of that.
		isSent, isNetSent := false, false
		netSent := func() {
			if !isNetSent {
				isNetSent = true
				g.netSent.Done()
			}
		}
		sent := func() {
			netSent()
			if !isSent {
				isSent = true
				g.sent.Done()
			}
		}
		if len(pieces) == 1 {
			x := pieces[0]
			if v.writeAsync(x.pc, x.ex, x.w, (*buf)[x.pc.ReqStart:x.pc.ReqStart+x.pc.N], netSent, sent, func(err error) {
				bufpool.Put(buf)
				if err != nil {
					err = fmt.Errorf("write [%d,+%d): %w", off, x.pc.N, err)
					v.cfg.Log.Error("replicated vsd: an acknowledged write failed; the next flush reports it", "vsd", v.cfg.VSD, "err", err)
				}
				v.wb.end(g, len(p), err)
			}) {
				return
			}
		}
		var errs []error
		for i, x := range pieces {
			data := (*buf)[x.pc.ReqStart : x.pc.ReqStart+x.pc.N]
			var last func()
			if i == len(pieces)-1 {
				last = sent
			}
			err := v.writePiece(v.bg, x.pc, x.ex, x.w, data, false, last)
			if err != nil {
				errs = append(errs, fmt.Errorf("write [%d,+%d): %w", off+x.pc.ReqStart, x.pc.N, err))
			}
		}
		sent()
		bufpool.Put(buf)
		err := errors.Join(errs...)
		if err != nil {
			v.cfg.Log.Error("replicated vsd: an acknowledged write failed; the next flush reports it", "vsd", v.cfg.VSD, "err", err)
		}
		v.wb.end(g, len(p), err)
	}, nil
}
