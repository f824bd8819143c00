// Package genreg is the generation register a node's chunk service keeps
// for the owners of replicated VSDs: per VSD, the newest epoch seen and,
// per extent, the newest generation an owner registered together with the
// member disks that hold it.
//
// Why: when an owner drops a failed replica from an extent, it writes the
// extent's new generation and members to the register of a majority of
// the pool's nodes before it stamps the survivors and acknowledges the
// write (package replvol). A later owner reads the register from a
// majority and so learns every drop that was ever acknowledged, without
// asking the node that died: a surviving copy at the newest registered
// generation is current even when a member it names is unreachable.
//
// Storage: one append-only file per VSD in the register directory, named
// by the VSD ID in hex with the suffix ".reg": a 16-byte header (magic
// "SHOALREG", version, CRC-32C) then records, each a 16-byte header
// (entry count u32, CRC-32C u32 of the rest, epoch u64) and 64 bytes per
// entry (extent u64, generation u64, three member disk IDs), little-endian.
// A record is appended and the file fsync'd before Put or Fence returns.
// Opening replays the records; a torn or corrupt tail (a crash while
// appending) is cut off, which loses only a Put that never returned. A
// file grown well past its live content is rewritten (temporary file,
// fsync, rename, fsync of the directory).
//
// Invariants:
//   - Per VSD the epoch only grows; Put and Fence with an older epoch fail
//     with chunkstore.ErrStaleEpoch and change nothing.
//   - Per extent the registered generation only grows; an entry with a
//     lower generation than the one held is ignored.
//   - Put, Fence and Read (which fences) are durable when they return.
//
// Concurrency: a Dir is safe for concurrent use; each VSD's file has its
// own mutex.
//
// Caveats: entries are never collected while the VSD exists (64 bytes per
// dropped extent, until healing exists to make them obsolete). The daemon
// retires a removed VSD with Fence at the highest epoch (its file then
// keeps that fence, so no late owner can write there); Remove deletes a
// VSD's file outright.
package genreg
