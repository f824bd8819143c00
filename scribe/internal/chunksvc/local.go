package chunksvc

import (
	"context"
	"errors"
	"fmt"
	"slices"

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

// WriteSums is Write with the checksums of p's blocks given (see
// chunkstore.Store.WriteSums): the store does not compute them again.
func (l *LocalReplica) WriteSums(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, sums []uint32, fua bool) error {
	s, err := l.store(disk)
	if err != nil {
		return err
	}
	return s.WriteSums(ctx, key, epoch, st, off, p, sums, fua)
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
// body (read data, a list) and the error. sums are the checksums sent
// with a write (flagSums), sealed says the stream authenticates every
// byte (TLS): see sumsTrusted.
func (l *LocalReplica) handle(ctx context.Context, r request, data []byte, sums []uint32, sealed bool) ([]byte, error) {
	fua := r.flags&flagFUA != 0
	switch r.op {
	case opWrite:
		if sums != nil && sumsTrusted(data, sums, sealed) {
			return nil, l.WriteSums(ctx, r.disk, r.key, r.epoch, r.stamp, int64(r.off), data, sums, fua)
		}
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

// sumsTrusted says whether a replica may store the checksums an owner
// sent with a write's data instead of computing them: on a sealed stream
// (TLS: its AEAD has authenticated the bytes as the owner's) when the
// first and the last block match theirs, which catches checksums of
// another range or layout at 2 blocks' cost; on any other stream only
// when every block matches. Otherwise the replica computes them all, so
// a wrong checksum never reaches a replica's disk through a write that
// was not sealed and checked, and never makes the owner lose a replica
// (the write is not refused: the replica's copy is the good one).
func sumsTrusted(data []byte, sums []uint32, sealed bool) bool {
	n := len(data) / chunkstore.BlockSize
	if n == 0 || len(sums) != n || len(data)%chunkstore.BlockSize != 0 {
		return false
	}
	if !sealed {
		var buf [MaxData / chunkstore.BlockSize]uint32
		return slices.Equal(chunkstore.BlockSums(buf[:0], data), sums)
	}
	var buf [2]uint32
	got := chunkstore.BlockSums(buf[:0], data[:chunkstore.BlockSize])
	got = chunkstore.BlockSums(got, data[(n-1)*chunkstore.BlockSize:])
	return got[0] == sums[0] && got[1] == sums[n-1]
}
