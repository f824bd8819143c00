package scribe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// IncomingSuffix marks a deferred ("incoming") export: NAME@incoming is
// VSD NAME for the destination QEMU of a live migration. '@' is never in
// a VSD name (ValidName), so the two cannot clash.
const IncomingSuffix = "@incoming"

// IncomingExport is the deferred export name of VSD name.
func IncomingExport(name string) string { return name + IncomingSuffix }

// incomingTimes is the timing of deferred exports.
type incomingTimes struct {
	// wait bounds how long a request that needs the VSD waits for the
	// claim to name this node; then it fails (EIO).
	wait time.Duration
	// poll is how often the claim is read while waiting.
	poll time.Duration
}

// incomingTiming is read by sessions that may outlive a test, so tests
// swap it atomically (SetIncomingTiming).
var incomingTiming atomic.Pointer[incomingTimes]

func init() {
	incomingTiming.Store(&incomingTimes{wait: 60 * time.Second, poll: 200 * time.Millisecond})
}

// resolveIncoming answers the handshake of NAME@incoming from the VSD's
// record alone: it claims and opens nothing. The VSD is opened for
// writing, as by Resolve, once the claim vsd/NAME names this node at an
// epoch above the one it had here (the source's); see incoming.
func (s *Scribe) resolveIncoming(ctx context.Context, name string) (nbd.Backend, nbd.ExportOptions, func(), error) {
	var none nbd.ExportOptions
	if ValidName(name) != nil {
		return nil, none, nil, nbd.ErrUnknownExport
	}
	st := s.storage()
	if st == nil {
		return nil, none, nil, ErrNotMember
	}
	rec, err := s.peer.GetState(ctx, VSDPrefix+name)
	if errors.Is(err, client.ErrStateNotFound) {
		return nil, none, nil, nbd.ErrUnknownExport
	}
	if err != nil {
		return nil, none, nil, fmt.Errorf("read vsd %s: %w", name, err)
	}
	vsd, err := ParseVSD(rec)
	if err != nil {
		return nil, none, nil, err
	}
	if vsd.ReadOnly {
		// An image: any number of nodes read it at once anyway.
		return s.Resolve(ctx, name)
	}
	view, err := s.peer.GetClaim(ctx, ClaimResource(name))
	if err != nil {
		return nil, none, nil, fmt.Errorf("incoming vsd %s: read its claim: %w", name, err)
	}
	in := &incoming{s: s, node: st.nodeID, name: name, rec: vsd, after: view.Epoch}
	if view.State == client.ClaimHeld && view.Holder == st.nodeID {
		// Already this node's (a reconnect after the migration): open
		// at that epoch.
		in.after = view.Epoch - 1
	}
	s.cfg.Log.Info("incoming vsd export: waiting for the claim to move here", "vsd", name, "claim_epoch", view.Epoch, "holder", view.Holder)
	in.stop = make(chan struct{})
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		in.watch(ctx)
	}()
	return in, nbd.ExportOptions{MultiConn: true}, in.release, nil
}

// incoming is the Backend of a deferred export. Until the claim moves
// here it serves reads and block status from a read-only open (the
// destination QEMU reads a little while it sets up: the MBR for its
// geometry guess, a qcow2 header; it reads them again once it runs) and
// makes every other request wait for the claim, at most incomingTiming.wait.
// Once the claim names this node at an epoch above after, it opens the
// VSD for writing at that epoch, shared with the node's other sessions
// of the VSD, and serves everything from it. A watcher goroutine, owned
// by the session (release stops and waits for it), opens it as soon as
// the claim moves, without waiting for a request: the source's replicas
// are fenced and the status names this node right after the switchover,
// and the guest's first request does not pay for the open.
type incoming struct {
	s     *Scribe
	node  string
	name  string
	rec   VSDRecord
	after uint64 // the claim's epoch at the handshake: the source's

	mu       sync.Mutex
	o        *openVSD // set once the claim moved here
	g        nbd.Backend
	ro       *openVSD // the read-only open for reads before that
	released bool

	stop chan struct{} // closed by release: the watcher ends
	wg   sync.WaitGroup
}

var _ nbd.Backend = (*incoming)(nil)

func (in *incoming) Size() int64 { return in.rec.Size }

// tryOpen opens the VSD for writing if the claim has moved here. It
// returns the Backend, or nil when the claim has not moved yet.
func (in *incoming) tryOpen(ctx context.Context) (nbd.Backend, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.g != nil {
		return in.g, nil
	}
	if in.released {
		return nil, fmt.Errorf("incoming vsd %s: the session ended", in.name)
	}
	view, err := in.s.peer.GetClaim(ctx, ClaimResource(in.name))
	if err != nil {
		return nil, fmt.Errorf("incoming vsd %s: read its claim: %w", in.name, err)
	}
	if view.State != client.ClaimHeld || view.Holder != in.node || view.Epoch <= in.after {
		return nil, nil
	}
	st := in.s.storage()
	if st == nil {
		return nil, ErrNotMember
	}
	s := in.s
	s.vmu.Lock()
	defer s.vmu.Unlock()
	o := s.open[in.name]
	switch {
	case o != nil && o.epoch != view.Epoch:
		// An older open of this VSD here (the VM left this node not long
		// ago): wait until its last session ends.
		return nil, nil
	case o == nil:
		if o, err = s.openVSD(ctx, st, in.name); err != nil {
			return nil, err
		}
		if o.epoch != view.Epoch {
			s.cfg.Log.Warn("incoming vsd opened at another epoch than the one handed over", "vsd", in.name, "epoch", o.epoch, "handed_over", view.Epoch)
		}
		o.rescanned = st.pool.returned()
		s.open[in.name] = o
		s.publishStatus(ctx, st, in.name, o, true)
	}
	o.refs++
	in.o = o
	in.g = guarded{volume: o.vol, fenced: &s.fenced, stale: &o.stale, removed: &o.removed}
	s.cfg.Log.Info("incoming vsd handed over: serving it", "vsd", in.name, "epoch", o.epoch)
	return in.g, nil
}

