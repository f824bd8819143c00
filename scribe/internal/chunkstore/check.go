package chunkstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// Check verifies the store against its disk: both superblock copies, every
// chunk record (with the journal entries newer than it) against the
// in-memory table, the free list, and the checksum of every written block. Run it while no writes are in flight;
// it returns every problem found, joined.
func (s *Store) Check(ctx context.Context) error {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf(format, args...))
	}
	buf := make([]byte, 2*superSize)
	if _, err := s.dev.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("check: read superblocks: %w", err)
	}
	for i, name := range []string{"primary", "backup"} {
		sb, err := decodeSuperblock(buf[i*superSize : (i+1)*superSize])
		if err != nil {
			bad("%s superblock: %w", name, err)
		} else if sb != s.sb {
			bad("%s superblock differs from the one in use: %w", name, ErrCorrupt)
		}
	}

	s.mu.Lock()
	chunks := make(map[uint64]*chunk, len(s.byKey))
	for key, c := range s.byKey {
		if c.hdr.VSD != key.VSD || c.hdr.Extent != key.Extent {
			bad("chunk %d is filed under the wrong key", c.hdr.Slot)
		}
		if _, dup := chunks[c.hdr.Slot]; dup {
			bad("slot %d holds two chunks", c.hdr.Slot)
		}
		chunks[c.hdr.Slot] = c
	}
	free := map[uint64]bool{}
	for _, slot := range s.free {
		if free[slot] || chunks[slot] != nil || slot >= s.sb.ChunkCount {
			bad("free slot %d is duplicated, in use or out of range", slot)
		}
		free[slot] = true
	}
	if uint64(len(free)+len(chunks)) != s.sb.ChunkCount {
		bad("%d free + %d used slots, disk has %d", len(free), len(chunks), s.sb.ChunkCount)
	}
	s.mu.Unlock()

	// Journal entries newer than their record count as part of it; the
	// open block is written first.
	if err := s.Sync(); err != nil {
		bad("%w", err)
	}
	type seqEntry struct {
		seq uint64
		e   jentry
	}
	journaled := map[uint64][]seqEntry{}
	jblocks, err := readJournal(s.dev, s.sb)
	if err != nil {
		bad("%w", err)
	}
	open := s.j.position()
	for _, jb := range jblocks {
		if jb.Seq > open.Seq {
			bad("journal block %d is newer than the open block %d: %w", jb.Seq, open.Seq, ErrCorrupt)
		}
		for _, e := range jb.Entries {
			journaled[uint64(e.Slot)] = append(journaled[uint64(e.Slot)], seqEntry{jb.Seq, e})
		}
	}

	blocks := s.sb.blocksPerChunk()
	rec := make([]byte, s.sb.recordSize())
	block := make([]byte, BlockSize)
	for slot := uint64(0); slot < s.sb.ChunkCount; slot++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := s.dev.ReadAt(rec, s.sb.recordOffset(slot)); err != nil {
			bad("read record %d: %w", slot, err)
			continue
		}
		h, used, err := decodeHeader(rec, s.sb.Nonce, slot, blocks)
		if err != nil {
			bad("%w", err)
			continue
		}
		c := chunks[slot]
		if !used {
			if c != nil && c.hdr.Generation > 0 {
				bad("slot %d is in use in memory but free on disk", slot)
			}
			continue
		}
		if c == nil {
			bad("slot %d is used on disk (extent %d of VSD %s) but free in memory", slot, h.Extent, h.VSD)
			continue
		}
		if h.JSeq > open.Seq {
			bad("slot %d: record includes journal block %d, newer than the open block %d", slot, h.JSeq, open.Seq)
		}
		for _, se := range journaled[slot] {
			if (jpos{h.JSeq, int(h.JIdx)}).newer(se.seq, int(se.e.Idx)) {
				se.e.apply(func(which uint8, block int, sum uint32) {
					binary.LittleEndian.PutUint32(rec[headerSize+4*(int(which)*blocks+block):], sum)
				})
			}
		}
		c.mu.RLock()
		if h.VSD != c.hdr.VSD || h.Extent != c.hdr.Extent || h.Epoch != c.hdr.Epoch || h.Generation != c.hdr.Generation || h.Stamp != c.hdr.Stamp || !bytes.Equal(h.Written, c.hdr.Written) {
			bad("slot %d: header on disk %+v differs from memory %+v", slot, h, c.hdr)
		}
		for i := range blocks {
			if !bit(h.Written, i) {
				continue
			}
			for k := range 2 {
				if got := binary.LittleEndian.Uint32(rec[headerSize+4*(k*blocks+i):]); got != c.slots[k][i] {
					bad("slot %d block %d checksum slot %d: disk %08x, memory %08x", slot, i, k, got, c.slots[k][i])
				}
			}
			if _, err := s.dev.ReadAt(block, s.sb.chunkOffset(slot)+int64(i)*BlockSize); err != nil {
				bad("read slot %d block %d: %w", slot, i, err)
				continue
			}
			if sum := crc(block); sum != c.slots[0][i] && sum != c.slots[1][i] {
				bad("slot %d (extent %d) block %d: %w", slot, h.Extent, i, ErrChecksum)
			}
		}
		c.mu.RUnlock()
	}
	return errors.Join(problems...)
}
