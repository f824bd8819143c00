package chunkstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// The checksum journal: two slots for the open block, then a ring of
// 4 KiB blocks, after the record table. An overwrite of blocks that are
// already written, with no change to the chunk header, puts its new
// checksums in journal entries instead of rewriting the chunk's record.
// The open block collects entries; Sync (and a mark that must be
// durable) rewrites it in place in one of the two open slots, alternating
// so a torn write never destroys the last good copy; only a full block is
// sealed into the ring. A record names the journal position (block,
// entry index) up to which it includes its chunk's entries. See doc.go
// for the rules.

const (
	journalMagic      = 0x4c4e524a // "JRNL"
	journalHeaderSize = 24
	journalEntrySize  = 16
	// journalMaxEntries is how many 16-byte entry units fit one block
	// before its trailing CRC.
	journalMaxEntries = (BlockSize - 4 - journalHeaderSize) / journalEntrySize
	// journalOpenSlots is the number of slots the open block alternates
	// between, before the ring.
	journalOpenSlots = 2
	// jmark is the Which of a mark entry.
	jmark = 2
	// jrunA and jrunA+1 are the Which of a run entry setting checksum
	// slot A or B of consecutive blocks; its checksums follow it, four
	// per 16-byte unit.
	jrunA = 3
	// jrunMin is the shortest run written as a run entry (shorter ones
	// cost no more as single entries).
	jrunMin = 3
)

// jentry sets checksum slot Which of block Block of the chunk in Slot;
// with Which == jmark it marks the chunk (Block and Sum zero): its data
// may be ahead of its checksums (see doc.go); with Which == jrunA+k it
// sets slot k of blocks Block, Block+1, … to Sums.
type jentry struct {
	Slot  uint32
	Block uint16
	Which uint8
	Sum   uint32
	Sums  []uint32
	// Idx is the entry's unit index in its block (set by decoding).
	Idx uint16
}

// units is the number of 16-byte units the entry takes.
func (e jentry) units() int {
	if e.Which >= jrunA {
		return 1 + (len(e.Sums)+3)/4
	}
	return 1
}

// apply calls set for each checksum the entry names.
func (e jentry) apply(set func(which uint8, block int, sum uint32)) {
	switch {
	case e.Which < jmark:
		set(e.Which, int(e.Block), e.Sum)
	case e.Which >= jrunA:
		for i, sum := range e.Sums {
			set(e.Which-jrunA, int(e.Block)+i, sum)
		}
	}
}

// jblock is one decoded journal block.
type jblock struct {
	Seq     uint64
	Units   int
	Entries []jentry
}

func encodeJournalBlock(b []byte, nonce, seq uint64, entries []jentry) {
	clear(b[:BlockSize])
	le := binary.LittleEndian
	le.PutUint32(b[0:], journalMagic)
	le.PutUint16(b[6:], formatVersion)
	le.PutUint64(b[8:], nonce)
	le.PutUint64(b[16:], seq)
	u := 0
	for _, e := range entries {
		p := b[journalHeaderSize+u*journalEntrySize:]
		le.PutUint32(p[0:], e.Slot)
		le.PutUint16(p[4:], e.Block)
		p[6] = e.Which
		if e.Which >= jrunA {
			le.PutUint16(p[8:], uint16(len(e.Sums)))
			for i, sum := range e.Sums {
				le.PutUint32(p[journalEntrySize+4*i:], sum)
			}
		} else {
			le.PutUint32(p[8:], e.Sum)
		}
		u += e.units()
	}
	le.PutUint16(b[4:], uint16(u))
	le.PutUint32(b[BlockSize-4:], crc(b[:BlockSize-4]))
}

