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
// first write (package placement, with a replica on the owner's node
// when its disks have room) and live where their chunks are: the
// extent map is rebuilt by Open from the chunk lists of every node.
//
// Stale replicas. Every chunk header carries a stamp (generation,
// members) written by the owner. While all replicas of an extent answer,
// the stamp does not change (no extra I/O). When a replica fails a
// request, the owner, before acknowledging anything that replica missed,
// drops it from the extent: it records the extent's new generation and
// surviving members in the generation register (package genreg) of a
// majority of the pool's nodes (Pool.Nodes, witnesses included), then
// stamps the survivors durably. Register writes of concurrent drops share
// one request per node (group commit), so a node failure that drops
// thousands of extents costs a few register writes. A dropped replica is
// never written, read or trusted again by this Volume (healing, the next
// step, will rebuild it), and after the failure of a node every extent it
// held is dropped the same way in the background.
//
// Open reads the register from a majority (fencing it at Config.Epoch)
// besides the chunk lists, and decides per extent (resolve.go): when the
// register holds a newer generation than any reachable copy and a member
// it names is unreachable, that member may hold newer data, so the extent
// is unavailable (EIO); otherwise no drop beyond the newest copies was
// ever acknowledged, so they are current even when a member they name is
// unreachable (the failover of an owner whose node held replicas): the
// unreachable member is dropped by the first write or by the sweep Open
// starts. A reachable member without any chunk freed the extent after the
// others went stale: it reads as zeroes. Copies below the newest
// generation are stale and never served. A new placement of an extent
// whose older copies this Volume saw is registered too; a first placement
// is not (it costs nothing).
//
// Owners: Open fences the VSD at Config.Epoch on every reachable node
// (chunkstore.Store.Fence) before reading the chunk lists, so an older
// owner's later writes fail there (ErrFenced, EPERM to its client); any
// replica refusing a write for its epoch fails the write.
//
// Invariants:
//   - A write is acknowledged only when every replica it was not written
//     to has been dropped: the drop registered on a majority of nodes, and
//     the survivors' stamps saying so durably.
//   - Generations registered or stamped for an extent only grow (a retry
//     takes the next one).
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
// it exclusively. A request to several replicas runs the first in the
// caller's goroutine and the others on the Volume's fan-out workers, which
// live until Close (Close waits for them; a request after Close runs them
// in the caller). A write-back write of one extent (writeAsync) holds the
// extent's lock shared from its writer goroutine until its last replica's
// outcome arrives, and is completed there: often on a chunksvc.Client's
// reader goroutine (Pending.Then), which therefore only does non-blocking
// bookkeeping and hands failures (drops wait for the network) to a fan-out
// worker. WriteDeferred (nbd.DeferredWriter) leaves taking a write-back
// write to the replicas to the NBD worker that answered it; a write-back
// WriteAt (queue depth 1, the session's reader) hands it to a fan-out
// worker. Flush sends its Syncs to other nodes once the write-back writes are
// sent (wbGroup.netSent); this node's Sync waits until its own writes of
// them are done (wbGroup.sent).
//
// Rescan repeats Open's fence and scan for the extents left unavailable,
// once the nodes they name are back.
//
// ReadOnly Volumes (read-only VSDs) fence nothing, read the register
// without fencing it, never drop, restamp or register, and refuse writes.
//
// Caveats: healing (re-mirroring dropped replicas, freeing stale copies)
// is not done here: Status lists the degraded extents as its queue. An
// extent whose only current copy is on a node that is down stays
// unavailable until it returns (Rescan). A drop needs a majority of the
// pool's nodes: an owner that reaches fewer fails its degraded writes
// (ErrNoMajority, EIO); a two-node pool without a witness cannot drop at
// all. A write in flight when an owner crashed may have reached some
// replicas only; until healing resynchronises them, reads of that block
// may alternate between old and new content. Pool.Disks and Pool.Nodes
// must list members that are down, or Open cannot count them. See
// docs/scribe.md "Failover" for the one case (two owner crashes in the
// middle of whole-extent trims) the register does not cover.
package replvol