// watch opens the VSD as soon as the claim moves here (polling it every
// incomingTiming.poll), until it is open, the session ends or ctx ends.
func (in *incoming) watch(ctx context.Context) {
	t := time.NewTicker(incomingTiming.Load().poll)
	defer t.Stop()
	logged := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.stop:
			return
		case <-t.C:
		}
		g, err := in.tryOpen(ctx)
		switch {
		case g != nil:
			return
		case err != nil && !logged:
			in.s.cfg.Log.Warn("incoming vsd: open after the hand-over failed; retrying", "vsd", in.name, "err", err)
			logged = true
		}
	}
}

// writer returns the Backend once the claim has moved here, waiting at
// most incomingTiming.wait for it; errors on the way (claim unreadable, open
// failed) are retried until then.
func (in *incoming) writer(ctx context.Context) (nbd.Backend, error) {
	times := incomingTiming.Load()
	deadline := in.s.cfg.Now().Add(times.wait)
	var last error
	for {
		g, err := in.tryOpen(ctx)
		if g != nil {
			return g, nil
		}
		if err != nil {
			last = err
		}
		if !in.s.cfg.Now().Before(deadline) {
			in.s.cfg.Log.Error("incoming vsd: the claim did not move to this node in time: failing the request (EIO); did the migration fail?",
				"vsd", in.name, "waited", times.wait, "source_epoch", in.after, "last_err", last)
			return nil, fmt.Errorf("incoming vsd %s: the claim %s did not name this node above epoch %d within %v (last error: %v)", in.name, ClaimResource(in.name), in.after, times.wait, last)
		}
		t := time.NewTimer(times.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// reader returns the writable Backend if the claim has moved here, else
// the read-only open (opened on first use).
func (in *incoming) reader(ctx context.Context) (nbd.Backend, error) {
	if g, err := in.tryOpen(ctx); g != nil || err != nil {
		return g, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.released {
		return nil, fmt.Errorf("incoming vsd %s: the session ended", in.name)
	}
	if in.ro == nil {
		st := in.s.storage()
		if st == nil {
			return nil, ErrNotMember
		}
		if err := in.s.refreshPool(ctx, st); err != nil {
			return nil, fmt.Errorf("incoming vsd %s: %w", in.name, err)
		}
		ro, err := in.s.openReadOnly(ctx, st, in.rec)
		if err != nil {
			return nil, err
		}
		in.ro = ro
	}
	return guarded{volume: in.ro.vol, fenced: &in.s.fenced, stale: &in.ro.stale, removed: &in.ro.removed}, nil
}

func (in *incoming) ReadAt(ctx context.Context, p []byte, off int64) error {
	b, err := in.reader(ctx)
	if err != nil {
		return err
	}
	return b.ReadAt(ctx, p, off)
}

func (in *incoming) BlockStatus(ctx context.Context, off, length int64, maxExtents int) ([]nbd.Extent, error) {
	b, err := in.reader(ctx)
	if err != nil {
		return nil, err
	}
	return b.BlockStatus(ctx, off, length, maxExtents)
}

func (in *incoming) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	b, err := in.writer(ctx)
	if err != nil {
		return err
	}
	return b.WriteAt(ctx, p, off, fua)
}

func (in *incoming) Flush(ctx context.Context) error {
	b, err := in.writer(ctx)
	if err != nil {
		return err
	}
	return b.Flush(ctx)
}

func (in *incoming) Trim(ctx context.Context, off, length int64, fua bool) error {
	b, err := in.writer(ctx)
	if err != nil {
		return err
	}
	return b.Trim(ctx, off, length, fua)
}

func (in *incoming) WriteZeroes(ctx context.Context, off, length int64, f nbd.ZeroFlags) error {
	b, err := in.writer(ctx)
	if err != nil {
		return err
	}
	return b.WriteZeroes(ctx, off, length, f)
}

// release ends the session: the read-only open is closed, and the
// writable one loses this session's reference (the last one closes it).
func (in *incoming) release() {
	in.mu.Lock()
	if in.released {
		in.mu.Unlock()
		return
	}
	in.released = true
	close(in.stop)
	in.mu.Unlock()
	in.wg.Wait() // outside mu: the watcher may be in tryOpen
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.ro != nil {
		in.ro.vol.Close()
		in.ro = nil
	}
	if in.o != nil {
		in.s.vmu.Lock()
		in.s.release(in.name, in.o)
		in.s.vmu.Unlock()
	}
}

// incomingName reports whether export names a deferred export, and the
// VSD it is for.
func incomingName(export string) (string, bool) {
	return strings.CutSuffix(export, IncomingSuffix)
}
