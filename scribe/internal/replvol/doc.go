// Package replvol is the replicated VSD: a Volume serves one VSD through
// the NBD server (it implements nbd.Backend) and keeps every extent on
// Config.Replicas chunk stores on distinct nodes, reached through the
// chunk service (chunksvc.Client) or in-process (chunksvc.LocalReplica).
//
// Data path: a write goes to every up-to-date replica of its extent in
// parallel and returns once all answered; FUA asks each for durability,
// FLUSH syncs every node written since the last flush. Reads go to one
// replica (the local node's first); a block failing its checksum is read
// from another replica and the bad copy rewritten; with no good copy the
// read fails (EIO), it never returns wrong data. Extents are placed on
// first write (package placement) and live where their chunks are: the
// extent map is rebuilt by Open from the chunk lists of every node.
//
// Stale replicas. Every chunk header carries a stamp (generation,
// members) written by the owner. While all replicas of an extent answer,
// the stamp does not change. When a replica fails a request, the owner,
// before acknowledging anything that replica missed, drops it from the
// extent, bumps the generation and stamps the survivors durably with the
// new generation and the survivors as members. A dropped replica is never
// written, read or trusted again by this Volume (healing, the next step,
// will rebuild it), and after the failure of a node every extent it held
// is dropped the same way in the background, so a later Open does not
// depend on it. Open trusts, per extent, the copies at the highest
// generation found, and only if every member they name is reachable and
// holds that generation: a member that is unreachable might hold a newer
// generation, so the extent is unavailable (EIO) rather than possibly
// stale; a member that is reachable but holds no chunk means the extent
// was freed after the others went stale, so it reads as zeroes. Copies
// below the newest generation are stale and never served.
//
// Owners: Open fences the VSD at Config.Epoch on every reachable node
// (chunkstore.Store.Fence) before reading the chunk lists, so an older
// owner's later writes fail there (ErrFenced, EPERM to its client); any
// replica refusing a write for its epoch fails the write.
//
// Invariants:
//   - A write is acknowledged only when every replica it was not written
//     to has been dropped and the survivors' stamps say so durably.
//   - A new extent needs at least min(Replicas, 2, nodes in the pool)
//     reachable nodes; Open needs fewer unreachable nodes than that. So
//     every extent with data has a reachable copy (current or stale) at
//     Open, and an absent extent really is a hole.
//
// Check verifies that the up-to-date replicas of every extent agree (stamp,
// bitmap, bytes); tests run it in cleanup.
//
// Concurrency: a Volume is safe for concurrent use. Each extent has a
// read-write lock: data requests share it, changes of its replica set take
// it exclusively.
//
// Rescan repeats Open's fence and scan for the extents left unavailable,
// once the nodes they name are back.
//
// Caveats: healing (re-mirroring dropped replicas, freeing stale copies)
// is not done here: Status lists the degraded extents as its queue.
// Opening while a node that holds current replicas is down makes the
// extents naming it unavailable until it returns, unless the previous
// owner already dropped it (or Rescan runs after it returns). A write in
// flight when an owner crashed may have reached some replicas only; until
// healing resynchronises them, reads of that block may alternate between
// old and new content. Pool.Disks must list the disks of members
// that are down, or Open cannot count them.
package replvol
