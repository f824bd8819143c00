// Package chunkstore is the on-disk format of one scribe data disk: a
// superblock, a table of chunk records and an area of fixed-size chunks,
// each chunk holding one extent of one VSD with a CRC-32C per 4 KiB block.
//
// Layout (little-endian), see docs/scribe.md for the byte-level table:
//
//	0        superblock (4 KiB), magic "SHOALDSK", CRC-32C in its last 4 bytes
//	4 KiB    backup copy of the superblock
//	8 KiB    chunk records, one per chunk (4 KiB each for 1 MiB chunks)
//	then     checksum journal: two open-block slots, then a ring of
//	         4 KiB blocks (journal.go)
//	aligned  chunk area: chunk i at DataOffset + i*ChunkSize
//
// A chunk record holds a 512-byte header (state, format nonce, VSD ID,
// extent index, epoch, generation, a bitmap of written blocks, the
// replicated layer's stamp, CRC-32C) and two checksum slots per block. A block's data is valid when its
// CRC-32C equals either slot; a write stores the new checksum in the slot
// that does not describe the current data, then writes the data, then
// (for a block written for the first time) sets its written bit. So a
// process killed between any two writes leaves every block either old or
// new and verifiable. Records are always written whole (4 KiB-aligned),
// which O_DIRECT requires. Records from an earlier format of the disk are
// ignored through the nonce, so formatting never has to zero the table.
//
// The journal makes an overwrite (every block already written, header
// unchanged, entries fitting one journal block: up to a whole 1 MiB
// chunk, as run entries) one device write, the data: its new checksums go
// into memory and into the journal's open block. Sync (before the
// fdatasync) rewrites the open block in place, alternating between two
// open slots so a torn write never destroys the last good copy; only a
// full block is sealed into the ring. A record carries the journal
// position (block, entry index) up to which it includes its chunk's
// entries, so writing a record never waits for the journal. Before the
// first such write to a chunk since its record was last written, a mark
// entry for the chunk is written (and waited for): on Open, after
// replaying the journal entries after each record's position, every
// written block of a marked chunk that matches neither slot takes the
// checksum of its data; it holds a write that completed but whose entry
// never reached the disk. When three quarters of the ring are sealed, a
// writer (holding no chunk lock) checkpoints: it writes the record of
// every chunk with journaled checksums, marks each again right after
// (so it stays one write per overwrite), and syncs, after which those
// blocks may be reused. If a sealed block's write fails, Sync writes
// those records instead (or fails). When a Sync is likely soon (the last
// came at most syncSoonWrites journaled writes after the one before, or
// the write has FUA), an overwrite of a marked chunk writes the open
// block in the same submission as its data (pairWriter: RingDevice, one
// io_uring_enter), so the Sync that follows only syncs the device.
//
// WriteSums is a write whose block checksums the caller computed (the
// replicated layer's owner, once for every replica): the store keeps them
// as given. A wrong one can only make its block fail with ErrChecksum.
//
// Invariants:
//   - A read never returns bytes whose checksum does not match: it returns
//     ErrChecksum instead. Unwritten blocks and absent chunks read as zero.
//   - A write whose epoch is older than the chunk's is refused with
//     ErrStaleEpoch and changes nothing. After Fence(vsd, e) every chunk
//     of vsd is at epoch e or newer and, until the store is closed, no
//     chunk of vsd is allocated for an older epoch.
//   - A chunk's Stamp (generation and member disks of the replicated
//     layer) only grows: requests carrying an older stamp leave it as is.
//   - Format never overwrites a disk that holds any non-zero byte in its
//     first 64 KiB unless FormatOptions.Force is set.
//   - Write with fua, and Sync, return only once data and metadata are on
//     stable storage (open block written, then fdatasync).
//   - A record on disk at journal position (s, n) includes every journal
//     entry of its chunk before it (blocks before s, the first n units of
//     s); entries after it were made after the record. Ring blocks are
//     only reused once a checkpoint has written every record they
//     describe. Of the two open slots, a write never goes to the one
//     holding the last good copy of the open block.
//   - Data is written ahead of its checksums only in a chunk whose mark
//     (after its record's position) is on disk. Only such data is paired
//     with the open block (either may land first): a mark still in
//     flight is written and waited for before the data.
//
// Concurrency: a Store is safe for concurrent use. Each chunk has a
// read-write lock: writes to one chunk are serialised, reads share it, and
// chunks proceed in parallel. The chunk table is guarded by one mutex.
//
// Sync is a group commit: concurrent callers share one open-block write
// and one device sync that started after they called.
//
// Devices: OpenFile returns a RingDevice (reads and writes through an
// io_uring of its own, package uring: waiting goroutines hold no thread)
// for an O_DIRECT disk where the kernel allows io_uring, else a
// FileDevice (blocking system calls); FileOptions.IO forces either. Both
// share the O_DIRECT alignment copying and are safe for concurrent use.
//
// Caveats: the whole record table (2 KiB of checksums per MiB of data)
// is kept in memory. After a power loss (not a process crash) a block
// whose write was in flight may fail its checksum, because the page cache
// (buffered FileDevice) or the disk's volatile cache (O_DIRECT) may
// persist data before its checksum slot or mark; it is reported as
// ErrChecksum, never as wrong data, and the replicated layer repairs it.
// In a chunk that was marked when the process or machine stopped, a block
// rotten in that window is taken as written data (its checksum is
// recomputed on Open): the price of one device write per overwrite. A
// first write to a block costs three device writes (record, data,
// header), an overwrite one plus a share of a journal block (a FLUSH one
// open-block write), and the first overwrite of a chunk after its record
// was written by anything but a checkpoint two (mark, data).
package chunkstore
