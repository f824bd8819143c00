// Package qmp is a small client for the QEMU Machine Protocol: it dials
// a QMP UNIX socket, reads the greeting, negotiates capabilities, runs
// commands and delivers asynchronous events.
//
// Concurrency: a Client is safe for concurrent use. Every command carries
// its own "id" and its reply is matched by that id, so callers never see
// each other's replies. One reader goroutine decodes the socket; events
// go into a queue that a second goroutine feeds to Events, so a slow (or
// absent) event consumer never blocks replies. The queue holds at most
// MaxQueuedEvents events; beyond that the oldest are dropped and counted
// (DroppedEvents). Close stops both goroutines and waits for them.
//
// Errors: a QMP "error" reply becomes an *Error carrying the command, the
// class and QEMU's description. After the connection ends every pending
// and later command fails with an error wrapping ErrClosed.
//
// Caveats: QEMU serves one QMP client per monitor socket; a second dial
// waits until the first disconnects. Out-of-band execution (oob) is not
// negotiated.
package qmp
