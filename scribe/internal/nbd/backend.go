package nbd

import "context"

// Backend is the storage behind one export. The server checks every range
// against Size before calling it, so a Backend sees only 0 <= off,
// off+len <= Size(). Methods may be called concurrently.
type Backend interface {
	// Size is the export size in bytes; it must not change while served.
	Size() int64
	// ReadAt fills p from off.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes p at off; with fua the data is durable on return.
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	// Flush makes every write that has returned durable.
	Flush(ctx context.Context) error
	// Trim tells the backend the range is no longer needed; it may read
	// back as anything afterwards (this server's backends make it zero).
	Trim(ctx context.Context, off, length int64, fua bool) error
	// WriteZeroes makes the range read as zeroes.
	WriteZeroes(ctx context.Context, off, length int64, flags ZeroFlags) error
	// BlockStatus describes the allocation of [off, off+length) as a run of
	// extents starting at off, in order. It returns at most maxExtents
	// extents (at least one) and may describe less than length.
	BlockStatus(ctx context.Context, off, length int64, maxExtents int) ([]Extent, error)
}

// DeferredWriter is a Backend that can acknowledge a write before doing
// all of it (a write-back cache). The server uses it for a WRITE without
// FUA that a worker serves (not one the reading goroutine serves inline:
// that goroutine must go back to reading): it sends the reply once
// WriteDeferred returns, then runs rest on the same goroutine, which
// saves handing the work to another goroutine. A FLUSH must cover the
// write as soon as WriteDeferred has returned, whether rest ran or not.
type DeferredWriter interface {
	// WriteDeferred writes p at off as WriteAt without fua, except that
	// it may leave work to rest (nil: none), which the caller must run
	// exactly once. p may be reused once WriteDeferred returns.
	WriteDeferred(ctx context.Context, p []byte, off int64) (rest func(), err error)
}

// ZeroFlags are the flags of a WRITE_ZEROES request.
type ZeroFlags struct {
	FUA bool
	// NoHole: the range must stay allocated (write real zeroes).
	NoHole bool
	// Fast: fail with ErrNotFast rather than zero slower than a write.
	Fast bool
}

// Extent is a run of bytes with one allocation state.
type Extent struct {
	Length int64
	// Hole: the range is not allocated.
	Hole bool
	// Zero: the range reads as zeroes.
	Zero bool
}

func (e Extent) flags() uint32 {
	var f uint32
	if e.Hole {
		f |= stateHole
	}
	if e.Zero {
		f |= stateZero
	}
	return f
}

// ExportOptions describe an export to clients.
type ExportOptions struct {
	// ReadOnly refuses writes. Zero value: writable.
	ReadOnly bool
	// MultiConn advertises that a FLUSH on one connection covers writes
	// made on every connection (true when the Backend is shared).
	// Zero value: not advertised.
	MultiConn bool
	// PreferredBlockSize is advertised as NBD_INFO_BLOCK_SIZE preferred
	// size. Zero value: 4096.
	PreferredBlockSize uint32
}
