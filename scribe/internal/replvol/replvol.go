package replvol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// Disk is a data disk of the pool.
type Disk struct {
	// Node is the ID of the node holding the disk.
	Node string
	// ID is the disk UUID from its superblock.
	ID chunkstore.ID
	// Free is the disk's free space in bytes, the placement weight.
	Free int64
}

// Replica reaches the chunk stores of one node: chunksvc.Local for this
// node's own disks, a chunksvc.Client for the others.
type Replica interface {
	Write(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) error
	Read(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, off int64, p []byte) error
	Zero(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off, n int64, fua bool) error
	Free(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64) error
	SetStamp(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, fua bool) error
	Fence(ctx context.Context, vsd chunkstore.ID, epoch uint64) error
	Sync(ctx context.Context) error
	Chunks(ctx context.Context, vsd chunkstore.ID) ([]chunksvc.Chunk, error)
	Stat(ctx context.Context) ([]chunksvc.DiskStat, error)
	RegisterGet(ctx context.Context, vsd chunkstore.ID, epoch uint64) ([]genreg.Entry, error)
	RegisterPut(ctx context.Context, vsd chunkstore.ID, epoch uint64, es []genreg.Entry) error
}

var (
	_ Replica = (*chunksvc.Client)(nil)
	_ Replica = (*chunksvc.LocalReplica)(nil)
)

// Pool is the cluster's disks as the owner of a VSD sees them.
type Pool interface {
	// Disks lists every data disk of every member, including members
	// that are down (Replica fails for them): Open counts them.
	Disks() []Disk
	// Nodes lists every node with a chunk service, with or without
	// disks (witnesses), up or down: the generation register is written
	// to and read from a majority of them.
	Nodes() []string
	// Replica returns the chunk stores of node; it fails when the node
	// is unreachable. It is called for every request and should be
	// cheap (keep connections; dial again after a Client's Err).
	Replica(node string) (Replica, error)
}

// Config describes the VSD a Volume serves.
type Config struct {
	// VSD identifies the volume. Required (non-zero).
	VSD chunkstore.ID
	// Size is the volume size in bytes. Required (> 0).
	Size int64
	// Replicas is the number of copies of each extent, 1 to 3.
	// Zero value: 2.
	Replicas int
	// Epoch is the VSD claim's epoch; replicas refuse requests older than
	// the newest epoch they have seen. Zero value: epoch 0.
	Epoch uint64
	// Pool reaches the disks. Required.
	Pool Pool
	// LocalNode is this node's ID: new extents get a replica on it
	// (placement.ChooseNear) and reads prefer its replicas.
	// Zero value: no preference.
	LocalNode string
	// ReadOnly opens the VSD for reading only: no fence, no register
	// write, no drop, no restamp (any number of readers at once, with
	// Epoch 0); writes fail with nbd.ErrReadOnly. The same rules decide
	// which copies are current. Zero value: read-write.
	ReadOnly bool
	// Timeout bounds each request to a replica; a replica that does not
	// answer in time is dropped from the extent. Zero value: 10 s.
	Timeout time.Duration
	// WriteBack acknowledges a write without FUA of up to 128 KiB once
	// it is ordered, before it reaches the replicas: a volatile write
	// cache, as NBD allows (FLUSH makes every acknowledged write
	// durable). Up to 64 writes and 8 MiB are held; a later read, write,
	// zero or block status of the same blocks waits for them; the next
	// Flush waits for them all and fails if one failed on every replica
	// (its data is lost, as a disk cache's on a failed flush). A write
	// refused for a newer epoch fails every later write at once
	// (ErrFenced). Zero value: a write returns when every replica has it.
	WriteBack bool
	// Log receives degradation events. Zero value: slog.Default().
	Log *slog.Logger
}

// DefaultConfig returns a Config with the defaults filled in; VSD, Size
// and Pool are still to be set.
func DefaultConfig() Config {
	return Config{Replicas: 2, Timeout: 10 * time.Second, Log: slog.Default()}
}

// Validate reports a configuration a Volume cannot serve.
func (c Config) Validate() error {
	switch {
	case c.VSD == chunkstore.ID{}:
		return errors.New("replicated vsd config: VSD ID is zero")
	case c.Size <= 0:
		return fmt.Errorf("replicated vsd config: size %d is not positive", c.Size)
	case c.Replicas < 0 || c.Replicas > chunkstore.MaxMembers:
		return fmt.Errorf("replicated vsd config: %d replicas (1 to %d)", c.Replicas, chunkstore.MaxMembers)
	case c.Pool == nil:
		return errors.New("replicated vsd config: Pool is nil")
	case c.Timeout < 0:
		return fmt.Errorf("replicated vsd config: timeout %v is negative", c.Timeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Log == nil {
		c.Log = d.Log
	}
	return c
}

// Status describes a Volume's replication state.
type Status struct {
	// Extents counts extents holding data.
	Extents int
	// Degraded lists extents with fewer up-to-date replicas than
	// configured, in extent order: the healing queue.
	Degraded []DegradedExtent
	// Unavailable lists extents with no trusted reachable copy (their
	// requests fail with EIO until a node returns).
	Unavailable []uint64
	// StaleCopies counts copies known to be stale (to be freed by healing).
	StaleCopies int
	// BytesUsed is the written bytes of all replicas.
	BytesUsed int64
}

// DegradedExtent is one extent missing replicas.
type DegradedExtent struct {
	Extent uint64
	// Replicas are the disks holding the extent's current data.
	Replicas []Disk
	// Missing are the disks dropped from it (stale or unreachable).
	Missing []Disk
}
