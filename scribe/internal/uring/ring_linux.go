package uring

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI (include/uapi/linux/io_uring.h).
const (
	setupClamp = 1 << 4 // IORING_SETUP_CLAMP

	featSingleMmap = 1 << 0  // IORING_FEAT_SINGLE_MMAP
	featRWCurPos   = 1 << 3  // IORING_FEAT_RW_CUR_POS: 5.6, with OP_READ/WRITE
	featExtArg     = 1 << 8  // IORING_FEAT_EXT_ARG: 5.11
	featCQESkip    = 1 << 11 // IORING_FEAT_CQE_SKIP: 5.17

	offSQRing = 0          // IORING_OFF_SQ_RING
	offSQEs   = 0x10000000 // IORING_OFF_SQES

	registerEventfd = 4 // IORING_REGISTER_EVENTFD

	enterGetevents = 1      // IORING_ENTER_GETEVENTS
	enterExtArg    = 1 << 3 // IORING_ENTER_EXT_ARG

	cqEventfdDisabled = 1 // IORING_CQ_EVENTFD_DISABLED

	opNop   = 0  // IORING_OP_NOP
	opFsync = 3  // IORING_OP_FSYNC
	opRead  = 22 // IORING_OP_READ
	opWrite = 23 // IORING_OP_WRITE

	fsyncDatasync = 1 // IORING_FSYNC_DATASYNC

	sqeCQESkipSuccess = 1 << 6 // IOSQE_CQE_SKIP_SUCCESS

	// noSlot is the user_data of an entry no slot waits for (the no-op
	// of a pair, see WriteAtBoth).
	noSlot = ^uint64(0)
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// getEventsArg is struct io_uring_getevents_arg (24 bytes): with
// IORING_ENTER_EXT_ARG, io_uring_enter's fifth argument.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64 // address of a timespec: the most to wait
}

