package localvsd

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// Config describes the VSD a Volume serves.
type Config struct {
	// Store holds the VSD's chunks. Required.
	Store *chunkstore.Store
	// VSD identifies the volume. Required (non-zero).
	VSD chunkstore.ID
	// Size is the volume size in bytes, > 0.
	Size int64
	// Epoch fences writes: the store refuses writes older than the epoch
	// a chunk was last written with. Zero value: epoch 0.
	Epoch uint64
}

// Validate reports a configuration a Volume cannot serve.
func (c Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("local vsd config: Store is nil")
	case c.VSD == chunkstore.ID{}:
		return errors.New("local vsd config: VSD ID is zero")
	case c.Size <= 0:
		return fmt.Errorf("local vsd config: size %d is not positive", c.Size)
	}
	return nil
}

// Volume is a single-replica VSD on a local chunk store.
type Volume struct {
	cfg   Config
	chunk int64
}

// New returns a Volume for cfg.
func New(cfg Config) (*Volume, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Volume{cfg: cfg, chunk: cfg.Store.ChunkSize()}, nil
}

var _ nbd.Backend = (*Volume)(nil)

// piece is the part of a request that falls in one extent.
type piece struct {
	key chunkstore.ChunkKey
	chunkstore.Span
}

func (v *Volume) pieces(off, length int64) ([]piece, error) {
	if off < 0 || length < 0 || off+length > v.cfg.Size || off+length < off {
		return nil, fmt.Errorf("range [%d,+%d) outside the %d-byte volume: %w", off, length, v.cfg.Size, nbd.ErrInvalid)
	}
	var out []piece
	for _, sp := range chunkstore.Spans(off, length, v.chunk) {
		out = append(out, piece{key: chunkstore.ChunkKey{VSD: v.cfg.VSD, Extent: sp.Extent}, Span: sp})
	}
	return out, nil
}

// mapErr turns chunk store errors into the ones the NBD server maps.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, chunkstore.ErrFull):
		return fmt.Errorf("%w: %w", nbd.ErrNoSpace, err)
	case errors.Is(err, chunkstore.ErrStaleEpoch):
		return fmt.Errorf("%w: %w", nbd.ErrReadOnly, err)
	}
	return err
}

// Size implements nbd.Backend.
func (v *Volume) Size() int64 { return v.cfg.Size }

// ReadAt implements nbd.Backend.
func (v *Volume) ReadAt(ctx context.Context, p []byte, off int64) error {
	ps, err := v.pieces(off, int64(len(p)))
	if err != nil {
		return err
	}
	for _, pc := range ps {
		if err := v.cfg.Store.Read(ctx, pc.key, pc.Off, p[pc.ReqStart:pc.ReqStart+pc.N]); err != nil {
			return mapErr(err)
		}
	}
	return nil
}

// WriteAt implements nbd.Backend.
func (v *Volume) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	ps, err := v.pieces(off, int64(len(p)))
	if err != nil {
		return err
	}
	for _, pc := range ps {
		if err := v.cfg.Store.Write(ctx, pc.key, v.cfg.Epoch, pc.Off, p[pc.ReqStart:pc.ReqStart+pc.N], false); err != nil {
			return mapErr(err)
		}
	}
	if fua {
		return mapErr(v.cfg.Store.Sync())
	}
	return nil
}

// Flush implements nbd.Backend.
func (v *Volume) Flush(context.Context) error { return mapErr(v.cfg.Store.Sync()) }

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
	if f.NoHole && f.Fast {
		return nbd.ErrNotFast
	}
	var zero []byte
	for _, pc := range ps {
		switch {
		case f.NoHole:
			if zero == nil {
				zero = make([]byte, v.chunk)
			}
			err = v.cfg.Store.Write(ctx, pc.key, v.cfg.Epoch, pc.Off, zero[:pc.N], false)
		case pc.N == v.chunk:
			err = v.cfg.Store.Free(ctx, pc.key, v.cfg.Epoch)
		default:
			err = v.cfg.Store.Zero(ctx, pc.key, v.cfg.Epoch, pc.Off, pc.N, false)
		}
		if err != nil {
			return mapErr(err)
		}
	}
	if f.FUA {
		return mapErr(v.cfg.Store.Sync())
	}
	return nil
}

// BlockStatus implements nbd.Backend: unmapped blocks are holes.
func (v *Volume) BlockStatus(ctx context.Context, off, length int64, maxExtents int) ([]nbd.Extent, error) {
	ps, err := v.pieces(off, length)
	if err != nil {
		return nil, err
	}
	var runs []chunkstore.Run
	for _, pc := range ps {
		var written []byte
		if info, ok := v.cfg.Store.Info(pc.key); ok {
			written = info.Written
		}
		var more bool
		if runs, more = chunkstore.AppendRuns(runs, written, pc.Off, pc.N, maxExtents); !more {
			break
		}
	}
	return extents(runs), nil
}

// extents converts runs to NBD extents: unwritten runs are holes.
func extents(runs []chunkstore.Run) []nbd.Extent {
	out := make([]nbd.Extent, len(runs))
	for i, r := range runs {
		out[i] = nbd.Extent{Length: r.Length, Hole: !r.Written, Zero: !r.Written}
	}
	return out
}
