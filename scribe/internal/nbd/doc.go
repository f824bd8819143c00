// Package nbd is a Network Block Device server (the NBD protocol as
// documented by the NetworkBlockDevice project, proto.md) for the exports
// of one node, served on a net.Listener (a UNIX socket on a node).
//
// What it speaks: the fixed newstyle handshake with NBD_OPT_EXPORT_NAME,
// GO, INFO, LIST, ABORT, STRUCTURED_REPLY, LIST_META_CONTEXT and
// SET_META_CONTEXT (the "base:allocation" context); in transmission READ,
// WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (NO_HOLE, FAST_ZERO),
// BLOCK_STATUS (REQ_ONE) and DISC, with structured replies when the client
// negotiated them and simple replies otherwise. TLS, CACHE, RESIZE and
// extended headers are refused as unsupported.
//
// Invariants:
//   - No request touches a byte outside [0, Backend.Size()): every offset
//     and length is checked before the Backend is called; out-of-range
//     requests get EINVAL (or ENOSPC for writes, as the protocol asks).
//   - Request payloads are bounded (Config.MaxRequestBytes); a WRITE whose
//     length exceeds it closes the connection, since the payload cannot be
//     skipped safely. Handshake options are bounded (Config.MaxOptionBytes,
//     Config.MaxOptions).
//   - A protocol violation (bad magic, short read, unknown client flags)
//     closes the connection; it never panics and never reaches the Backend.
//
// Concurrency: each connection has one reader goroutine that parses
// requests and hands each to a worker goroutine (or serves it itself when
// it is the only one in flight and none is queued behind it), bounded by
// Config.MaxInFlight requests and Config.MaxInFlightBytes bytes of
// payload; replies are written whole under a per-connection mutex and may
// go out in any order, matched by the client's cookie. The replier that
// would flush yields first when other requests are in flight, so replies
// completed together leave in one write. A Backend that is a
// DeferredWriter (a write-back cache) gets the WRITEs without FUA that
// workers serve through WriteDeferred: the worker replies, then runs the
// work left (rest) itself, counted in the in-flight budget until done. FLUSH makes durable
// every write that completed before the FLUSH was received, which is what
// the protocol asks. Serve owns every goroutine it starts and waits for
// them before returning. The Backend must be safe for concurrent use.
//
// Client is a minimal, sequential client (GO, simple replies) for tests
// and checkers; it is not what QEMU uses and is not tuned.
//
// Caveats: READ replies are sent as one OFFSET_DATA chunk (never
// fragmented, so NBD_CMD_FLAG_DF is honoured trivially); holes are
// reported through BLOCK_STATUS, not through OFFSET_HOLE chunks.
package nbd