// timespec is struct __kernel_timespec.
type timespec struct {
	sec, nsec int64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// slot is one request in flight.
type slot struct {
	done chan int32 // its completion's result; capacity 1
	buf  []byte     // the memory the kernel reads or writes, kept alive
}

// Ring is one io_uring. It is safe for concurrent use.
type Ring struct {
	fd    int
	rings []byte // SQ and CQ rings, one mapping
	sqMem []byte // the SQE array
	maxIO int

	sqTail *uint32 // the kernel's view; written under mu
	sqHead *uint32
	sqMask uint32
	sqes   []sqe

	cqHead *uint32 // written under cqMu
	cqTail *uint32
	cqMask uint32
	cqes   []cqe
	// cqFlags is the CQ ring's flags word (nil before Linux 5.8):
	// IORING_CQ_EVENTFD_DISABLED is set while a lone request waits in
	// the kernel.
	cqFlags *uint32

	// rawArg bounds a raw wait to rawWait (nil before Linux 5.11: lone
	// requests then wait in blocking system calls only). rawTS is the
	// timespec it points to, kept here so it stays alive.
	rawArg *getEventsArg
	rawTS  *timespec
	// plugNop: a pair of writes is submitted with a no-op that posts
	// no completion (IORING_FEAT_CQE_SKIP), see WriteAtBoth.
	plugNop bool

	efd    *os.File // eventfd the kernel signals on completions
	reaper sync.WaitGroup

	slots   []slot
	free    chan uint32 // indices of free slots
	closing chan struct{}
	closed  atomic.Bool
	// inflight counts the slots taken.
	inflight atomic.Int32
	once     sync.Once

	mu         sync.Mutex
	tail       uint32 // our copy of *sqTail
	pending    uint32 // queued entries not yet passed to io_uring_enter
	submitting bool   // someone is in io_uring_enter

	cqMu sync.Mutex
}

func u32At(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// New sets up a Ring and starts its reaper goroutine; Close stops it.
func New(cfg Config) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var p params
	p.flags = setupClamp
	// Twice the slots: room for the no-op of every pair in flight (see
	// WriteAtBoth) next to an entry per slot.
	fd, _, errno := syscall.Syscall(unix.SYS_IO_URING_SETUP, uintptr(2*cfg.Entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd), maxIO: cfg.maxIO}
	if err := r.setup(&p, cfg.rawWait); err != nil {
		r.unmap()
		return nil, err
	}
	r.reaper.Add(1)
	go r.reap()
	return r, nil
}

func (r *Ring) setup(p *params, rawWait time.Duration) error {
	if p.features&featSingleMmap == 0 || p.features&featRWCurPos == 0 {
		return fmt.Errorf("io_uring: kernel too old (features %#x; need Linux 5.6 or later)", p.features)
	}
	size := max(p.sqOff.array+4*p.sqEntries, p.cqOff.cqes+uint32(unsafe.Sizeof(cqe{}))*p.cqEntries)
	var err error
	if r.rings, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fmt.Errorf("mmap io_uring rings: %w", err)
	}
	if r.sqMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return fmt.Errorf("mmap io_uring submission entries: %w", err)
	}
	r.sqHead, r.sqTail = u32At(r.rings, p.sqOff.head), u32At(r.rings, p.sqOff.tail)
	r.sqMask = *u32At(r.rings, p.sqOff.ringMask)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqMem[0])), p.sqEntries)
	array := unsafe.Slice(u32At(r.rings, p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i) // entry i of the ring is SQE i, always
	}
	r.tail = atomic.LoadUint32(r.sqTail)
	r.cqHead, r.cqTail = u32At(r.rings, p.cqOff.head), u32At(r.rings, p.cqOff.tail)
	r.cqMask = *u32At(r.rings, p.cqOff.ringMask)
	if p.cqOff.flags != 0 {
		r.cqFlags = u32At(r.rings, p.cqOff.flags)
	}
	r.plugNop = p.features&featCQESkip != 0
	if p.features&featExtArg != 0 {
		r.rawTS = &timespec{sec: int64(rawWait / time.Second), nsec: int64(rawWait % time.Second)}
		r.rawArg = &getEventsArg{ts: uint64(uintptr(unsafe.Pointer(r.rawTS)))}
	}
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&r.rings[p.cqOff.cqes])), p.cqEntries)

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("io_uring eventfd: %w", err)
	}
	r.efd = os.NewFile(uintptr(efd), "io_uring-eventfd") // non-blocking: netpoller
	fd32 := int32(efd)
	if _, _, errno := syscall.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEventfd, uintptr(unsafe.Pointer(&fd32)), 1, 0, 0); errno != 0 {
		return fmt.Errorf("io_uring register eventfd: %w", errno)
	}

	r.slots = make([]slot, p.sqEntries/2)
	r.free = make(chan uint32, len(r.slots))
	for i := range r.slots {
		r.slots[i].done = make(chan int32, 1)
		r.free <- uint32(i)
	}
	r.closing = make(chan struct{})
	return nil
}