// decodeJournalBlock parses one journal block. ok is false for a block
// that is not a journal block of this format (never written, an earlier
// format, or torn by a crash: its CRC fails); err is set for a block that
// passes its CRC but names entries outside the store.
func decodeJournalBlock(b []byte, nonce uint64, chunks uint64, blocks int) (jb jblock, ok bool, err error) {
	le := binary.LittleEndian
	if len(b) < BlockSize || le.Uint32(b[0:]) != journalMagic || le.Uint64(b[8:]) != nonce {
		return jblock{}, false, nil
	}
	if crc(b[:BlockSize-4]) != le.Uint32(b[BlockSize-4:]) {
		return jblock{}, false, nil
	}
	n := int(le.Uint16(b[4:]))
	if v := le.Uint16(b[6:]); v != formatVersion || n > journalMaxEntries {
		return jblock{}, false, fmt.Errorf("journal block: version %d, %d entries: %w", v, n, ErrCorrupt)
	}
	jb.Seq, jb.Units = le.Uint64(b[16:]), n
	if jb.Seq == 0 {
		return jblock{}, false, fmt.Errorf("journal block with sequence 0: %w", ErrCorrupt)
	}
	for u := 0; u < n; {
		p := b[journalHeaderSize+u*journalEntrySize:]
		e := jentry{Slot: le.Uint32(p[0:]), Block: le.Uint16(p[4:]), Which: p[6], Idx: uint16(u)}
		bad := uint64(e.Slot) >= chunks || int(e.Block) >= blocks || e.Which > jrunA+1 || p[7] != 0 || le.Uint32(p[12:]) != 0
		switch {
		case e.Which >= jrunA:
			count := int(le.Uint16(p[8:]))
			bad = bad || count == 0 || int(e.Block)+count > blocks || le.Uint16(p[10:]) != 0 || u+1+(count+3)/4 > n
			if !bad {
				e.Sums = make([]uint32, count)
				for i := range e.Sums {
					e.Sums[i] = le.Uint32(p[journalEntrySize+4*i:])
				}
				// Unused checksums in the last unit are zero.
				for i := count; i%4 != 0; i++ {
					bad = bad || le.Uint32(p[journalEntrySize+4*i:]) != 0
				}
			}
		default:
			e.Sum = le.Uint32(p[8:])
			bad = bad || e.Which == jmark && (e.Block != 0 || e.Sum != 0)
		}
		if bad {
			return jblock{}, false, fmt.Errorf("journal block %d entry %d (slot %d block %d kind %d): %w", jb.Seq, u, e.Slot, e.Block, e.Which, ErrCorrupt)
		}
		jb.Entries = append(jb.Entries, e)
		u += e.units()
	}
	return jb, true, nil
}

