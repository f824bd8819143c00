// Package uring does positional reads, writes and fdatasyncs through a
// Linux io_uring, with raw system calls (no cgo, no library): a Ring is
// one io_uring instance shared by any number of goroutines and files.
//
// Why: a blocking pread/pwrite holds an OS thread (and, until the Go
// runtime hands it off, a P) for the whole I/O, so keeping 32 I/Os in
// flight costs 32 threads and a context switch per I/O. A Ring keeps them
// in flight with no thread blocked: callers queue submission entries and
// park on a channel; one reaper goroutine per Ring sleeps in Go's
// netpoller on an eventfd the kernel signals on every completion, drains
// the completion queue and wakes each caller.
//
// Invariants:
//   - At most Entries requests are in flight (queued, submitted or
//     completed but not yet taken by their caller): each holds a slot,
//     and the free slots are a channel of capacity Entries. So the
//     submission queue is never full and the completion queue (twice as
//     big) never overflows; a caller beyond Entries waits for a slot.
//   - A slot's user_data is its index; a slot is owned by one call from
//     acquisition until it has read its last completion, and the buffer
//     the kernel is told about stays referenced from the slot until then
//     (Go's heap does not move; the reference keeps it from being freed).
//   - The submission queue tail is advanced only under Ring.mu. Whoever
//     queues an entry and finds no io_uring_enter in progress calls it
//     for every queued entry, again until none is left, so concurrent
//     callers share one system call (and the block layer one plug).
//     When other requests are in flight it first yields
//     (runtime.Gosched, marked as submitting): goroutines ready to run,
//     such as other writers of a queue depth 32 client, queue their
//     entries meanwhile and leave the call to it, so one io_uring_enter
//     carries several entries and a virtio disk gets one notification
//     (a VM exit, ~8-13 % of a scribe process's CPU at one per write)
//     for them all. With nothing else ready the yield returns at once;
//     a lone request (queue depth 1) does not yield.
//   - The completion queue head is advanced only under Ring.cqMu, by the
//     reaper or by a caller that finds the lock free before parking.
//   - A call that is the only one in flight waits for its completion in
//     io_uring_enter (GETEVENTS) instead of on its channel, holding cqMu
//     while in the kernel so no one drains its completion first (the
//     wait ends at any completion, which it delivers to its owner), with
//     the eventfd off (IORING_CQ_EVENTFD_DISABLED) so the reaper's thread
//     is not woken too. The kernel completes a request on the thread that
//     submitted it, usually this one, so a lone I/O costs one wake-up, as
//     pread does. After turning the eventfd back on it drains the CQ ring
//     once more before unlocking: a completion posted meanwhile either
//     signalled the eventfd or is seen there (the kernel's CQ tail store
//     and its flag read are separated by a full barrier). With more in
//     flight, callers park and the reaper delivers.
//   - WriteAtBoth queues two writes and submits them in one
//     io_uring_enter (one plug, one device notification), holding two
//     slots; when they are the only requests in flight it waits in the
//     kernel as a lone call does (the first wait delivers the second's
//     completion too). It takes its second slot only if one is free at
//     once (else the two go one after the other), so pairs never wait
//     for a slot while holding one. A third entry goes with them, a
//     no-op that posts no completion (IOSQE_CQE_SKIP_SUCCESS, Linux
//     5.17): the kernel plugs the block layer only for a submission of
//     more than two entries, and without the plug each write notifies
//     the device on its own (on a virtio disk a VM exit each). The
//     submission queue has twice as many entries as there are slots,
//     so the slots' entries and a no-op per pair always fit; no-ops
//     hold no slot and their user_data (noSlot) is never delivered.
//   - Submissions are raw system calls (syscall.RawSyscall6: the runtime
//     is not told), and so is a lone read's or write's first wait, for
//     at most 1 ms (IORING_ENTER_EXT_ARG, Linux 5.11; without it, only
//     blocking waits). The runtime's entersyscall wakes its sysmon thread
//     whenever every P was idle, as it is between the requests of a
//     client at queue depth 1, and that wake-up and the sysmon's 20 µs
//     sleeps that follow cost more CPU than the I/O's own system calls.
//     Submitting never blocks (the kernel hands an I/O that would block
//     to its workers). A raw wait keeps its P: a signal (the runtime's
//     preemption, for a garbage collection) ends it early, and past 1 ms
//     the call waits in blocking system calls, so the runtime can hand
//     the P on. Syncs never wait raw.
//   - Close refuses new calls, waits until every slot is back (every
//     started call finished, including resubmitted remainders), stops
//     the reaper, then unmaps the rings and closes the ring.
//
// Short transfers and -EAGAIN/-EINTR results are resubmitted for the
// remainder, so ReadAt and WriteAt behave as os.File's: the whole buffer
// or an error (io.EOF for a read past the end).
//
// Caveats: needs Linux 5.6 or later (IORING_OP_READ/WRITE, a single
// mmap of both rings); New fails otherwise, and where io_uring is
// disabled (kernel.io_uring_disabled, seccomp, ENOSYS), so callers fall
// back to blocking system calls. Alignment rules of O_DIRECT are the
// caller's business.
package uring
