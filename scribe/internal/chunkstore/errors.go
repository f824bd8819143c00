package chunkstore

import "errors"

var (
	// ErrForeignData: Format found data it did not write; pass Force to
	// overwrite it.
	ErrForeignData = errors.New("disk holds data that is not a shoal chunk store (format with force to overwrite it)")
	// ErrFormatted: Format found an existing chunk store; pass Force to
	// destroy it.
	ErrFormatted = errors.New("disk already holds a shoal chunk store (format with force to replace it)")
	// ErrNotFormatted: Open found no valid superblock.
	ErrNotFormatted = errors.New("disk has no valid shoal superblock")
	// ErrVersion: the superblock names a format version this build cannot read.
	ErrVersion = errors.New("unsupported chunk store format version")
	// ErrTooSmall: the disk cannot hold even one chunk.
	ErrTooSmall = errors.New("disk too small for a chunk store")
	// ErrCorrupt: metadata failed its checks.
	ErrCorrupt = errors.New("chunk store metadata is corrupt")
	// ErrChecksum: a block's data matches none of its checksums (bit rot
	// or a torn write); the data is not returned.
	ErrChecksum = errors.New("block checksum mismatch")
	// ErrStaleEpoch: a write carried an epoch older than the chunk's.
	ErrStaleEpoch = errors.New("write epoch is older than the chunk's")
	// ErrFull: no free chunk is left.
	ErrFull = errors.New("no free chunk on disk")
	// ErrRange: an offset or length falls outside a chunk.
	ErrRange = errors.New("range outside the chunk")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("chunk store is closed")
)

// ErrNoUring: OpenFile was asked for io_uring (IOUring) and the kernel
// refused to set one up.
var ErrNoUring = errors.New("io_uring unavailable")
