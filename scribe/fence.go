package scribe

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// volume is what an open VSD needs of a replvol.Volume.
type volume interface {
	nbd.Backend
	Status() replvol.Status
	Rescan(ctx context.Context) (int, error)
	Close() error
}

// guarded is the Backend sessions get for an open VSD: it refuses every
// request while this node is fenced (it cannot hear a majority, so
// another node may be taking the VSD over) and, for good, once the VSD
// turned out to have a newer owner after a fence (stale).
type guarded struct {
	volume
	fenced  *atomic.Bool // the daemon's
	stale   *atomic.Bool // this VSD's
	removed *atomic.Bool // this VSD's: `shoal vsd rm` removed it
}

var (
	_ nbd.Backend        = guarded{}
	_ nbd.DeferredWriter = guarded{}
	_ nbd.DeferredWriter = (*replvol.Volume)(nil)
)

func (g guarded) check() error {
	switch {
	case g.removed.Load():
		return fmt.Errorf("%w: the VSD was removed (`shoal vsd rm`); its data is being freed", nbd.ErrReadOnly)
	case g.stale.Load():
		return fmt.Errorf("%w: another node took the VSD over while this node was fenced", nbd.ErrReadOnly)
	case g.fenced.Load():
		return fmt.Errorf("this node is fenced (it cannot hear a majority of the cluster): I/O paused")
	}
	return nil
}

func (g guarded) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.volume.ReadAt(ctx, p, off)
}

func (g guarded) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.volume.WriteAt(ctx, p, off, fua)
}

// WriteDeferred implements nbd.DeferredWriter when the volume does (a
// replvol.Volume), else writes through WriteAt.
func (g guarded) WriteDeferred(ctx context.Context, p []byte, off int64) (func(), error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	if dw, ok := g.volume.(nbd.DeferredWriter); ok {
		return dw.WriteDeferred(ctx, p, off)
	}
	return nil, g.volume.WriteAt(ctx, p, off, false)
}

func (g guarded) Flush(ctx context.Context) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.volume.Flush(ctx)
}

func (g guarded) Trim(ctx context.Context, off, length int64, fua bool) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.volume.Trim(ctx, off, length, fua)
}

func (g guarded) WriteZeroes(ctx context.Context, off, length int64, f nbd.ZeroFlags) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.volume.WriteZeroes(ctx, off, length, f)
}

func (g guarded) BlockStatus(ctx context.Context, off, length int64, maxExtents int) ([]nbd.Extent, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.volume.BlockStatus(ctx, off, length, maxExtents)
}

// watchFence follows this node's fence (docs/claims.md) until ctx ends:
// while fenced every open VSD refuses I/O; when the fence lifts (or was
// fenced in between: Since changed), each open VSD is resumed only if this
// node still holds its claim at the VSD's epoch, and is stale otherwise.
func (s *Scribe) watchFence(ctx context.Context) {
	client.WatchFence(ctx, s.peer, s.cfg.Interval, func(st client.FenceStatus) {
		if st.Fenced {
			if !s.fenced.Swap(true) {
				s.cfg.Log.Warn("this node is fenced: I/O on its open VSDs is paused until it hears a majority again")
			}
			return
		}
		s.recheckClaims(ctx)
		if s.fenced.Swap(false) {
			s.cfg.Log.Info("fence lifted: open VSDs this node still owns resume")
		}
	})
}

// recheckClaims marks stale every open VSD whose claim moved on.
func (s *Scribe) recheckClaims(ctx context.Context) {
	s.vmu.Lock()
	defer s.vmu.Unlock()
	for name, o := range s.open {
		if o.stale.Load() || o.readOnly {
			continue
		}
		v, err := s.peer.GetClaim(ctx, ClaimResource(name))
		if err != nil {
			// Unknown: stay safe, the VSD cannot be trusted here.
			s.cfg.Log.Warn("vsd claim unreadable after a fence: refusing its I/O", "vsd", name, "err", err)
			o.stale.Store(true)
			continue
		}
		if v.State != client.ClaimHeld || v.Epoch != o.epoch || v.Holder != s.storageNode() {
			s.cfg.Log.Warn("vsd moved on while this node was fenced: refusing its I/O", "vsd", name, "epoch", o.epoch, "claim_epoch", v.Epoch, "holder", v.Holder)
			o.stale.Store(true)
		}
	}
}

func (s *Scribe) storageNode() string {
	if st := s.storage(); st != nil {
		return st.nodeID
	}
	return ""
}
