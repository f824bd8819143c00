package chunkstore

import (
	"fmt"
	"io"
	"os"

	"github.com/shoal-hci/shoal/scribe/internal/uring"
)

// RingDevice is a Device on an os.File whose reads, writes and syncs go
// through its own io_uring (package uring): a goroutine waiting for its
// I/O holds no OS thread, and concurrent I/Os share a system call. The
// alignment rules and their copying are FileDevice's.
type RingDevice struct {
	file *FileDevice
	raw  *ringFile
}

// ringFile is positional I/O through a ring on one file.
type ringFile struct {
	ring *uring.Ring
	f    *os.File
	fd   int
}

func (r *ringFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.ring.ReadAt(r.fd, p, off)
	return n, r.annotate("read", off+int64(n), err)
}

func (r *ringFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := r.ring.WriteAt(r.fd, p, off)
	return n, r.annotate("write", off+int64(n), err)
}

// annotate names the file and offset in err, leaving io.EOF bare (as
// os.File's ReadAt does).
func (r *ringFile) annotate(op string, at int64, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return fmt.Errorf("%s %s at %d: %w", op, r.f.Name(), at, err)
}

func newRingDevice(fd *FileDevice, opts FileOptions) (*RingDevice, error) {
	if opts.ringErr != nil {
		return nil, opts.ringErr
	}
	ring, err := uring.New(uring.Config{Entries: opts.RingEntries})
	if err != nil {
		return nil, err
	}
	// A regular file or block device is not pollable, so Fd leaves its
	// mode alone; the descriptor lives as long as fd.f.
	return &RingDevice{file: fd, raw: &ringFile{ring: ring, f: fd.f, fd: int(fd.f.Fd())}}, nil
}

// ReadAt implements Device.
func (d *RingDevice) ReadAt(p []byte, off int64) (int, error) {
	return readAt(d.raw, d.file.direct, p, off)
}

// WriteAt implements Device.
func (d *RingDevice) WriteAt(p []byte, off int64) (int, error) {
	return writeAt(d.raw, d.file.direct, p, off)
}

// WriteAtBoth writes p at pOff and q at qOff in one submission (see
// pairWriter), each copied through an aligned buffer first if its
// memory is not aligned. A transfer misaligned in offset or length (a
// read-modify-write) goes alone, one after the other.
func (d *RingDevice) WriteAtBoth(p []byte, pOff int64, q []byte, qOff int64) (pErr, qErr error) {
	if d.file.direct {
		pOffOK, pMemOK := aligned(p, pOff)
		qOffOK, qMemOK := aligned(q, qOff)
		if !pOffOK || !qOffOK {
			_, pErr = d.WriteAt(p, pOff)
			_, qErr = d.WriteAt(q, qOff)
			return pErr, qErr
		}
		if !pMemOK {
			buf, put := bounce(len(p))
			defer put()
			copy(buf, p)
			p = buf
		}
		if !qMemOK {
			buf, put := bounce(len(q))
			defer put()
			copy(buf, q)
			q = buf
		}
	}
	pErr, qErr = d.raw.ring.WriteAtBoth(d.raw.fd, p, pOff, q, qOff)
	return d.raw.annotate("write", pOff, pErr), d.raw.annotate("write", qOff, qErr)
}

// Sync implements Device with fdatasync(2), as FileDevice: through the
// ring it ran in an io_uring worker thread and cost more CPU (see
// docs/scribe.md, Figures).
func (d *RingDevice) Sync() error { return d.file.Sync() }

// Size implements Device: the end of the file or device.
func (d *RingDevice) Size() (int64, error) { return d.file.Size() }

// Close implements Device: it waits for the I/Os in flight, then closes
// the ring and the file.
func (d *RingDevice) Close() error {
	d.raw.ring.Close()
	return d.file.Close()
}