// readJournal returns the valid blocks of dev's journal in sequence
// order: the ring's, and the open slots' (for a sequence found more than
// once, the copy with the most entries: every copy of a block holds a
// prefix of its final entries).
func readJournal(dev Device, sb Superblock) ([]jblock, error) {
	n := sb.JournalBlocks + journalOpenSlots
	buf := make([]byte, n*BlockSize)
	if _, err := dev.ReadAt(buf, int64(sb.JournalOffset)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	bySeq := map[uint64]jblock{}
	for i := range n {
		jb, ok, err := decodeJournalBlock(buf[i*BlockSize:(i+1)*BlockSize], sb.Nonce, sb.ChunkCount, sb.blocksPerChunk())
		if err != nil {
			return nil, fmt.Errorf("read journal block %d: %w", i, err)
		}
		if !ok {
			continue
		}
		if i >= journalOpenSlots && jb.Seq%sb.JournalBlocks != i-journalOpenSlots {
			return nil, fmt.Errorf("journal ring block %d holds sequence %d: %w", i-journalOpenSlots, jb.Seq, ErrCorrupt)
		}
		if old, dup := bySeq[jb.Seq]; !dup || jb.Units > old.Units {
			bySeq[jb.Seq] = jb
		}
	}
	out := make([]jblock, 0, len(bySeq))
	for _, jb := range bySeq {
		out = append(out, jb)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out, nil
}

// jpos is a journal position: after the first N entry units of block
// Seq (and every block before it).
type jpos struct {
	Seq uint64
	N   int
}

// newer reports whether an entry at index idx of block seq comes after
// position p (a record at p does not include it).
func (p jpos) newer(seq uint64, idx int) bool {
	return seq > p.Seq || seq == p.Seq && idx >= p.N
}

// replay applies, in sequence order, every entry newer than its chunk's
// record: pos(slot) returns the record's journal position and whether
// the slot is in use, set applies an entry (checksums or a mark). It
// returns the highest sequence found.
func replay(blocks []jblock, pos func(slot uint64) (jpos, bool), set func(jentry)) uint64 {
	var last uint64
	for _, jb := range blocks {
		last = max(last, jb.Seq)
		for _, e := range jb.Entries {
			if p, used := pos(uint64(e.Slot)); used && p.newer(jb.Seq, int(e.Idx)) {
				set(e)
			}
		}
	}
	return last
}

// journal is the in-memory side of the ring: the open block collecting
// entries, the one writer at a time, and how far records are
// checkpointed.
type journal struct {
	dev  Device
	sb   Superblock
	buf  []byte // aligned block buffer, used by the writer only
	mu   sync.Mutex
	cond *sync.Cond
	// next is the sequence of the open block, units its entry units.
	next  uint64
	open  []jentry
	units int
	// written: every block before it is written (or failed, see fails)
	// and so are the first writtenN units of the open block.
	written  uint64
	writtenN int
	busy     bool // a writer is writing a block
	// slot is the open slot the next write of the open block goes to:
	// never the one holding the last good copy.
	slot  int
	fails map[uint64]error // sealed blocks whose write failed
	// lost is set when a sealed block's write failed: its entries are
	// only in memory until a checkpoint writes their records; Sync fails
	// until then.
	lost    error
	lostSeq uint64
	// checkpointed: every entry in blocks up to it is in a durable record,
	// so those blocks may be overwritten.
	checkpointed  uint64
	checkpointing bool
	// checkpointAt: a checkpoint is due once this many blocks were
	// sealed since the last (three quarters of the ring; tests lower it).
	checkpointAt uint64
	// blockUnits: a block is sealed before it would hold more entry units
	// (journalMaxEntries; tests lower it to seal blocks sooner).
	blockUnits int
}

func newJournal(dev Device, sb Superblock, last uint64) *journal {
	j := &journal{dev: dev, sb: sb, buf: alignedBuf(BlockSize), next: last + 1, written: last + 1, checkpointed: last, fails: map[uint64]error{}, checkpointAt: sb.JournalBlocks * 3 / 4, blockUnits: journalMaxEntries}
	j.cond = sync.NewCond(&j.mu)
	return j
}

// position is the journal position a record written now carries: the
// caller holds the chunk's lock, so every entry of the chunk made so far
// is before it.
func (j *journal) position() jpos {
	j.mu.Lock()
	defer j.mu.Unlock()
	return jpos{j.next, j.units}
}

// add puts entries (at most journalMaxEntries units) in one journal
// block and returns the position just after them, or false when the ring
// has no room (the caller rewrites the record).
func (j *journal) add(entries []jentry) (jpos, bool) {
	need := 0
	for _, e := range entries {
		need += e.units()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.units > 0 && j.units+need > j.blockUnits {
		if j.busy {
			j.cond.Wait()
			continue
		}
		j.writeLocked(true)
	}
	if j.next > j.checkpointed+j.sb.JournalBlocks || j.lost != nil {
		// No room, or a sealed block was lost: the open slots may hold
		// the only copy of its acknowledged entries until a checkpoint.
		return jpos{}, false
	}
	j.open = append(j.open, entries...)
	j.units += need
	return jpos{j.next, j.units}, true
}

func (j *journal) coveredLocked(p jpos) bool {
	return j.written > p.Seq || j.written == p.Seq && j.writtenN >= p.N
}

// wait returns once every entry before p is written, writing the open
// block if no one else is.
func (j *journal) wait(p jpos) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for !j.coveredLocked(p) {
		if j.busy {
			j.cond.Wait()
			continue
		}
		if err := j.writeLocked(false); err != nil && !j.coveredLocked(p) {
			return err
		}
	}
	return j.fails[p.Seq]
}

// writeLocked writes the open block: sealed into the ring (seal, the
// block is full) or in place into an open slot. j.mu is held and released
// while the device writes.
func (j *journal) writeLocked(seal bool) error {
	j.busy = true
	seq, n := j.next, j.units
	encodeJournalBlock(j.buf, j.sb.Nonce, seq, j.open)
	off := j.sb.openSlotOffset(j.slot)
	if seal {
		off = j.sb.ringOffset(seq)
		j.next++
		j.open, j.units = nil, 0
	}
	j.mu.Unlock()
	_, err := j.dev.WriteAt(j.buf, off)
	j.mu.Lock()
	j.busy = false
	defer j.cond.Broadcast()
	if !seal {
		if err != nil {
			// The slot may be torn; the other still holds the last good
			// copy, and the next try goes to this slot again.
			return fmt.Errorf("write journal block %d: %w", seq, err)
		}
		j.writtenN = max(j.writtenN, n)
		j.slot ^= 1
		return nil
	}
	j.written, j.writtenN = seq+1, 0
	for s := range j.fails {
		if s+j.sb.JournalBlocks < seq {
			delete(j.fails, s) // no waiter is that far behind
		}
	}
	if err != nil {
		j.fails[seq] = fmt.Errorf("write journal block %d: %w", seq, err)
		j.lost, j.lostSeq = j.fails[seq], seq
		return j.fails[seq]
	}
	return nil
}

// claimOpen claims the write of the open block in place, as a Sync
// would make it, for a caller that writes it together with a data write
// (Store.writeJournaled): when no writer is busy and the block holds
// entries not written yet, it returns the encoded block, the offset of
// the open slot it goes to and its entry units, and the caller must
// call wroteOpen with the outcome. ok is false otherwise.
func (j *journal) claimOpen() (b []byte, off int64, units int, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.busy || j.lost != nil || j.written != j.next || j.writtenN >= j.units {
		return nil, 0, 0, false
	}
	j.busy = true
	encodeJournalBlock(j.buf, j.sb.Nonce, j.next, j.open)
	return j.buf, j.sb.openSlotOffset(j.slot), j.units, true
}

// wroteOpen ends a write claimOpen claimed: on success the first units
// entry units are written and the next write goes to the other slot; on
// failure the slot may be torn, and the next write goes to it again
// (the other still holds the last good copy).
func (j *journal) wroteOpen(units int, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.busy = false
	j.cond.Broadcast()
	if err == nil {
		j.writtenN = max(j.writtenN, units)
		j.slot ^= 1
	}
}

// flushAll writes every entry added so far (the open block in place)
// and returns an error if any journal block write failed since the last
// checkpoint.
func (j *journal) flushAll() error {
	err := j.wait(j.position())
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.lost != nil {
		return j.lost
	}
	return err
}

// claimCheckpoint reports whether a checkpoint is due (force, due, or
// three quarters of the ring in use) and none runs, and if so claims it: the caller
// must call endCheckpoint. With force it waits for a running checkpoint.
func (j *journal) claimCheckpoint(force, due bool) (target uint64, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for force && j.checkpointing {
		j.cond.Wait()
	}
	if j.checkpointing || !force && !due && j.next-j.checkpointed <= j.checkpointAt {
		return 0, false
	}
	j.checkpointing = true
	return j.next - 1, true
}

func (j *journal) endCheckpoint(target uint64, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.checkpointing = false
	j.cond.Broadcast()
	if ok {
		j.checkpointed = max(j.checkpointed, target)
		if j.lost != nil && j.lostSeq <= target {
			j.lost = nil
		}
	}
}