// unmap releases what setup made; the reaper must have stopped.
func (r *Ring) unmap() {
	if r.efd != nil {
		r.efd.Close()
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	if r.rings != nil {
		unix.Munmap(r.rings)
	}
	syscall.Close(r.fd)
}

// Entries is the most requests in flight.
func (r *Ring) Entries() int { return len(r.slots) }

// ReadAt reads len(p) bytes of file descriptor fd at off, like
// os.File.ReadAt: fewer only with an error, io.EOF at the end of file.
func (r *Ring) ReadAt(fd int, p []byte, off int64) (int, error) {
	return r.transfer(opRead, fd, p, off)
}

// WriteAt writes p to file descriptor fd at off, like os.File.WriteAt.
func (r *Ring) WriteAt(fd int, p []byte, off int64) (int, error) {
	return r.transfer(opWrite, fd, p, off)
}

// Fdatasync makes the completed writes to fd durable, as fdatasync(2).
func (r *Ring) Fdatasync(fd int) error {
	id, err := r.acquire()
	if err != nil {
		return err
	}
	defer r.release(id)
	for {
		r.submit(id, sqe{opcode: opFsync, fd: int32(fd), opFlags: fsyncDatasync}, nil, 1)
		// Not a raw wait: a sync takes milliseconds, too long to keep
		// the P.
		res := r.wait(id, false, 1)
		if res == -int32(syscall.EINTR) || res == -int32(syscall.EAGAIN) {
			continue
		}
		if res < 0 {
			return syscall.Errno(-res)
		}
		return nil
	}
}

func (r *Ring) transfer(op uint8, fd int, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("io_uring: negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	id, err := r.acquire()
	if err != nil {
		return 0, err
	}
	defer r.release(id)
	return r.run(id, op, fd, p, off, 0, 1)
}

// run transfers p[n:] on slot id until all of p is done or it fails;
// mine is how many slots the caller holds (see wait).
func (r *Ring) run(id uint32, op uint8, fd int, p []byte, off int64, n int, mine int32) (int, error) {
	for n < len(p) {
		b := p[n:min(len(p), n+r.maxIO)]
		r.submit(id, sqe{
			opcode: op, fd: int32(fd), off: uint64(off) + uint64(n),
			addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))), len: uint32(len(b)),
		}, b, mine)
		var err error
		if n, err = step(op, n, r.wait(id, true, mine)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// step accounts for one completion res of a transfer that had done n
// bytes: the new count, or the error that ends it (-EINTR and -EAGAIN
// are not errors: the rest is submitted again).
func step(op uint8, n int, res int32) (int, error) {
	switch {
	case res == -int32(syscall.EINTR) || res == -int32(syscall.EAGAIN):
		return n, nil
	case res < 0:
		return n, syscall.Errno(-res)
	case res == 0 && op == opRead:
		return n, io.EOF
	case res == 0:
		return n, io.ErrShortWrite
	}
	return n + int(res), nil
}

// WriteAtBoth writes p at pOff and q at qOff of file descriptor fd,
// both submitted in one io_uring_enter (one block-layer plug, one
// device notification), and returns once both are done, with each
// one's error: two writes for the latency of about one. They may reach
// the device in either order. When no second slot is free it writes
// them one after the other.
func (r *Ring) WriteAtBoth(fd int, p []byte, pOff int64, q []byte, qOff int64) (pErr, qErr error) {
	if pOff < 0 || qOff < 0 || len(p) == 0 || len(q) == 0 {
		_, pErr = r.WriteAt(fd, p, pOff)
		_, qErr = r.WriteAt(fd, q, qOff)
		return pErr, qErr
	}
	a, err := r.acquire()
	if err != nil {
		return err, err
	}
	var b uint32
	select {
	case b = <-r.free:
		r.inflight.Add(1)
	default:
		// Every other slot is taken: waiting for one while holding a
		// could deadlock with other pairs, so go one after the other.
		_, pErr = r.run(a, opWrite, fd, p, pOff, 0, 1)
		r.release(a)
		_, qErr = r.WriteAt(fd, q, qOff)
		return pErr, qErr
	}
	ids, bufs, offs := [2]uint32{a, b}, [2][]byte{p, q}, [2]int64{pOff, qOff}
	r.mu.Lock()
	for i := range ids {
		c := bufs[i][:min(len(bufs[i]), r.maxIO)]
		r.queueLocked(ids[i], sqe{
			opcode: opWrite, fd: int32(fd), off: uint64(offs[i]),
			addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(c)))), len: uint32(len(c)),
		}, c)
	}
	if r.plugNop {
		// The kernel plugs the block layer only for a submission of
		// more than two entries (io_submit_state_start): without it
		// each write goes to the device on its own, two notifications
		// (on a virtio disk two VM exits, ~30 µs each here). A third
		// entry, a no-op that posts no completion, gets the plug. It
		// holds no slot: the submission queue has twice as many entries
		// as slots, so the slots' entries and one no-op per pair (two
		// slots) always fit.
		r.queueRawLocked(sqe{opcode: opNop, flags: sqeCQESkipSuccess, userData: noSlot})
	}
	r.submitLocked(2)
	var res [2]int32
	for i := range ids {
		res[i] = r.wait(ids[i], true, 2)
	}
	var errs [2]error
	held := int32(2)
	for i := range ids {
		n, err := step(opWrite, 0, res[i])
		if err == nil && n < len(bufs[i]) {
			_, err = r.run(ids[i], opWrite, fd, bufs[i], offs[i], n, held)
		}
		errs[i] = err
		r.release(ids[i])
		held--
	}
	return errs[0], errs[1]
}

