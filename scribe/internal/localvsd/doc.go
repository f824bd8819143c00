// Package localvsd serves one VSD from one local chunk store with a
// single replica: the node-local data path that the replicated VSD builds
// on. A Volume implements the NBD server's Backend.
//
// The extent map is the chunk store itself: extent i of the VSD lives in
// the chunk keyed (VSD ID, i), whose record on disk names its VSD, extent,
// epoch and written blocks, so the map is persisted and crash-consistent
// with the data. Thin provisioning follows: an extent never written has
// no chunk and reads as zeroes; TRIM and WRITE_ZEROES unmap blocks and
// free a chunk once none of its blocks is written; BLOCK_STATUS reports
// unmapped ranges as holes.
//
// Concurrency: a Volume is safe for concurrent use; ordering and locking
// are the chunk store's (per chunk). Every write carries the Volume's
// epoch; the store refuses it if a newer owner has written the chunk.
//
// Caveats: one replica, no repair: a block failing its checksum is an I/O
// error for the client. The VSD size is given by the caller (later: the
// VSD record in cluster state) and is not stored on disk.
package localvsd
