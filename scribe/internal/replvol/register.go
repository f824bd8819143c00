package replvol

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// registrar batches the generation register writes of one Volume (group
// commit): callers that arrive while a write is on the wire share the next
// one, so a node failure that drops thousands of extents costs a few
// register writes, not one per extent.
type registrar struct {
	mu      sync.Mutex
	busy    bool
	pending []regWaiter
}

type regWaiter struct {
	es   []genreg.Entry
	done chan error
}

// register records es in the generation register of a majority of the
// pool's nodes, durably, before it returns nil. It fails with ErrFenced
// (wrapped) when a node has seen a newer epoch, and with ErrNoMajority
// when too few nodes accepted.
func (v *Volume) register(ctx context.Context, es []genreg.Entry) error {
	w := regWaiter{es: es, done: make(chan error, 1)}
	r := &v.reg
	r.mu.Lock()
	r.pending = append(r.pending, w)
	lead := !r.busy
	r.busy = true
	r.mu.Unlock()
	if lead {
		v.leadRegister()
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leadRegister writes batches until none is pending. Its requests run on
// the Volume's background context, not a caller's: they serve every
// waiter of the batch.
func (v *Volume) leadRegister() {
	r := &v.reg
	for {
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.busy = false
			r.mu.Unlock()
			return
		}
		var batch []regWaiter
		n := 0
		for len(r.pending) > 0 && (n == 0 || n+len(r.pending[0].es) <= chunksvc.MaxRegisterEntries) {
			n += len(r.pending[0].es)
			batch = append(batch, r.pending[0])
			r.pending = r.pending[1:]
		}
		r.mu.Unlock()
		var es []genreg.Entry
		for _, w := range batch {
			es = append(es, w.es...)
		}
		err := v.putRegister(v.bgContext(), es)
		for _, w := range batch {
			w.done <- err
		}
	}
}

// bgContext is the Volume's background context (a live one before Open
// set it, for the scan).
func (v *Volume) bgContext() context.Context {
	if v.bg == nil {
		return context.Background()
	}
	return v.bg
}

// putRegister writes es to every node of the pool and succeeds once a
// majority stored them.
func (v *Volume) putRegister(ctx context.Context, es []genreg.Entry) error {
	nodes := v.cfg.Pool.Nodes()
	for _, d := range v.cfg.Pool.Disks() {
		if !slices.Contains(nodes, d.Node) {
			nodes = append(nodes, d.Node)
		}
	}
	slices.Sort(nodes)
	at := make([]loc, len(nodes))
	for i, n := range nodes {
		at[i] = loc{node: n}
	}
	errs := v.fanout(ctx, at, func(ctx context.Context, r Replica, _ loc) error {
		return r.RegisterPut(ctx, v.cfg.VSD, v.cfg.Epoch, es)
	})
	ok := 0
	for _, err := range errs {
		if errors.Is(err, chunkstore.ErrStaleEpoch) {
			return fenced(err)
		}
		if err == nil {
			ok++
		}
	}
	if need := len(nodes)/2 + 1; ok < need {
		return fmt.Errorf("register %d extents' generations: %d of %d nodes stored them, %d needed: %w: %w", len(es), ok, len(nodes), need, ErrNoMajority, errors.Join(errs...))
	}
	return nil
}

// entryOf is extent e's register entry at generation gen on reps.
func entryOf(e, gen uint64, reps []loc) genreg.Entry {
	en := genreg.Entry{Extent: e, Gen: gen}
	for i, r := range reps {
		if i < len(en.Members) {
			en.Members[i] = r.disk
		}
	}
	return en
}