// acquire takes a free slot, waiting while all are in flight.
func (r *Ring) acquire() (uint32, error) {
	select {
	case id := <-r.free:
		if r.closed.Load() {
			r.free <- id
			return 0, ErrClosed
		}
		r.inflight.Add(1)
		return id, nil
	case <-r.closing:
		return 0, ErrClosed
	}
}

func (r *Ring) release(id uint32) {
	r.slots[id].buf = nil
	r.inflight.Add(-1)
	r.free <- id
}

// submit queues e for slot id (whose buffer is buf) and, unless someone
// is already in io_uring_enter, submits everything queued; mine is how
// many slots the caller holds.
func (r *Ring) submit(id uint32, e sqe, buf []byte, mine int32) {
	r.mu.Lock()
	r.queueLocked(id, e, buf)
	r.submitLocked(mine)
}

// queueLocked puts e for slot id in the submission queue; mu is held.
func (r *Ring) queueLocked(id uint32, e sqe, buf []byte) {
	e.userData = uint64(id)
	r.slots[id].buf = buf
	r.queueRawLocked(e)
}

// queueRawLocked puts e in the submission queue as it is; mu is held.
// An entry without a slot (user_data noSlot) must post no completion:
// the completion queue has room for the slots' only.
func (r *Ring) queueRawLocked(e sqe) {
	r.sqes[r.tail&r.sqMask] = e
	r.tail++
	atomic.StoreUint32(r.sqTail, r.tail)
	r.pending++
}

// submitLocked submits everything queued unless someone is already in
// io_uring_enter, and unlocks mu; the caller holds mine slots.
func (r *Ring) submitLocked(mine int32) {
	if r.submitting {
		r.mu.Unlock()
		return
	}
	r.submitting = true
	if r.inflight.Load() > mine {
		// Others are in flight, so more entries may be on their way:
		// let the goroutines ready to run queue theirs first (they see
		// submitting and leave the system call to this one), so one
		// io_uring_enter, and the block layer one plug and one device
		// notification, carries them all.
		r.mu.Unlock()
		runtime.Gosched()
		r.mu.Lock()
	}
	for r.pending > 0 {
		n := r.pending
		r.pending = 0
		r.mu.Unlock()
		done, err := r.enter(n)
		r.mu.Lock()
		r.pending += n - done
		if err != nil {
			r.failQueued(err)
		}
	}
	r.submitting = false
	r.mu.Unlock()
}

