package scribe

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

type memVolume struct{ *nbd.MemoryBackend }

func (memVolume) Status() replvol.Status              { return replvol.Status{} }
func (memVolume) Close() error                        { return nil }
func (memVolume) Rescan(context.Context) (int, error) { return 0, nil }

func TestGuardedRefusesWhileFencedStaleOrRemoved(t *testing.T) {
	var fenced, stale, removed atomic.Bool
	g := guarded{volume: memVolume{nbd.NewMemoryBackend(1 << 20)}, fenced: &fenced, stale: &stale, removed: &removed}
	ctx := context.Background()
	ops := map[string]func() error{
		"read":   func() error { return g.ReadAt(ctx, make([]byte, 4096), 0) },
		"write":  func() error { return g.WriteAt(ctx, make([]byte, 4096), 0, true) },
		"flush":  func() error { return g.Flush(ctx) },
		"trim":   func() error { return g.Trim(ctx, 0, 4096, false) },
		"zeroes": func() error { return g.WriteZeroes(ctx, 0, 4096, nbd.ZeroFlags{}) },
		"status": func() error { _, err := g.BlockStatus(ctx, 0, 4096, 1); return err },
	}
	for _, tt := range []struct {
		name                   string
		fenced, stale, removed bool
		wantErr                bool
		readOnly               bool // the error is nbd.ErrReadOnly (EPERM)
	}{
		{"serving", false, false, false, false, false},
		{"fenced", true, false, false, true, false},
		{"fence lifted", false, false, false, false, false},
		{"stale", false, true, false, true, true},
		{"stale and fenced", true, true, false, true, true},
		{"removed (vsd rm)", false, false, true, true, true},
	} {
		fenced.Store(tt.fenced)
		stale.Store(tt.stale)
		removed.Store(tt.removed)
		for name, op := range ops {
			err := op()
			if (err != nil) != tt.wantErr || errors.Is(err, nbd.ErrReadOnly) != tt.readOnly {
				t.Errorf("%s: %s = %v, want error %v (read-only %v)", tt.name, name, err, tt.wantErr, tt.readOnly)
			}
		}
	}
}
