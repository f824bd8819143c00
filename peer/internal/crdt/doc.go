// Package crdt holds the merge types of the cluster state and their laws:
// records made of per-field last-writer-wins registers, observed-remove
// sets and PN-counters, record tombstones, version vectors, changes and
// snapshot chunks, and their canonical binary encoding.
//
// Merge laws: Merge is commutative, associative and idempotent, and its
// result is normalised (every field, tag or counter entry stamped at or
// before the record's tombstone is dropped), so replicas that merged the
// same information in any order, with duplicates, hold byte-identical
// encodings. Stamps order writes by hybrid logical time, then by origin
// (node ID and incarnation), so ties are broken the same way everywhere.
//
// Tombstones: a record delete and an OR-set remove carry the Dot (origin,
// seq) of the change that made them. CollectTombstones drops those the
// caller declares causally stable; deciding stability is the store's job.
//
// Schema evolution: a record carries the highest schema version that wrote
// it; Schema.View fills defaults for fields a record lacks and ignores
// fields it does not know, which the record keeps and merges all the same.
// Nothing is ever rewritten because a schema changed.
//
// Encoding: Encode* functions are canonical (sorted maps, minimal varints,
// no optional fields), and Decode* functions accept only canonical,
// normalised input within the size limits, so Decode(b) succeeds only when
// Encode(Decode(b)) == b. Decoders return errors wrapping ErrCorrupt and
// never panic; they are fuzzed.
//
// Concurrency: values are plain data; callers synchronise. Merge returns
// fresh values and never aliases its inputs.
package crdt