// enter submits n queued entries; it returns how many the kernel took.
//
// A raw system call: submitting never blocks (the kernel hands an I/O
// that would block to its own workers), and the Go runtime's
// entersyscall/exitsyscall, which wake its sysmon thread whenever all
// Ps were idle (at every request of a client at queue depth 1), cost
// more than the call.
func (r *Ring) enter(n uint32) (uint32, error) {
	for {
		got, _, errno := syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 0, 0, 0, 0)
		switch errno {
		case 0:
			if got == 0 {
				runtime.Gosched() // took none for now: retried by the caller's loop
			}
			return uint32(got), nil
		case syscall.EINTR:
		case syscall.EAGAIN, syscall.EBUSY:
			runtime.Gosched() // out of memory or completions: let the reaper run
		default:
			return 0, fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// failQueued completes every queued entry with err and takes them off
// the ring; only the submitter (under mu) calls it, and the kernel
// consumes entries only in io_uring_enter, so they are all unconsumed.
func (r *Ring) failQueued(err error) {
	res := -int32(syscall.EIO)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		res = -int32(errno)
	}
	head := atomic.LoadUint32(r.sqHead)
	for i := head; i != r.tail; i++ {
		if id := r.sqes[i&r.sqMask].userData; id < uint64(len(r.slots)) {
			r.slots[id].done <- res
		}
	}
	r.tail = head
	atomic.StoreUint32(r.sqTail, r.tail)
	r.pending = 0
}

// wait returns the result of slot id's completion; the caller holds
// mine slots (id among them).
//
// A call whose requests are the only ones in flight waits in io_uring_enter, holding cqMu so
// no one else can take its completion from the CQ ring first, with the
// eventfd off so the reaper is not woken as well: the kernel completes
// a request on the thread that submitted it, most often this one, so a
// lone I/O costs one wake-up, as pread does. It waits first in a raw
// system call, up to rawWait: the goroutine keeps its P and the Go
// runtime is not told (its entersyscall would wake the sysmon thread
// when every P was idle before, costing more than the I/O's own
// system call); a signal (the runtime's preemption of the goroutine,
// for a garbage collection) ends that wait early. Past rawWait (a slow
// device) it waits in blocking system calls, so the runtime can hand
// the P to other goroutines (without raw, it waits only so). Anything
// else parks on its channel.
func (r *Ring) wait(id uint32, raw bool, mine int32) int32 {
	done := r.slots[id].done
	if r.inflight.Load() != mine || r.cqFlags == nil || !r.cqMu.TryLock() {
		if r.cqMu.TryLock() { // a completion may be there already
			r.drain()
			r.cqMu.Unlock()
		}
		return <-done
	}
	atomic.OrUint32(r.cqFlags, cqEventfdDisabled)
	res, ok := r.waitInKernel(done, raw && r.rawArg != nil)
	atomic.AndUint32(r.cqFlags, ^uint32(cqEventfdDisabled))
	// A completion posted while the eventfd was off signalled no one:
	// the kernel orders its CQ tail store before reading the flag (a
	// full barrier), and the flag store above is one too, so either
	// it signals or this drain sees the completion.
	r.drain()
	r.cqMu.Unlock()
	if !ok {
		res = <-done
	}
	return res
}

// waitInKernel waits in io_uring_enter until done has a result,
// delivering every completion that comes meanwhile; cqMu is held. With
// raw, its first wait is a raw one of up to rawWait. It reports false
// if io_uring_enter failed (then the caller waits on done and the
// reaper delivers).
func (r *Ring) waitInKernel(done chan int32, raw bool) (int32, bool) {
	for {
		r.drain()
		select {
		case res := <-done:
			return res, true
		default:
		}
		// The CQ ring was empty and the request is in flight: a
		// completion will come.
		var errno syscall.Errno
		if raw {
			raw = false
			_, _, errno = syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 1,
				enterGetevents|enterExtArg, uintptr(unsafe.Pointer(r.rawArg)), unsafe.Sizeof(*r.rawArg))
			if errno == syscall.ETIME {
				errno = 0
			}
		} else {
			_, _, errno = syscall.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 1, enterGetevents, 0, 0)
		}
		if errno != 0 && errno != syscall.EINTR {
			return 0, false
		}
	}
}

// drain delivers every completion in the CQ ring; cqMu is held.
func (r *Ring) drain() {
	head := *r.cqHead
	for tail := atomic.LoadUint32(r.cqTail); head != tail; tail = atomic.LoadUint32(r.cqTail) {
		for ; head != tail; head++ {
			c := r.cqes[head&r.cqMask]
			atomic.StoreUint32(r.cqHead, head+1)
			if c.userData < uint64(len(r.slots)) {
				r.slots[c.userData].done <- c.res
			}
		}
	}
}

// reap is the reaper goroutine: it sleeps on the eventfd (in the
// netpoller, holding no thread) and drains the CQ ring on every signal,
// until Close closes the eventfd.
func (r *Ring) reap() {
	defer r.reaper.Done()
	var buf [8]byte
	for {
		r.cqMu.Lock()
		r.drain()
		r.cqMu.Unlock()
		if _, err := r.efd.Read(buf[:]); err != nil {
			return
		}
	}
}

// Close waits for every started call to finish, then releases the ring.
// Later calls return ErrClosed.
func (r *Ring) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		close(r.closing)
		for range len(r.slots) {
			<-r.free
		}
		r.efd.Close() // the reaper's Read fails: it returns
		r.reaper.Wait()
		r.efd = nil
		r.unmap()
	})
	return nil
}
