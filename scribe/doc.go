// Package scribe is the block engine: it pools the data disks of every node
// into one replicated store, serves virtual storage devices (VSDs) to local
// QEMU over NBD on a UNIX socket, and keeps every extent on enough replicas.
//
// The root package is the `shoal scribe` daemon (Config, New, Run) and the
// records it shares with the CLI through the cluster state:
//
//	vsd/NAME          a VSD: id, size, replicas, created, readonly (VSDRecord;
//	                  `shoal vsd`; readonly=1 for images, see below)
//	vsd-status/NAME   what the VSD's owner last saw: owner, epoch, allocated,
//	                  degraded extents (VSDStatus; written by the owner)
//	scribe/NODE-ID    a node's chunk service address and disks (NodeRecord)
//	vsd-deleted/ID    a removed VSD whose chunks every node frees; each node
//	                  adds freed-NODE, and the record is deleted once every
//	                  member that has not left did
//
// Run serves NBD at once (Config.Ready is called then) and waits for the
// node to be a cluster member before it opens the disks (formatting blank
// ones, package disks), starts the chunk service (mutual TLS with the
// node's cluster certificate, peer.LoadNodeTLS) and publishes its record.
// An NBD client naming a VSD makes the daemon claim "vsd/NAME" at the next
// epoch and open it (replvol.Open with that epoch): the previous owner is
// fenced by every replica from then on. While another node that is up has
// the VSD open, the open is refused unless this node already holds the
// highest epoch (an operator took it over with `shoal claim take`).
// A read-only VSD (readonly=1, an uploaded image) is opened without a
// claim and without fencing, on any number of nodes at once, exported
// READ_ONLY. `shoal vsd rm` leaves a "vsd-deleted/ID" record; removal wins
// over any open: an open VSD that was removed refuses I/O, and every
// daemon fences the VSD at the highest epoch (kept in its generation
// register) before it frees its chunks. Sessions of one VSD share one
// Volume; the last to end flushes and closes it.
//
// The daemon keeps its own state in Config.StateDir (DataDir/scribe): the
// generation register (package genreg), which owners write before
// acknowledging a degraded write and which also keeps each VSD's fence
// epoch, re-applied to the disks at start. Every node serves the chunk
// service, a node without disks (a witness) for the register only.
//
// Invariants: a VSD is written only by the node holding its claim's
// highest epoch (replicas refuse older epochs); a disk is formatted only
// when blank or listed in ForceFormat, never when it already holds this
// node's store.
//
// Concurrency: opening and closing VSDs is serialised (one mutex);
// requests on open VSDs run concurrently. Run owns every goroutine it
// starts and waits for them: at shutdown NBD sessions end first (closing
// their VSDs through the local stores), then the chunk service, then the
// disks are synced and closed.
//
// Caveats: the status in vsd-status/ is published every Config.Interval
// while it changes and can be stale after a crash (its Updated says when);
// resizing takes effect when the VSD is next opened. While the node is
// fenced (peer's fence, followed by a long poll) open VSDs refuse I/O;
// after the fence each resumes only if this node still holds its claim at
// its epoch.
//
// Internal packages: nbd (the NBD server and a small client), chunkstore
// (the on-disk format of one data disk), disks (discovery and formatting),
// chunksvc (the chunk service), placement, replvol (the replicated VSD),
// localvsd (a single-replica VSD), loopcluster (in-process clusters for
// tests) and patterncheck (a data-integrity checker). See docs/scribe.md.
package scribe
