// Package rawsock reads and writes a connected socket (a net.Conn on a
// UNIX or TCP socket) with raw, non-blocking system calls, parking in the
// netpoller only when the socket is not ready.
//
// Why: net.Conn's Read and Write tell the Go runtime they enter a system
// call (entersyscall), and the runtime then wakes its sysmon thread if
// every P was idle, which is the case at every request of a client at
// queue depth 1 (an NBD client, an owner replicating one write at a
// time). That wake-up and the 20 µs sleeps the sysmon thread takes
// afterwards cost more CPU than the request's own system calls (a fifth
// to a quarter of the daemon's CPU on 4 KiB requests at queue depth 1).
// A read or write of a non-blocking socket never blocks in the kernel, so
// the runtime need not be told.
//
// Concurrency: a Conn allows one Read and one Write at a time (each
// direction keeps its call's state in the Conn, so the functions passed
// to syscall.RawConn are made once): one reader goroutine and writers
// serialised by their own lock, as in the NBD session and under a TLS
// connection. Close is the net.Conn's: it ends a Read or Write parked
// in the netpoller. Deadlines set on the net.Conn apply.
//
// Caveats: Linux only; elsewhere Wrap returns the connection unchanged.
package rawsock
