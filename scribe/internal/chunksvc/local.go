package chunksvc

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// LocalReplica serves chunk operations from this node's own stores,
// without the network. It has the same methods as Client.
type LocalReplica struct {
	stores []*chunkstore.Store
	byID   map[chunkstore.ID]*chunkstore.Store
	reg    *genreg.Dir // nil: no register (RegisterGet/Put fail)
}

// Local returns a LocalReplica over stores (this node's disks).
func Local(stores []*chunkstore.Store) *LocalReplica {
	l := &LocalReplica{stores: stores, byID: map[chunkstore.ID]*chunkstore.Store{}}
	for _, s := range stores {
		l.byID[s.Superblock().DiskID] = s
	}
	return l
}

func (l *LocalReplica) store(disk chunkstore.ID) (*chunkstore.Store, error) {
	if s := l.byID[disk]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("disk %s: %w", disk, ErrNoDisk)
}

// Write writes p at off of the chunk for key on disk (see
// chunkstore.Store.WriteStamped).
func (l *LocalReplica) Write(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) error {
	s, err := l.store(disk)
	if err != nil {
		return err
	}
	return s.WriteStamped(ctx, key, epoch, st, off, p, fua)
}

// Read fills p from off of the chunk for key on disk.
func (l *LocalReplica) Read(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, off int64, p []byte) error {
	s, err := l.store(disk)
	if err != nil {
		return err
	}
	return s.Read(ctx, key, off, p)
}

// Zero makes [off, off+n) of the chunk read as zero, freeing the chunk
// when nothing written is left.
func (l *LocalReplica) Zero(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off, n int64, fua bool) error {
	s, err := l.store(disk)
	if err != nil {
		return err
	}
	return s.ZeroStamped(ctx, key, epoch, st, off, n, fua)
}

// Free releases the chunk for key on disk.
func (l *LocalReplica) Free(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64) error {
	s, err := l.store(disk)
	if err != nil {
		return err
	}
	return s.Free(ctx, key, epoch)
}

// SetStamp records a newer stamp on the chunk for key on disk.
func (l *LocalReplica) SetStamp(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, fua bool) error {
	s, err := l.store(disk)
	if err != nil {
		return err
	}
	return s.SetStamp(ctx, key, epoch, st, fua)
}

// Fence raises every chunk of vsd on every disk to epoch (see
// chunkstore.Store.Fence).
func (l *LocalReplica) Fence(ctx context.Context, vsd chunkstore.ID, epoch uint64) error {
	if l.reg != nil {
		// The register keeps the epoch durably: a restarted node
		// re-fences its stores from it (see FenceFromRegister).
		if err := l.reg.Fence(ctx, vsd, epoch); err != nil {
			return err
		}
	}
	var errs []error
	for _, s := range l.stores {
		errs = append(errs, s.Fence(ctx, vsd, epoch))
	}
	return errors.Join(errs...)
}

// Sync makes every completed write on every disk durable.
func (l *LocalReplica) Sync(ctx context.Context) error {
	var errs []error
	for _, s := range l.stores {
		errs = append(errs, s.Sync())
	}
	return errors.Join(errs...)
}

// Chunks lists the chunks of vsd on every disk.
func (l *LocalReplica) Chunks(ctx context.Context, vsd chunkstore.ID) ([]Chunk, error) {
	var out []Chunk
	for _, s := range l.stores {
		for _, info := range s.Chunks(vsd) {
			out = append(out, Chunk{Disk: s.Superblock().DiskID, ChunkInfo: info})
		}
	}
	return out, nil
}

// Stat describes every disk.
func (l *LocalReplica) Stat(ctx context.Context) ([]DiskStat, error) {
	var out []DiskStat
	for _, s := range l.stores {
		st := s.Stats()
		out = append(out, DiskStat{ID: s.Superblock().DiskID, ChunkSize: s.ChunkSize(), Chunks: int64(st.Chunks), Free: int64(st.Chunks - st.Used)})
	}
	return out, nil
}

// handle serves one decoded request from the local stores: the response
// body (read data, a list) and the error.
func (l *LocalReplica) handle(ctx context.Context, r request, data []byte) ([]byte, error) {
	fua := r.flags&flagFUA != 0
	switch r.op {
	case opWrite:
		return nil, l.Write(ctx, r.disk, r.key, r.epoch, r.stamp, int64(r.off), data, fua)
	case opRead:
		p := make([]byte, r.count)
		if err := l.Read(ctx, r.disk, r.key, int64(r.off), p); err != nil {
			return nil, err
		}
		return p, nil
	case opZero:
		return nil, l.Zero(ctx, r.disk, r.key, r.epoch, r.stamp, int64(r.off), int64(r.count), fua)
	case opFree:
		return nil, l.Free(ctx, r.disk, r.key, r.epoch)
	case opStamp:
		return nil, l.SetStamp(ctx, r.disk, r.key, r.epoch, r.stamp, fua)
	case opFence:
		return nil, l.Fence(ctx, r.key.VSD, r.epoch)
	case opSync:
		return nil, l.Sync(ctx)
	case opChunks:
		cs, err := l.Chunks(ctx, r.key.VSD)
		if err != nil {
			return nil, err
		}
		b := encodeChunks(cs)
		if len(b) > maxResponse {
			return nil, fmt.Errorf("chunk list of %d bytes exceeds %d", len(b), maxResponse)
		}
		return b, nil
	case opStat:
		ds, err := l.Stat(ctx)
		return encodeStats(ds), err
	case opRegGet, opRegPut:
		return l.handleRegister(ctx, r, data)
	}
	return nil, fmt.Errorf("op %d: %w", r.op, ErrProtocol)
}
