package chunkstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// The checksum journal: a ring of 4 KiB blocks after the record table.
// An overwrite of blocks that are already written, with no change to the
// chunk header, puts its new checksums in journal entries instead of
// rewriting the chunk's record; concurrent writers share one journal
// block write (group commit). See doc.go for the rules.

const (
	journalMagic      = 0x4c4e524a // "JRNL"
	journalHeaderSize = 24
	journalEntrySize  = 16
	// journalMaxEntries fit one block before its trailing CRC.
	journalMaxEntries = (BlockSize - 4 - journalHeaderSize) / journalEntrySize
	// journalMaxWriteBlocks: larger writes rewrite the record instead
	// (one record write per many blocks costs less than the entries).
	journalMaxWriteBlocks = 64
	// jmark is the Which of a mark entry.
	jmark = 2
)

// A journaled write's entries (and its mark) always fit one block: add
// relies on it.
const _ = uint(journalMaxEntries - journalMaxWriteBlocks - 1)

// jentry sets checksum slot Which of block Block of the chunk in Slot,
// or with Which == jmark marks the chunk (Block and Sum zero): its data
// may be ahead of its checksums (see doc.go).
type jentry struct {
	Slot  uint32
	Block uint16
	Which uint8
	Sum   uint32
}

// jblock is one decoded journal block.
type jblock struct {
	Seq     uint64
	Entries []jentry
}

func encodeJournalBlock(b []byte, nonce, seq uint64, entries []jentry) {
	clear(b[:BlockSize])
	le := binary.LittleEndian
	le.PutUint32(b[0:], journalMagic)
	le.PutUint16(b[4:], uint16(len(entries)))
	le.PutUint16(b[6:], formatVersion)
	le.PutUint64(b[8:], nonce)
	le.PutUint64(b[16:], seq)
	for i, e := range entries {
		p := b[journalHeaderSize+i*journalEntrySize:]
		le.PutUint32(p[0:], e.Slot)
		le.PutUint16(p[4:], e.Block)
		p[6] = e.Which
		le.PutUint32(p[8:], e.Sum)
	}
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
	jb.Seq = le.Uint64(b[16:])
	if jb.Seq == 0 {
		return jblock{}, false, fmt.Errorf("journal block with sequence 0: %w", ErrCorrupt)
	}
	jb.Entries = make([]jentry, n)
	for i := range jb.Entries {
		p := b[journalHeaderSize+i*journalEntrySize:]
		e := jentry{Slot: le.Uint32(p[0:]), Block: le.Uint16(p[4:]), Which: p[6], Sum: le.Uint32(p[8:])}
		badMark := e.Which == jmark && (e.Block != 0 || e.Sum != 0)
		if uint64(e.Slot) >= chunks || int(e.Block) >= blocks || e.Which > jmark || badMark || p[7] != 0 || le.Uint32(p[12:]) != 0 {
			return jblock{}, false, fmt.Errorf("journal block %d entry %d (slot %d block %d checksum slot %d): %w", jb.Seq, i, e.Slot, e.Block, e.Which, ErrCorrupt)
		}
		jb.Entries[i] = e
	}
	return jb, true, nil
}

