// Package statestore is the node's copy of the cluster state: CRDT records
// (package crdt) in a bbolt file, the per-origin change logs that replicate
// them, version vectors, snapshots, watches, acknowledgements and tombstone
// collection.
//
// Layout (one bbolt file): records (key → canonical record, tombstones
// included), log/<origin> (seq → change), vv and floor (per origin: the
// highest seq applied and the highest seq compacted out of the log), revs
// (local revision → key and visible record, for watchers), tombs (index of
// records holding tombstones), acks (member → origin, version vector, time),
// resync (member → highest incarnation that must not be merged any more),
// meta.
//
// Invariants, checked by Check:
//   - every stored record is canonical, normalised and not empty;
//   - for each origin, the log holds exactly the seqs floor+1 … vv;
//   - changes of an origin are applied in seq order, each once: a change
//     with seq > vv+1 is skipped (the replicator fetches the gap), one with
//     seq ≤ vv is a duplicate and ignored;
//   - every local write is committed (fsync) before Write returns, unless
//     Config.NoSync (tests only).
//
// Tombstones (record deletes and OR-set removes) are collected only when
// causally stable: every current member has acknowledged a version vector
// covering the change that made them, and this node has applied everything
// every member had applied when it acknowledged (so no write concurrent
// with the delete can still arrive). A member silent for longer than the
// rejoin horizon stops holding collection back: it is marked for resync,
// its old origin is refused when it talks to us, and it must reload from a
// snapshot under a new incarnation (Reset) instead of merging, so records
// deleted meanwhile do not come back. Only a node that hears a quorum of
// the members (more than half, or half with the lowest node ID) marks
// silent ones, so in a long partition at most one side expels the other;
// a node without a quorum keeps its tombstones. Marks spread between nodes
// (ResyncMarks, AdoptResync) and stay after the node returns under a new
// incarnation. A node removed from the members is marked the same way, in
// case it is ever added again.
//
// Concurrency: a Store is safe for concurrent use; bbolt serialises writers.
// Watchers block in Next without goroutines of their own.
//
// Caveat: digests hash only what readers see (no tombstones), so replicas
// that collected tombstones at different moments still agree.
package statestore
