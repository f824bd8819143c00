package nbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
)

// FileBackend serves a regular file (or block device) as an export: the
// reference backend for tests and benchmarks. Trim and WriteZeroes punch
// holes; BlockStatus reports holes with SEEK_DATA/SEEK_HOLE.
type FileBackend struct {
	f    *os.File
	size int64
}

// OpenFileBackend opens path read-write and serves its current size.
func OpenFileBackend(path string) (*FileBackend, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open file backend: %w", err)
	}
	size, err := f.Seek(0, 2)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("size of %q: %w", path, err)
	}
	return &FileBackend{f: f, size: size}, nil
}

// Close closes the file.
func (b *FileBackend) Close() error { return b.f.Close() }

// Size implements Backend.
func (b *FileBackend) Size() int64 { return b.size }

// ReadAt implements Backend.
func (b *FileBackend) ReadAt(_ context.Context, p []byte, off int64) error {
	n, err := b.f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}

// WriteAt implements Backend.
func (b *FileBackend) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if _, err := b.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("write %d bytes at %d: %w", len(p), off, err)
	}
	if fua {
		return b.sync()
	}
	return nil
}

func (b *FileBackend) sync() error {
	if err := syscall.Fdatasync(int(b.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync %s: %w", b.f.Name(), err)
	}
	return nil
}

// Flush implements Backend.
func (b *FileBackend) Flush(context.Context) error { return b.sync() }

const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
	fallocZeroRange = 0x10
)

// Trim implements Backend.
func (b *FileBackend) Trim(ctx context.Context, off, length int64, fua bool) error {
	return b.WriteZeroes(ctx, off, length, ZeroFlags{FUA: fua})
}

// WriteZeroes implements Backend.
func (b *FileBackend) WriteZeroes(_ context.Context, off, length int64, f ZeroFlags) error {
	mode := uint32(fallocPunchHole | fallocKeepSize)
	if f.NoHole {
		mode = fallocZeroRange | fallocKeepSize
	}
	if err := syscall.Fallocate(int(b.f.Fd()), mode, off, length); err != nil {
		if f.Fast {
			return fmt.Errorf("zero range: %w: %w", ErrNotFast, err)
		}
		zero := make([]byte, min(length, 1<<20))
		for pos := off; pos < off+length; pos += int64(len(zero)) {
			n := min(int64(len(zero)), off+length-pos)
			if _, err := b.f.WriteAt(zero[:n], pos); err != nil {
				return fmt.Errorf("write zeroes at %d: %w", pos, err)
			}
		}
	}
	if f.FUA {
		return b.sync()
	}
	return nil
}

const (
	seekData = 3
	seekHole = 4
)

// BlockStatus implements Backend.
func (b *FileBackend) BlockStatus(_ context.Context, off, length int64, maxExtents int) ([]Extent, error) {
	fd := int(b.f.Fd())
	end := off + length
	var out []Extent
	for pos := off; pos < end && len(out) < maxExtents; {
		data, err := syscall.Seek(fd, pos, seekData)
		if errors.Is(err, syscall.ENXIO) {
			data = end
		} else if err != nil {
			return nil, fmt.Errorf("seek data at %d: %w", pos, err)
		}
		if data > pos {
			n := min(data, end) - pos
			out = append(out, Extent{Length: n, Hole: true, Zero: true})
			pos += n
			continue
		}
		hole, err := syscall.Seek(fd, pos, seekHole)
		if err != nil {
			return nil, fmt.Errorf("seek hole at %d: %w", pos, err)
		}
		n := min(hole, end) - pos
		out = append(out, Extent{Length: n})
		pos += n
	}
	return out, nil
}
