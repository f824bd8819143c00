package chunkstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Device is the disk under a store: a file in tests, a block device on
// the appliance. Implementations must allow concurrent ReadAt/WriteAt.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes completed writes durable.
	Sync() error
	// Size is the usable size in bytes.
	Size() (int64, error)
	Close() error
}

// FileOptions configure OpenFile.
type FileOptions struct {
	// Direct opens with O_DIRECT: I/O bypasses the page cache, as a VM
	// disk should (the guest caches). Zero value: buffered I/O.
	Direct bool
	// IO chooses how reads and writes reach the kernel. Zero value
	// (IOAuto): io_uring for a Direct device, blocking system calls
	// otherwise.
	IO IOMode
	// RingEntries is the io_uring size: the most I/Os of this device in
	// flight at once (more wait). Zero value: 128.
	RingEntries uint32
	// Log receives the one line (per process) saying why io_uring is
	// not used when IOAuto falls back. Zero value: slog.Default().
	Log *slog.Logger

	// ringErr, if set, fails the io_uring setup with it (tests).
	ringErr error
}

// IOMode is how a device's reads and writes reach the kernel.
type IOMode int

const (
	// IOAuto is io_uring (RingDevice) for a Direct device where the
	// kernel allows it, else blocking system calls (FileDevice).
	IOAuto IOMode = iota
	// IOSyscalls is blocking pread/pwrite/fdatasync (FileDevice).
	IOSyscalls
	// IOUring is io_uring (RingDevice), Direct or not; OpenFile fails
	// with ErrNoUring where it cannot set one up.
	IOUring
)

// FileDevice is a Device on an os.File (regular file or block device)
// with blocking system calls.
//
// In Direct mode every transfer must be aligned to 4 KiB in offset,
// length and memory: misaligned buffers are copied through an aligned one,
// and a write of a partial 4 KiB sector is read-modify-written, which
// callers must not race with another write to the same sector (the store
// never does: each record and block is written under its chunk's lock).
type FileDevice struct {
	f      *os.File
	direct bool
}

// OpenFile opens path read-write as a Device: a RingDevice or a
// FileDevice, as opts.IO says.
func OpenFile(path string, opts FileOptions) (Device, error) {
	fd, err := openFile(path, opts)
	if err != nil {
		return nil, err
	}
	if opts.IO == IOSyscalls || (opts.IO == IOAuto && !opts.Direct) {
		return fd, nil
	}
	rd, err := newRingDevice(fd, opts)
	switch {
	case err == nil:
		return rd, nil
	case opts.IO == IOUring:
		fd.Close()
		return nil, fmt.Errorf("open disk %q: %w: %w", path, ErrNoUring, err)
	}
	ringFallback.Do(func() {
		log := opts.Log
		if log == nil {
			log = slog.Default()
		}
		log.Warn("io_uring unavailable: data disks use blocking system calls (slower, more threads); "+
			"allow io_uring (sysctl kernel.io_uring_disabled=0, no seccomp filter on it) for full speed",
			"err", err)
	})
	return fd, nil
}

// ringFallback logs once per process that IOAuto fell back.
var ringFallback sync.Once

func openFile(path string, opts FileOptions) (*FileDevice, error) {
	flags := os.O_RDWR
	if opts.Direct {
		direct, err := directFlag()
		if err != nil {
			return nil, fmt.Errorf("open disk %q: %w", path, err)
		}
		flags |= direct
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if opts.Direct && errors.Is(err, syscall.EINVAL) {
			return nil, fmt.Errorf("open disk %q with O_DIRECT (its file system may not support it; open it buffered): %w", path, err)
		}
		return nil, fmt.Errorf("open disk: %w", err)
	}
	return &FileDevice{f: f, direct: opts.Direct}, nil
}

// alignment is the O_DIRECT transfer alignment FileDevice uses.
const alignment = 4096

// alignedBuf returns n zero bytes starting at a 4 KiB-aligned address.
func alignedBuf(n int) []byte {
	b := make([]byte, n+alignment)
	skip := (alignment - int(uintptr(unsafe.Pointer(&b[0]))%alignment)) % alignment
	return b[skip : skip+n : skip+n]
}

// maxPooledBounce is the largest bounce buffer bouncePool keeps.
const maxPooledBounce = 1 << 20

// bouncePool holds aligned buffers of maxPooledBounce bytes for
// transfers whose memory is not aligned (O_DIRECT), so a misaligned 1 MiB
// write costs a copy but no allocation.
var bouncePool = sync.Pool{New: func() any { b := alignedBuf(maxPooledBounce); return &b }}

// bounce returns n aligned bytes (not zeroed) and a function giving
// them back.
func bounce(n int) ([]byte, func()) {
	if n > maxPooledBounce {
		return alignedBuf(n), func() {}
	}
	bp := bouncePool.Get().(*[]byte)
	return (*bp)[:n], func() { bouncePool.Put(bp) }
}

func aligned(p []byte, off int64) (offOK, memOK bool) {
	offOK = off%alignment == 0 && len(p)%alignment == 0
	memOK = len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))%alignment == 0
	return offOK, memOK
}

// ReadAt implements Device.
func (d *FileDevice) ReadAt(p []byte, off int64) (int, error) {
	return readAt(d.f, d.direct, p, off)
}

// WriteAt implements Device.
func (d *FileDevice) WriteAt(p []byte, off int64) (int, error) {
	return writeAt(d.f, d.direct, p, off)
}

// positional is the positional I/O under a device: whole transfers or
// an error, as os.File's ReadAt and WriteAt.
type positional interface {
	io.ReaderAt
	io.WriterAt
}

