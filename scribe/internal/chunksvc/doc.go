// Package chunksvc is scribe's chunk service: it serves one node's chunk
// stores to the other nodes over mutual TLS on the backplane (port 7948),
// and is the client side of it. Local wraps this node's own stores behind
// the same methods, so the replicated layer treats every replica alike.
//
// Protocol (little-endian, one TLS connection carries many requests):
// a request is a fixed 128-byte header (length of the data that follows,
// op, flags, request ID, disk, VSD, extent, epoch, stamp, offset, count)
// followed by the data of a write (with flag bit 1, preceded by the
// CRC-32C of each of its 4 KiB blocks, which the replica keeps instead of
// computing them: see sumsTrusted for what it checks first); a response is a 16-byte header (length,
// status, request ID) followed by read data, an encoded list or an error
// message. Besides chunk operations the service serves the node's
// generation register (package genreg): a register read (which fences the
// VSD's register at the request's epoch; epoch 0 reads without fencing)
// and a register put (entries as data), which owners use to make replica
// drops durable on a majority before acknowledging a write. Requests are
// pipelined: the client sends without waiting and
// matches responses by ID, which may arrive in any order. Sizes are
// bounded (MaxData per request, maxResponse per response). A Sync
// answers once every change (write, zero, free, stamp, fence, register
// put) received before it on the same connection has finished, and
// makes them durable: an owner sends it right behind its writes, without
// waiting for their responses. Servers advertise this with the TLS
// application protocol "shoal-chunk/2" (ALPN); with a server that does
// not (an older release, during a rolling upgrade) the owner waits for
// the responses first (Client.SyncCoversSent).
//
// Invariants:
//   - A request that does not decode, names an unknown op or exceeds the
//     bounds closes the connection; a request for an unknown disk or a
//     range outside a chunk gets an error response. Nothing is written
//     before a request has been fully validated, and every write goes
//     through chunkstore, which refuses ranges outside a chunk.
//   - Errors keep their identity across the wire: the client's errors wrap
//     chunkstore.ErrStaleEpoch, ErrChecksum, ErrFull and ErrRange exactly
//     when the server's did, and ErrUnreachable when the connection failed.
//   - Every connection is authenticated by its client certificate through
//     ServerConfig.Authorize before any request is read.
//
// Concurrency: Server serves connections and the requests on one
// connection concurrently (at most ServerConfig.MaxInFlight per
// connection); a responder that would flush yields first when other
// requests are in flight, so responses completed together share a TLS
// record and a send. A Client is safe for concurrent use; once its
// connection fails every call returns ErrUnreachable and the owner dials
// again. Pending.Then hands a response to a function run on the Client's
// reader goroutine (or on the caller's, if it has arrived; or when the
// context ends): such a function must not block or call the Client.
//
// Caveats: a Client does not redial by itself, and calls rely on their
// context for a deadline (a silent peer is noticed only through it). An
// authenticated peer can make the server hold MaxInFlight buffers of up
// to MaxData bytes per connection (1 GiB at the defaults). Request data
// buffers come from package bufpool and go back once the request is
// answered, so the stores and the register must not keep a request's
// data after they return (they copy what they keep).
package chunksvc