// readJournal returns the valid blocks of dev's journal in sequence order.
func readJournal(dev Device, sb Superblock) ([]jblock, error) {
	buf := make([]byte, sb.JournalBlocks*BlockSize)
	if _, err := dev.ReadAt(buf, int64(sb.JournalOffset)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var out []jblock
	for i := range sb.JournalBlocks {
		jb, ok, err := decodeJournalBlock(buf[i*BlockSize:(i+1)*BlockSize], sb.Nonce, sb.ChunkCount, sb.blocksPerChunk())
		if err != nil {
			return nil, fmt.Errorf("read journal block %d: %w", i, err)
		}
		if !ok {
			continue
		}
		if jb.Seq%sb.JournalBlocks != i {
			return nil, fmt.Errorf("journal block %d holds sequence %d: %w", i, jb.Seq, ErrCorrupt)
		}
		out = append(out, jb)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out, nil
}

// replay applies, in sequence order, every entry newer than its chunk's
// record: jseq(slot) returns the record's JSeq and whether the slot is in
// use, set applies an entry (a checksum or a mark). It returns the highest
// sequence found.
func replay(blocks []jblock, jseq func(slot uint64) (uint64, bool), set func(jentry)) uint64 {
	var last uint64
	for _, jb := range blocks {
		last = max(last, jb.Seq)
		for _, e := range jb.Entries {
			if rs, used := jseq(uint64(e.Slot)); used && jb.Seq > rs {
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
	dev   Device
	sb    Superblock
	buf   []byte // aligned block buffer, used by the writer only
	mu    sync.Mutex
	cond  *sync.Cond
	next  uint64 // sequence of the open block
	open  []jentry
	done  uint64 // blocks up to this sequence are written (or failed)
	fails map[uint64]error
	busy  bool // a writer is writing a block
	// lost is set when a block write failed: its entries are only in
	// memory until a checkpoint writes their records; Sync fails until
	// then.
	lost    error
	lostSeq uint64
	// checkpointed: every entry in blocks up to it is in a durable record,
	// so those blocks may be overwritten.
	checkpointed  uint64
	checkpointing bool
}

func newJournal(dev Device, sb Superblock, last uint64) *journal {
	j := &journal{dev: dev, sb: sb, buf: alignedBuf(BlockSize), next: last + 1, done: last, checkpointed: last, fails: map[uint64]error{}}
	j.cond = sync.NewCond(&j.mu)
	return j
}

// sealed is the JSeq a record written now carries: the caller holds the
// chunk's lock, so none of its entries sit in the open block.
func (j *journal) sealed() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.next - 1
}

// add puts entries in one journal block and returns its sequence, or
// false when the ring has no room (the caller rewrites the record).
func (j *journal) add(entries []jentry) (uint64, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for len(j.open)+len(entries) > journalMaxEntries {
		if j.busy {
			j.cond.Wait()
			continue
		}
		j.flushLocked()
	}
	if j.next > j.checkpointed+j.sb.JournalBlocks {
		return 0, false
	}
	j.open = append(j.open, entries...)
	return j.next, true
}

// wait returns once block seq is written, writing it if no one else is.
func (j *journal) wait(seq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.done < seq {
		if j.busy {
			j.cond.Wait()
			continue
		}
		j.flushLocked()
	}
	if err := j.fails[seq]; err != nil {
		return err
	}
	return nil
}

// flushLocked writes the open block; j.mu is held and released while the
// device writes.
func (j *journal) flushLocked() {
	j.busy = true
	seq, entries := j.next, j.open
	j.next++
	j.open = nil
	j.mu.Unlock()
	encodeJournalBlock(j.buf, j.sb.Nonce, seq, entries)
	_, err := j.dev.WriteAt(j.buf, int64(j.sb.JournalOffset)+int64(seq%j.sb.JournalBlocks)*BlockSize)
	j.mu.Lock()
	j.busy = false
	j.done = seq
	for s := range j.fails {
		if s+j.sb.JournalBlocks < seq {
			delete(j.fails, s) // no waiter is that far behind
		}
	}
	if err != nil {
		j.fails[seq] = fmt.Errorf("write journal block %d: %w", seq, err)
		j.lost, j.lostSeq = j.fails[seq], seq
	}
	j.cond.Broadcast()
}

// flushAll writes every entry added so far (the open block too) and
// returns an error if any journal block write failed since the last
// checkpoint.
func (j *journal) flushAll() error {
	j.mu.Lock()
	seq := j.next - 1
	if len(j.open) > 0 {
		seq = j.next
	}
	j.mu.Unlock()
	err := j.wait(seq)
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
	if j.checkpointing || !force && !due && j.next-j.checkpointed < j.sb.JournalBlocks*3/4 {
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