// readAt reads through f, copying through an aligned buffer when
// direct and p or off is not aligned.
func readAt(f positional, direct bool, p []byte, off int64) (int, error) {
	if !direct {
		return f.ReadAt(p, off)
	}
	offOK, memOK := aligned(p, off)
	if offOK && memOK {
		return f.ReadAt(p, off)
	}
	start := off / alignment * alignment
	end := roundUp(off+int64(len(p)), alignment)
	buf, put := bounce(int(end - start))
	defer put()
	n, err := f.ReadAt(buf, start)
	got := max(0, min(len(p), n-int(off-start)))
	copy(p, buf[off-start:])
	if got < len(p) && err == nil {
		err = io.ErrUnexpectedEOF
	}
	if got == len(p) {
		err = nil
	}
	return got, err
}

// writeAt writes through f, read-modify-writing partial sectors and
// copying misaligned memory when direct.
func writeAt(f positional, direct bool, p []byte, off int64) (int, error) {
	if !direct {
		return f.WriteAt(p, off)
	}
	offOK, memOK := aligned(p, off)
	if offOK && memOK {
		return f.WriteAt(p, off)
	}
	start := off / alignment * alignment
	end := roundUp(off+int64(len(p)), alignment)
	buf, put := bounce(int(end - start))
	defer put()
	if !offOK {
		clear(buf) // past the end of the file reads nothing
		if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read-modify-write at %d: %w", start, err)
		}
	}
	copy(buf[off-start:], p)
	if _, err := f.WriteAt(buf, start); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Sync implements Device with fdatasync.
func (d *FileDevice) Sync() error {
	if err := fdatasync(d.f); err != nil {
		return fmt.Errorf("fdatasync %s: %w", d.f.Name(), err)
	}
	return nil
}

// Size implements Device: the end of the file or device.
func (d *FileDevice) Size() (int64, error) {
	n, err := d.f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", d.f.Name(), err)
	}
	return n, nil
}

// Close implements Device.
func (d *FileDevice) Close() error { return d.f.Close() }

// pairWriter is a Device that can write two buffers in one submission
// (RingDevice: one io_uring_enter, one device notification), returning
// once both are done, each with its own error. The two may reach the
// disk in either order; the store pairs only writes that are safe so
// (a chunk's data and the journal's open block, see Store.writeJournaled).
type pairWriter interface {
	WriteAtBoth(p []byte, pOff int64, q []byte, qOff int64) (pErr, qErr error)
}

// Op names a device operation for failpoints.
type Op int

// The device operations a Failpoint sees.
const (
	OpRead Op = iota
	OpWrite
	OpSync
)

func (o Op) String() string {
	return [...]string{"read", "write", "sync"}[o]
}

// FailpointDevice wraps a Device so tests can inject errors (EIO, ENOSPC)
// into chosen operations, and torn writes (see TornWrite).
type FailpointDevice struct {
	Device

	mu   sync.Mutex
	hook func(op Op, off int64, n int) error
	// pairReversed makes WriteAtBoth write its second buffer first;
	// pairs counts WriteAtBoth calls.
	pairReversed bool
	pairs        int
}

// NewFailpointDevice wraps d with no failpoint set.
func NewFailpointDevice(d Device) *FailpointDevice { return &FailpointDevice{Device: d} }

// Set installs hook (nil removes it); a non-nil error it returns fails
// the operation before it reaches the device, except a TornWrite, which
// fails a write after its first Bytes bytes reached it.
func (d *FailpointDevice) Set(hook func(op Op, off int64, n int) error) {
	d.mu.Lock()
	d.hook = hook
	d.mu.Unlock()
}

func (d *FailpointDevice) fail(op Op, off int64, n int) error {
	d.mu.Lock()
	h := d.hook
	d.mu.Unlock()
	if h == nil {
		return nil
	}
	return h(op, off, n)
}

// ReadAt implements Device.
func (d *FailpointDevice) ReadAt(p []byte, off int64) (int, error) {
	if err := d.fail(OpRead, off, len(p)); err != nil {
		return 0, err
	}
	return d.Device.ReadAt(p, off)
}

// TornWrite is a failpoint error that tears a write: its first Bytes
// bytes reach the device, then it fails with Err (as when the process or
// the power dies in the middle of it).
type TornWrite struct {
	Bytes int
	Err   error
}

func (e *TornWrite) Error() string { return fmt.Sprintf("torn after %d bytes: %v", e.Bytes, e.Err) }

func (e *TornWrite) Unwrap() error { return e.Err }

// WriteAt implements Device.
func (d *FailpointDevice) WriteAt(p []byte, off int64) (int, error) {
	if err := d.fail(OpWrite, off, len(p)); err != nil {
		var torn *TornWrite
		if errors.As(err, &torn) && torn.Bytes > 0 {
			n, _ := d.Device.WriteAt(p[:min(torn.Bytes, len(p))], off)
			return n, err
		}
		return 0, err
	}
	return d.Device.WriteAt(p, off)
}

// WriteAtBoth implements pairWriter as two WriteAt calls, each seeing
// the failpoint: p first, or q first when pairReversed is set (tests
// try both orders, as a real pair may land in either).
func (d *FailpointDevice) WriteAtBoth(p []byte, pOff int64, q []byte, qOff int64) (pErr, qErr error) {
	d.mu.Lock()
	rev := d.pairReversed
	d.pairs++
	d.mu.Unlock()
	if rev {
		_, qErr = d.WriteAt(q, qOff)
		_, pErr = d.WriteAt(p, pOff)
		return pErr, qErr
	}
	_, pErr = d.WriteAt(p, pOff)
	_, qErr = d.WriteAt(q, qOff)
	return pErr, qErr
}

// Sync implements Device.
func (d *FailpointDevice) Sync() error {
	if err := d.fail(OpSync, 0, 0); err != nil {
		return err
	}
	return d.Device.Sync()
}
