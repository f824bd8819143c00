// Package faultdisk is the qa harness's data-disk emulator: a small FUSE
// file system that exposes sparse backing files as disk1..diskN and can be
// switched, per disk and at any moment, to fail.
//
// Modes: ModeOK passes reads, writes, fsync and fallocate through to the
// backing file; ModeEIO makes every read, write, fsync and fallocate return
// EIO (a dead disk); ModeENOSPC makes every write or fallocate that would
// allocate new blocks (touches a hole or grows the file) return ENOSPC,
// while overwrites of allocated blocks and reads still work (a full disk).
//
// A Server is controlled through a UNIX stream socket with a line protocol
// ("mode DISK ok|eio|enospc", "status", "ping"), so separate shoal-qa invocations can
// flip faults on a server another invocation started. SetMode is the client.
//
// Concurrency: FUSE requests are served on many goroutines; each disk's mode
// is an atomic and its backing file is used with pread/pwrite only, so no
// lock is held across I/O. Serve owns every goroutine it starts and returns
// after unmounting; if the kernel keeps the file system busy for 5 s after
// the unmount (a copy of the mount in a live mount namespace), it returns
// ErrStillMounted and leaves the FUSE serving goroutines to the process's
// exit, which aborts the connection.
//
// Caveats: the kernel page cache sits above FUSE, so a read served from the
// cache after a switch to ModeEIO still succeeds; files are opened with
// direct I/O (FOPEN_DIRECT_IO) to keep every read and write visible to the
// server.
package faultdisk
