// Package patterncheck is a data-integrity checker for block devices: it
// writes self-describing blocks (magic, block number, write sequence,
// seeded filler), remembers which writes were acknowledged as durable (by
// FUA or a later FLUSH), and verifies after faults that every block holds
// its last durable write or one of the writes issued after it, and never
// anything else (lost, stale, misplaced or corrupt data).
//
// Concurrency: a Checker is not safe for concurrent use; drive it from
// one goroutine. Caveats: it models one writer; blocks it never wrote
// must read as zero.
package patterncheck
