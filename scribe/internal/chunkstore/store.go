package chunkstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
)

// FormatOptions configure Format.
type FormatOptions struct {
	// DiskID identifies the disk. Zero value: random.
	DiskID ID
	// NodeID and ClusterID record the owner. Zero value: unowned.
	NodeID, ClusterID ID
	// ChunkSize is the extent size, a multiple of 32 KiB up to 8 MiB.
	// Zero value: DefaultChunkSize (1 MiB).
	ChunkSize uint32
	// Force overwrites a disk that holds other data or another store.
	// Zero value: refuse.
	Force bool
}

// Format writes a new, empty chunk store on dev and syncs it. Without
// Force it refuses a disk whose first 64 KiB are not all zero.
func Format(dev Device, opts FormatOptions) (Superblock, error) {
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize%(8*BlockSize) != 0 || opts.ChunkSize > MaxChunkSize {
		return Superblock{}, fmt.Errorf("format: chunk size %d is not a multiple of %d up to %d", opts.ChunkSize, 8*BlockSize, MaxChunkSize)
	}
	size, err := dev.Size()
	if err != nil {
		return Superblock{}, fmt.Errorf("format: %w", err)
	}
	sb, err := layout(size, opts.ChunkSize)
	if err != nil {
		return Superblock{}, fmt.Errorf("format: %w", err)
	}
	probe := make([]byte, min(probeSize, size))
	if _, err := dev.ReadAt(probe, 0); err != nil && !errors.Is(err, io.EOF) {
		return Superblock{}, fmt.Errorf("format: read the start of the disk: %w", err)
	}
	if !opts.Force {
		if _, err := decodeSuperblock(probe); err == nil {
			return Superblock{}, fmt.Errorf("format: %w", ErrFormatted)
		}
		if !bytes.Equal(probe, make([]byte, len(probe))) {
			return Superblock{}, fmt.Errorf("format: %w", ErrForeignData)
		}
	}
	sb.DiskID, sb.NodeID, sb.ClusterID = opts.DiskID, opts.NodeID, opts.ClusterID
	if sb.DiskID == (ID{}) {
		sb.DiskID = NewID()
	}
	for sb.Nonce == 0 {
		sb.Nonce = binary.LittleEndian.Uint64(func() []byte { id := NewID(); return id[:8] }())
	}
	enc := sb.encode()
	for _, off := range []int64{0, superSize} {
		if _, err := dev.WriteAt(enc, off); err != nil {
			return Superblock{}, fmt.Errorf("format: write superblock at %d: %w", off, err)
		}
	}
	if err := dev.Sync(); err != nil {
		return Superblock{}, fmt.Errorf("format: %w", err)
	}
	return sb, nil
}

// ReadSuperblock returns the superblock of dev (primary, else backup).
func ReadSuperblock(dev Device) (Superblock, error) {
	buf := make([]byte, 2*superSize)
	if _, err := dev.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return Superblock{}, fmt.Errorf("read superblock: %w", err)
	}
	sb, err := decodeSuperblock(buf[:superSize])
	if err == nil {
		return sb, nil
	}
	if sb2, err2 := decodeSuperblock(buf[superSize:]); err2 == nil {
		return sb2, nil
	}
	return Superblock{}, fmt.Errorf("read superblock: %w", err)
}

// ChunkKey names the chunk holding one extent of one VSD.
type ChunkKey struct {
	VSD    ID
	Extent uint64
}

// chunk is the in-memory state of a used chunk.
type chunk struct {
	mu    sync.RWMutex
	freed bool // set under mu when the chunk was released
	hdr   header
	slots [2][]uint32
	// cur[i] is the slot describing block i's data: 0, 1 or unknown.
	cur []uint8
	// dirty: the journal holds checksums the record on disk lacks.
	dirty bool
	// marked: a mark entry newer than the record on disk is in the
	// journal (durable once markPos is), so data may be written before
	// its checksum entries are.
	marked bool
	// markPos is the journal position just after a mark entry that may
	// not be written yet (zero once it is known to be).
	markPos jpos
}

const curUnknown = 2

// Store is an open chunk store.
type Store struct {
	dev *countedDevice
	sb  Superblock

	mu     sync.Mutex
	closed bool
	byKey  map[ChunkKey]*chunk
	free   []uint64      // free slots, popped from the end
	fences map[ID]uint64 // VSD → lowest epoch allowed to allocate, see Fence

	usedSlots map[uint64]bool // only while Open builds the free list

	group      syncGroup
	recordBufs sync.Pool // aligned record-sized buffers

	j       *journal
	maxJSeq uint64 // the highest JSeq of a record, while Open runs
	dirtyMu sync.Mutex
	dirty   map[*chunk]struct{} // chunks that may be dirty, for checkpoints

	// jwrites counts the writes through the journal since the last
	// Sync; syncSoon is set when there were at most syncSoonWrites
	// before it: a Sync is then likely again soon, and writes send the
	// journal's open block along with their data (see writeJournaled).
	jwrites  atomic.Int64
	syncSoon atomic.Bool
}

// Open reads the superblock and the chunk table of dev. The Store does
// not close dev unless Close is called.
func Open(dev Device) (*Store, error) {
	sb, err := ReadSuperblock(dev)
	if err != nil {
		return nil, err
	}
	if size, err := dev.Size(); err != nil || uint64(size) < sb.DiskSize {
		return nil, fmt.Errorf("open chunk store: disk is %d bytes, format needs %d: %w", size, sb.DiskSize, errors.Join(ErrCorrupt, err))
	}
	cd := &countedDevice{Device: dev}
	cd.pair, _ = dev.(pairWriter)
	s := &Store{dev: cd, sb: sb, byKey: map[ChunkKey]*chunk{}, fences: map[ID]uint64{}, dirty: map[*chunk]struct{}{}}
	s.group.clean = ^uint64(0)
	rs := sb.recordSize()
	per := max(1, (1<<20)/rs)
	buf := make([]byte, per*rs)
	blocks := sb.blocksPerChunk()
	for first := uint64(0); first < sb.ChunkCount; first += uint64(per) {
		n := min(uint64(per), sb.ChunkCount-first)
		if _, err := dev.ReadAt(buf[:int64(n)*rs], sb.recordOffset(first)); err != nil {
			return nil, fmt.Errorf("open chunk store: read chunk table: %w", err)
		}
		for i := uint64(0); i < n; i++ {
			rec := buf[int64(i)*rs : int64(i+1)*rs]
			h, used, err := decodeHeader(rec, sb.Nonce, first+i, blocks)
			if err != nil {
				return nil, fmt.Errorf("open chunk store: %w", err)
			}
			s.maxJSeq = max(s.maxJSeq, h.JSeq)
			if !used {
				continue
			}
			key := ChunkKey{h.VSD, h.Extent}
			if _, dup := s.byKey[key]; dup {
				return nil, fmt.Errorf("open chunk store: extent %d of VSD %s is in two chunks: %w", h.Extent, h.VSD, ErrCorrupt)
			}
			c := &chunk{hdr: h, cur: make([]uint8, blocks)}
			for k := range 2 {
				c.slots[k] = make([]uint32, blocks)
				for j := range blocks {
					c.slots[k][j] = binary.LittleEndian.Uint32(rec[headerSize+4*(k*blocks+j):])
				}
			}
			for j := range c.cur {
				c.cur[j] = curUnknown
			}
			s.byKey[key] = c
		}
	}
	for slot := sb.ChunkCount; slot > 0; slot-- {
		if !s.slotUsed(slot - 1) {
			s.free = append(s.free, slot-1)
		}
	}
	s.usedSlots = nil
	if err := s.replayJournal(); err != nil {
		return nil, fmt.Errorf("open chunk store: %w", err)
	}
	return s, nil
}

// replayJournal applies the journal entries newer than their records,
// writes those records and syncs, so the whole journal is checkpointed.
func (s *Store) replayJournal() error {
	blocks, err := readJournal(s.dev, s.sb)
	if err != nil {
		return err
	}
	bySlot := make(map[uint64]*chunk, len(s.byKey))
	for _, c := range s.byKey {
		bySlot[c.hdr.Slot] = c
	}
	touched := map[*chunk]bool{}
	marked := map[*chunk]bool{}
	last := replay(blocks, func(slot uint64) (jpos, bool) {
		c := bySlot[slot]
		if c == nil {
			return jpos{}, false
		}
		return jpos{c.hdr.JSeq, int(c.hdr.JIdx)}, true
	}, func(e jentry) {
		c := bySlot[uint64(e.Slot)]
		if e.Which == jmark {
			marked[c] = true
			return
		}
		e.apply(func(which uint8, block int, sum uint32) { c.slots[which][block] = sum })
		touched[c] = true
	})
	// A marked chunk may hold data written after its last entry reached
	// the journal (never synced, so never acknowledged as durable): a
	// written block matching neither slot takes the checksum of what it
	// holds.
	buf := alignedBuf(int(s.sb.ChunkSize))
	for c := range marked {
		if _, err := s.dev.ReadAt(buf, s.sb.chunkOffset(c.hdr.Slot)); err != nil {
			return fmt.Errorf("replay journal: read chunk %d: %w", c.hdr.Slot, err)
		}
		for i := range s.sb.blocksPerChunk() {
			if !bit(c.hdr.Written, i) {
				continue
			}
			if sum := crc(buf[i*BlockSize : (i+1)*BlockSize]); sum != c.slots[0][i] && sum != c.slots[1][i] {
				c.slots[0][i], c.slots[1][i] = sum, sum
				touched[c] = true
			}
		}
	}
	// A record may name a block that was never written, or entries of
	// the open block beyond its last written copy: the next block must be
	// newer than that too, or its entries would be taken as included in
	// the record.
	s.j = newJournal(s.dev, s.sb, max(last, s.maxJSeq))
	for c := range touched {
		if err := s.writeRecord(c.hdr, c); err != nil {
			return fmt.Errorf("replay journal: %w", err)
		}
	}
	if len(touched) > 0 {
		if err := s.dev.Sync(); err != nil {
			return fmt.Errorf("replay journal: %w", err)
		}
	}
	return nil
}

func (s *Store) slotUsed(slot uint64) bool {
	// Only called while building the free list: a linear scan is fine
	// for the sizes Open sees once; keep a set instead if that changes.
	if s.usedSlots == nil {
		s.usedSlots = map[uint64]bool{}
		for _, c := range s.byKey {
			s.usedSlots[c.hdr.Slot] = true
		}
	}
	return s.usedSlots[slot]
}

// Superblock returns the store's superblock.
func (s *Store) Superblock() Superblock { return s.sb }

// ChunkSize is the extent size in bytes.
func (s *Store) ChunkSize() int64 { return int64(s.sb.ChunkSize) }

// Stats counts chunks.
type Stats struct {
	Chunks, Used uint64
}

// Stats returns the chunk counts.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Chunks: s.sb.ChunkCount, Used: uint64(len(s.byKey))}
}

// Close closes the device. Unsynced writes may be lost; call Sync first.
//
// Close first writes the records of chunks whose checksums are in the
// journal only, so that the next Open need not scan them.
func (s *Store) Close() error {
	err := s.checkpoint(true, false)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return errors.Join(err, s.dev.Close())
}

// Sync makes every completed write durable. Concurrent callers share
// device syncs (group commit): each waits for one that started after it
// was called.
func (s *Store) Sync() error {
	s.syncSoon.Store(s.jwrites.Swap(0) <= syncSoonWrites)
	if err := s.j.flushAll(); err != nil {
		// A journal block was not written: write the record of every
		// chunk with journaled checksums instead.
		if err := s.checkpoint(true, false); err != nil {
			return fmt.Errorf("sync chunk store: %w", err)
		}
		return nil
	}
	return s.syncDevice()
}

// syncSoonWrites: after a Sync that came at most this many journaled
// writes after the one before, the next this many journaled writes each
// write the open block along with their data (a client that flushes
// after every write or few, or writes with FUA); past them, writes go
// alone again until a Sync comes that soon again. So a client that
// flushes rarely (or never) pays no extra device write.
const syncSoonWrites = 4

// syncDevice is the group commit of device syncs.
func (s *Store) syncDevice() error {
	g := &s.group
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	if s.dev.writes.Load() == g.clean && !g.running {
		return nil // no device write since a sync that succeeded started
	}
	need := g.started + 1
	for g.done < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		seq := g.started
		writes := s.dev.writes.Load()
		g.mu.Unlock()
		err := s.dev.Sync()
		g.mu.Lock()
		g.running = false
		g.done = seq
		if err != nil {
			g.err, g.errSeq = err, seq
		} else {
			g.clean = writes
		}
		g.cond.Broadcast()
	}
	if g.err != nil && g.errSeq >= need {
		return fmt.Errorf("sync chunk store: %w", g.err)
	}
	return nil
}

// syncGroup coordinates Sync callers.
type syncGroup struct {
	mu            sync.Mutex
	cond          *sync.Cond
	started, done uint64 // device syncs started and completed
	running       bool
	err           error  // last failure
	errSeq        uint64 // the sync that failed
	// clean is the device write count when the last successful sync
	// started (at Open: unknown, ^0).
	clean uint64
}

// countedDevice counts completed (or failed) writes, so Sync can skip a
// device with nothing written since its last sync.
type countedDevice struct {
	Device
	writes atomic.Uint64
	// pair is Device as a pairWriter, when it is one.
	pair pairWriter
}

// WriteAtBoth writes two buffers through pair (which must be set) and
// counts both.
func (d *countedDevice) WriteAtBoth(p []byte, pOff int64, q []byte, qOff int64) (pErr, qErr error) {
	pErr, qErr = d.pair.WriteAtBoth(p, pOff, q, qOff)
	d.writes.Add(2)
	return pErr, qErr
}

func (d *countedDevice) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.Device.WriteAt(p, off)
	d.writes.Add(1)
	return n, err
}

// lookup returns the live chunk for key with its lock held (write lock
// when excl), or nil.
func (s *Store) lookup(key ChunkKey, excl bool) (*chunk, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		c := s.byKey[key]
		s.mu.Unlock()
		if c == nil {
			return nil, nil
		}
		if excl {
			c.mu.Lock()
		} else {
			c.mu.RLock()
		}
		if !c.freed {
			return c, nil
		}
		if excl {
			c.mu.Unlock()
		} else {
			c.mu.RUnlock()
		}
	}
}

// allocate returns the chunk for key, creating it (unpersisted, its
// header is written with the first data) when absent; the lock is held.
func (s *Store) allocate(key ChunkKey, epoch uint64) (*chunk, error) {
	if c, err := s.lookup(key, true); c != nil || err != nil {
		return c, err
	}
	s.mu.Lock()
	if c := s.byKey[key]; c != nil {
		s.mu.Unlock()
		return s.allocate(key, epoch)
	}
	if f := s.fences[key.VSD]; epoch < f {
		s.mu.Unlock()
		return nil, fmt.Errorf("allocate extent %d of VSD %s at epoch %d, VSD is fenced at %d: %w", key.Extent, key.VSD, epoch, f, ErrStaleEpoch)
	}
	if len(s.free) == 0 {
		s.mu.Unlock()
		return nil, fmt.Errorf("allocate chunk for extent %d of VSD %s: %w", key.Extent, key.VSD, ErrFull)
	}
	slot := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	blocks := s.sb.blocksPerChunk()
	c := &chunk{
		hdr:   header{Used: true, Slot: slot, VSD: key.VSD, Extent: key.Extent, Epoch: epoch, Written: make([]byte, blocks/8)},
		slots: [2][]uint32{make([]uint32, blocks), make([]uint32, blocks)},
		cur:   make([]uint8, blocks),
	}
	c.mu.Lock()
	s.byKey[key] = c
	s.mu.Unlock()
	return c, nil
}

// release frees c's slot; c's write lock is held.
func (s *Store) release(key ChunkKey, c *chunk) error {
	h := c.hdr
	h.Used = false
	h.Generation++
	h.Written = make([]byte, len(h.Written))
	if err := s.writeRecord(h, c); err != nil {
		return err
	}
	c.freed = true
	s.mu.Lock()
	delete(s.byKey, key)
	s.free = append(s.free, c.hdr.Slot)
	s.mu.Unlock()
	return nil
}

// writeRecord writes c's whole record, with header h and the checksum
// slots held in memory, as one aligned write. c's write lock is held.
func (s *Store) writeRecord(h header, c *chunk) error {
	blocks := s.sb.blocksPerChunk()
	bp, _ := s.recordBufs.Get().(*[]byte)
	if bp == nil {
		b := alignedBuf(int(s.sb.recordSize()))
		bp = &b
	}
	defer s.recordBufs.Put(bp)
	b := *bp
	// Every entry of c made so far is before this position: the record
	// includes them, whether or not they reached the disk.
	pos := s.j.position()
	h.JSeq, h.JIdx = pos.Seq, uint32(pos.N)
	copy(b, h.encode(s.sb.Nonce, blocks))
	for k := range 2 {
		for i, v := range c.slots[k] {
			binary.LittleEndian.PutUint32(b[headerSize+4*(k*blocks+i):], v)
		}
	}
	if _, err := s.dev.WriteAt(b, s.sb.recordOffset(h.Slot)); err != nil {
		return fmt.Errorf("write chunk record %d: %w", h.Slot, err)
	}
	c.dirty, c.marked, c.markPos = false, false, jpos{}
	return nil
}

// markDirty notes that c's checksums are about to go to the journal
// only; c's write lock is held.
func (s *Store) markDirty(c *chunk) {
	if c.dirty {
		return
	}
	c.dirty = true
	s.dirtyMu.Lock()
	s.dirty[c] = struct{}{}
	s.dirtyMu.Unlock()
}

// maxDirtyChunks bounds the chunks with checksums in the journal only
// (each marked one is read whole by Open after a crash): more trigger a
// checkpoint.
const maxDirtyChunks = 1024

// checkpoint writes the record of every dirty chunk and syncs, so the
// journal blocks before it can be reused. It runs when 3/4 of the ring is
// in use or more than maxDirtyChunks are dirty (or always with force), in
// a goroutine that holds no chunk lock; only one runs at a time. With
// remark it marks the chunks it wrote again (see checkpointTo); without,
// it also writes the records of marked chunks, so none stays marked.
func (s *Store) checkpoint(force, remark bool) error {
	s.dirtyMu.Lock()
	many := len(s.dirty) > maxDirtyChunks
	s.dirtyMu.Unlock()
	target, ok := s.j.claimCheckpoint(force, many)
	if !ok {
		return nil
	}
	err := s.checkpointTo(remark)
	s.j.endCheckpoint(target, err == nil)
	return err
}

// maxRemarked bounds the chunks a checkpoint marks again.
const maxRemarked = maxDirtyChunks / 2

// checkpointTo writes the records. With remark, a chunk written since its
// last record gets a new mark entry right after its record (so its next
// overwrite need not write and wait for one) and stays on the dirty list;
// a chunk still marked by the previous checkpoint but not written since
// just drops its mark in memory (its record is current; the mark entry
// goes with the ring).
func (s *Store) checkpointTo(remark bool) error {
	s.dirtyMu.Lock()
	list := s.dirty
	s.dirty = map[*chunk]struct{}{}
	s.dirtyMu.Unlock()
	var marks jpos
	remarked := 0
	for c := range list {
		c.mu.Lock()
		var err error
		switch {
		case c.freed:
		case c.dirty || !remark && c.marked:
			err = s.writeRecord(c.hdr, c)
			if err == nil && remark && remarked < maxRemarked {
				if pos, ok := s.j.add([]jentry{{Slot: uint32(c.hdr.Slot), Which: jmark}}); ok {
					c.marked, c.markPos, marks = true, pos, pos
					remarked++
					s.dirtyMu.Lock()
					s.dirty[c] = struct{}{}
					s.dirtyMu.Unlock()
				}
			}
		default:
			c.marked, c.markPos = false, jpos{}
		}
		c.mu.Unlock()
		if err != nil {
			s.dirtyMu.Lock()
			for c := range list {
				s.dirty[c] = struct{}{}
			}
			s.dirtyMu.Unlock()
			return fmt.Errorf("checkpoint journal: %w", err)
		}
	}
	if marks != (jpos{}) {
		// Write the new marks now, in one block write; a chunk whose mark
		// failed finds out on its next overwrite (see writeJournaled).
		s.j.wait(marks)
	}
	return s.syncDevice()
}

func (s *Store) checkRange(off int64, n int) error {
	if off < 0 || n < 0 || off+int64(n) > int64(s.sb.ChunkSize) {
		return fmt.Errorf("[%d,+%d) of a %d-byte chunk: %w", off, n, s.sb.ChunkSize, ErrRange)
	}
	return nil
}

// ChunkInfo describes a used chunk.
type ChunkInfo struct {
	Key        ChunkKey
	Slot       uint64
	Epoch      uint64
	Generation uint64
	// Written has one bit per block (bit i%8 of byte i/8).
	Written []byte
	// Stamp is the replicated layer's version of the extent.
	Stamp Stamp
}

// Info returns the chunk holding key, if any.
func (s *Store) Info(key ChunkKey) (ChunkInfo, bool) {
	c, err := s.lookup(key, false)
	if c == nil || err != nil {
		return ChunkInfo{}, false
	}
	defer c.mu.RUnlock()
	return c.info(key), true
}

func (c *chunk) info(key ChunkKey) ChunkInfo {
	return ChunkInfo{Key: key, Slot: c.hdr.Slot, Epoch: c.hdr.Epoch, Generation: c.hdr.Generation, Written: bytes.Clone(c.hdr.Written), Stamp: c.hdr.Stamp}
}

// Chunks lists the chunks of one VSD in extent order.
func (s *Store) Chunks(vsd ID) []ChunkInfo {
	s.mu.Lock()
	var keys []ChunkKey
	for k := range s.byKey {
		if k.VSD == vsd {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i].Extent < keys[j].Extent })
	var out []ChunkInfo
	for _, k := range keys {
		if info, ok := s.Info(k); ok {
			out = append(out, info)
		}
	}
	return out
}

// Read fills p from offset off of the chunk for key. Absent chunks and
// unwritten blocks read as zero; a block failing its checksum fails the
// read with ErrChecksum.
func (s *Store) Read(ctx context.Context, key ChunkKey, off int64, p []byte) error {
	if err := s.checkRange(off, len(p)); err != nil {
		return fmt.Errorf("read chunk: %w", err)
	}
	c, err := s.lookup(key, false)
	if err != nil {
		return err
	}
	if c == nil {
		clear(p)
		return nil
	}
	defer c.mu.RUnlock()
	return s.readLocked(c, off, p)
}

func (s *Store) readLocked(c *chunk, off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	b0, b1 := int(off/BlockSize), int((off+int64(len(p))-1)/BlockSize)
	aligned := off%BlockSize == 0 && len(p)%BlockSize == 0
	buf := p
	if !aligned {
		buf = make([]byte, (b1-b0+1)*BlockSize)
	}
	// Read runs of written blocks with one pread each.
	for i := b0; i <= b1; {
		j := i
		w := bit(c.hdr.Written, i)
		for j+1 <= b1 && bit(c.hdr.Written, j+1) == w {
			j++
		}
		seg := buf[(i-b0)*BlockSize : (j-b0+1)*BlockSize]
		if !w {
			clear(seg)
		} else {
			if _, err := s.dev.ReadAt(seg, s.sb.chunkOffset(c.hdr.Slot)+int64(i)*BlockSize); err != nil {
				return fmt.Errorf("read chunk %d blocks %d-%d: %w", c.hdr.Slot, i, j, err)
			}
			for k := i; k <= j; k++ {
				sum := crc(seg[(k-i)*BlockSize : (k-i+1)*BlockSize])
				if sum != c.slots[0][k] && sum != c.slots[1][k] {
					return fmt.Errorf("chunk %d (extent %d of VSD %s) block %d: %w", c.hdr.Slot, c.hdr.Extent, c.hdr.VSD, k, ErrChecksum)
				}
			}
		}
		i = j + 1
	}
	if !aligned {
		copy(p, buf[off-int64(b0)*BlockSize:])
	}
	return nil
}

// Write stores p at offset off of the chunk for key, allocating the chunk
// on first write. With fua it is durable on return. A write with an epoch
// older than the chunk's fails with ErrStaleEpoch.
func (s *Store) Write(ctx context.Context, key ChunkKey, epoch uint64, off int64, p []byte, fua bool) error {
	return s.WriteStamped(ctx, key, epoch, Stamp{}, off, p, fua)
}

// WriteStamped is Write that also records st as the chunk's stamp when it
// is newer (see Stamp).
func (s *Store) WriteStamped(ctx context.Context, key ChunkKey, epoch uint64, st Stamp, off int64, p []byte, fua bool) error {
	return s.write(key, epoch, st, off, p, nil, fua)
}

// WriteSums is WriteStamped with the checksums of p's blocks given:
// sums[i] is the CRC-32C (BlockSums) of p's block i, off and len(p) are
// multiples of BlockSize and len(sums) is len(p)/BlockSize, else the
// write fails with ErrRange and changes nothing. The store keeps sums as
// they are, without computing them again: the caller vouches that they
// were computed over exactly p. A wrong one can only make its block fail
// reads with ErrChecksum (as a rotten block would), never make wrong
// data read as good.
func (s *Store) WriteSums(ctx context.Context, key ChunkKey, epoch uint64, st Stamp, off int64, p []byte, sums []uint32, fua bool) error {
	if off%BlockSize != 0 || len(p)%BlockSize != 0 || len(sums) != len(p)/BlockSize {
		return fmt.Errorf("write chunk [%d,+%d) with %d checksums: %w", off, len(p), len(sums), ErrRange)
	}
	return s.write(key, epoch, st, off, p, sums, fua)
}

// BlockSums appends to dst the CRC-32C of every BlockSize block of p
// (len(p) a multiple of BlockSize), the checksums WriteSums takes.
func BlockSums(dst []uint32, p []byte) []uint32 {
	for ; len(p) >= BlockSize; p = p[BlockSize:] {
		dst = append(dst, crc(p[:BlockSize]))
	}
	return dst
}

// write is WriteStamped and WriteSums: sums, when not nil, are the
// checksums of p's blocks (p block-aligned).
func (s *Store) write(key ChunkKey, epoch uint64, st Stamp, off int64, p []byte, sums []uint32, fua bool) error {
	if err := s.checkRange(off, len(p)); err != nil {
		return fmt.Errorf("write chunk: %w", err)
	}
	if len(p) == 0 {
		return nil
	}
	c, err := s.allocate(key, epoch)
	if err != nil {
		return err
	}
	err = s.writeLocked(c, key, epoch, st, off, p, sums, fua)
	if c.hdr.Generation == 0 && bytes.Equal(c.hdr.Written, make([]byte, len(c.hdr.Written))) {
		// A new chunk whose first write failed: give the slot back.
		c.freed = true
		s.mu.Lock()
		delete(s.byKey, key)
		s.free = append(s.free, c.hdr.Slot)
		s.mu.Unlock()
	}
	c.mu.Unlock()
	if err == nil && fua {
		err = s.Sync()
	}
	if err == nil {
		err = s.checkpoint(false, true)
	}
	return err
}

func (s *Store) writeLocked(c *chunk, key ChunkKey, epoch uint64, st Stamp, off int64, p []byte, sums []uint32, fua bool) error {
	if epoch < c.hdr.Epoch {
		return fmt.Errorf("write extent %d of VSD %s at epoch %d, chunk is at %d: %w", key.Extent, key.VSD, epoch, c.hdr.Epoch, ErrStaleEpoch)
	}
	b0, b1 := int(off/BlockSize), int((off+int64(len(p))-1)/BlockSize)
	data := p
	if off%BlockSize != 0 || len(p)%BlockSize != 0 {
		data = make([]byte, (b1-b0+1)*BlockSize)
		// Read-modify-write the partial first and last blocks.
		for _, b := range []int{b0, b1} {
			if err := s.readLocked(c, int64(b)*BlockSize, data[(b-b0)*BlockSize:(b-b0+1)*BlockSize]); err != nil {
				return fmt.Errorf("read-modify-write: %w", err)
			}
		}
		copy(data[off-int64(b0)*BlockSize:], p)
	}
	chunkOff := s.sb.chunkOffset(c.hdr.Slot)
	next := make([]uint8, b1-b0+1)
	for i := b0; i <= b1; i++ {
		var sum uint32
		if sums != nil {
			sum = sums[i-b0] // data is p (aligned): see WriteSums
		} else {
			sum = crc(data[(i-b0)*BlockSize : (i-b0+1)*BlockSize])
		}
		if !bit(c.hdr.Written, i) {
			next[i-b0] = 0
			c.slots[0][i], c.slots[1][i] = sum, sum
			continue
		}
		cur := c.cur[i]
		if cur == curUnknown && c.slots[0][i] == c.slots[1][i] {
			cur = 0 // both describe the data: no need to read it
		}
		if cur == curUnknown {
			cur = 0
			old := make([]byte, BlockSize)
			if _, err := s.dev.ReadAt(old, chunkOff+int64(i)*BlockSize); err == nil && crc(old) == c.slots[1][i] {
				cur = 1
			}
		}
		next[i-b0] = 1 - cur
		c.slots[1-cur][i] = sum
	}
	if entries := s.journalEntries(c, epoch, st, b0, b1, next); entries != nil {
		return s.writeJournaled(c, entries, data, chunkOff, b0, b1, next, fua)
	}
	// Checksums first (with the header as persisted), then data, then
	// the header: see doc.go.
	persisted := c.hdr
	if persisted.Generation == 0 {
		persisted.Used = false // a new chunk exists only once its data does
	}
	if err := s.writeData(c, s.writeRecord(persisted, c), data, chunkOff, b0, b1, next); err != nil {
		return err
	}
	h := c.hdr
	h.Written = bytes.Clone(h.Written)
	dirty := epoch > h.Epoch || h.Generation == 0
	if next, newer := mergeStamp(h.Stamp, st); newer {
		h.Stamp, dirty = next, true
	}
	for i := b0; i <= b1; i++ {
		if !bit(h.Written, i) {
			setBit(h.Written, i)
			dirty = true
		}
	}
	if !dirty {
		return nil
	}
	h.Epoch = max(h.Epoch, epoch)
	h.Generation++
	if err := s.writeRecord(h, c); err != nil {
		return err
	}
	c.hdr = h
	return nil
}

// journalEntries returns the journal entries of a write of blocks
// b0..b1 whose new checksums are in c.slots[next[i-b0]], or nil when the
// write cannot go through the journal: it changes the chunk header (new
// chunk, other epoch or stamp, a block written for the first time) or its
// entries (a mark when c has none, one entry per block, or a run entry
// per stretch of blocks taking the same slot) do not fit one block.
func (s *Store) journalEntries(c *chunk, epoch uint64, st Stamp, b0, b1 int, next []uint8) []jentry {
	if c.hdr.Generation == 0 || epoch != c.hdr.Epoch {
		return nil
	}
	if _, newer := mergeStamp(c.hdr.Stamp, st); newer {
		return nil
	}
	for i := b0; i <= b1; i++ {
		if !bit(c.hdr.Written, i) {
			return nil
		}
	}
	entries := make([]jentry, 0, 4)
	units := 0
	if !c.marked {
		entries = append(entries, jentry{Slot: uint32(c.hdr.Slot), Which: jmark})
		units++
	}
	for i := b0; i <= b1; {
		w := next[i-b0]
		k := i
		for k+1 <= b1 && next[k+1-b0] == w {
			k++
		}
		if k-i+1 >= jrunMin {
			e := jentry{Slot: uint32(c.hdr.Slot), Block: uint16(i), Which: jrunA + w, Sums: cloneSums(c.slots[w][i : k+1])}
			entries = append(entries, e)
			units += e.units()
		} else {
			for b := i; b <= k; b++ {
				entries = append(entries, jentry{Slot: uint32(c.hdr.Slot), Block: uint16(b), Which: w, Sum: c.slots[w][b]})
				units++
			}
		}
		if units > journalMaxEntries {
			return nil
		}
		i = k + 1
	}
	return entries
}

// cloneSums copies checksums out of a chunk's slots (which later writes
// change while the entry waits in the open block).
func cloneSums(sums []uint32) []uint32 { return append([]uint32(nil), sums...) }

// writeJournaled adds the entries of a write (its new checksums, already
// in c.slots in the slots next names) to the journal's open block and
// writes the data. The first such write after c's record was written
// adds a mark entry and waits until it is written: from then on data may
// reach the disk before its checksum entries (Sync writes them). A mark
// added by a checkpoint is waited for the same way. When the ring has no
// room it writes the record instead.
//
// When a Sync is likely soon (fua, or syncSoon) and c's mark is on disk,
// the open block (with these entries) is written in the same submission
// as the data, on a device that can (pairWriter): the Sync that follows
// then finds it written and only syncs the device, one device write
// fewer in its wait. Safe in either order: the entries only set the
// slots that do not describe the blocks' current data, and a marked
// chunk's data may land before its entries.
func (s *Store) writeJournaled(c *chunk, entries []jentry, data []byte, chunkOff int64, b0, b1 int, next []uint8, fua bool) error {
	s.markDirty(c)
	n := s.jwrites.Add(1)
	var err error
	pos, ok := s.j.add(entries)
	if !ok {
		err = s.writeRecord(c.hdr, c)
	} else if !c.marked {
		c.marked, c.markPos = true, pos
	}
	if err == nil && c.markPos != (jpos{}) {
		if err = s.j.wait(c.markPos); err != nil {
			c.marked = false // mark again next time
		}
		c.markPos = jpos{}
	} else if err == nil && ok && s.dev.pair != nil && (fua || n <= syncSoonWrites && s.syncSoon.Load()) {
		if b, off, units, claimed := s.j.claimOpen(); claimed {
			dErr, jErr := s.dev.WriteAtBoth(data, chunkOff+int64(b0)*BlockSize, b, off)
			s.j.wroteOpen(units, jErr) // a failure leaves the entries to Sync
			return s.wroteData(c, dErr, b0, b1, next)
		}
	}
	return s.writeData(c, err, data, chunkOff, b0, b1, next)
}

// writeData writes blocks b0..b1 once their checksums are in place
// (ckErr says whether that failed) and notes the slot now describing each.
func (s *Store) writeData(c *chunk, ckErr error, data []byte, chunkOff int64, b0, b1 int, next []uint8) error {
	if ckErr != nil {
		c.forget(b0, b1)
		return fmt.Errorf("write checksums: %w", ckErr)
	}
	_, err := s.dev.WriteAt(data, chunkOff+int64(b0)*BlockSize)
	return s.wroteData(c, err, b0, b1, next)
}

// wroteData notes the outcome of the data write of blocks b0..b1: the
// slot now describing each, or unknown after a failure.
func (s *Store) wroteData(c *chunk, err error, b0, b1 int, next []uint8) error {
	if err != nil {
		c.forget(b0, b1)
		return fmt.Errorf("write chunk %d blocks %d-%d: %w", c.hdr.Slot, b0, b1, err)
	}
	for i := b0; i <= b1; i++ {
		c.cur[i] = next[i-b0]
	}
	return nil
}

// forget marks blocks' current slot unknown after a failed write, since
// either slot may now describe the data on disk.
func (c *chunk) forget(b0, b1 int) {
	for i := b0; i <= b1; i++ {
		c.cur[i] = curUnknown
	}
}

// Zero makes [off, off+n) of the chunk for key read as zero: whole blocks
// are unmapped, partial blocks are written with zeroes, and a chunk left
// with no written block is freed. With fua it is durable on return.
func (s *Store) Zero(ctx context.Context, key ChunkKey, epoch uint64, off, n int64, fua bool) error {
	return s.ZeroStamped(ctx, key, epoch, Stamp{}, off, n, fua)
}

// ZeroStamped is Zero that also records st as the chunk's stamp when it is
// newer and the chunk survives.
func (s *Store) ZeroStamped(ctx context.Context, key ChunkKey, epoch uint64, st Stamp, off, n int64, fua bool) error {
	if err := s.checkRange(off, int(n)); err != nil {
		return fmt.Errorf("zero chunk: %w", err)
	}
	c, err := s.lookup(key, true)
	if err != nil || c == nil {
		return err
	}
	err = s.zeroLocked(c, key, epoch, st, off, n)
	c.mu.Unlock()
	if err == nil && fua {
		err = s.Sync()
	}
	if err == nil {
		err = s.checkpoint(false, true)
	}
	return err
}

func (s *Store) zeroLocked(c *chunk, key ChunkKey, epoch uint64, st Stamp, off, n int64) error {
	if epoch < c.hdr.Epoch {
		return fmt.Errorf("zero extent %d of VSD %s at epoch %d, chunk is at %d: %w", key.Extent, key.VSD, epoch, c.hdr.Epoch, ErrStaleEpoch)
	}
	end := off + n
	first, last := roundUp(off, BlockSize), end/BlockSize*BlockSize
	if first > last { // inside one block
		return s.zeroPartial(c, key, epoch, st, off, end)
	}
	if err := s.zeroPartial(c, key, epoch, st, off, first); err != nil {
		return err
	}
	if err := s.zeroPartial(c, key, epoch, st, last, end); err != nil {
		return err
	}
	if first == last {
		return nil
	}
	h := c.hdr
	h.Written = bytes.Clone(h.Written)
	for i := int(first / BlockSize); i < int(last/BlockSize); i++ {
		clearBit(h.Written, i)
	}
	if bytes.Equal(h.Written, make([]byte, len(h.Written))) {
		return s.release(key, c)
	}
	h.Epoch = max(h.Epoch, epoch)
	h.Stamp, _ = mergeStamp(h.Stamp, st)
	h.Generation++
	if err := s.writeRecord(h, c); err != nil {
		return err
	}
	c.hdr = h
	return nil
}

// zeroPartial writes zeroes into [from, to) within one block, if written.
func (s *Store) zeroPartial(c *chunk, key ChunkKey, epoch uint64, st Stamp, from, to int64) error {
	if from >= to || !bit(c.hdr.Written, int(from/BlockSize)) {
		return nil
	}
	return s.writeLocked(c, key, epoch, st, from, make([]byte, to-from), nil, false)
}

// Free releases the chunk for key (all its blocks read as zero after).
func (s *Store) Free(ctx context.Context, key ChunkKey, epoch uint64) error {
	c, err := s.lookup(key, true)
	if err != nil || c == nil {
		return err
	}
	defer c.mu.Unlock()
	if epoch < c.hdr.Epoch {
		return fmt.Errorf("free extent %d of VSD %s at epoch %d, chunk is at %d: %w", key.Extent, key.VSD, epoch, c.hdr.Epoch, ErrStaleEpoch)
	}
	return s.release(key, c)
}

// mergeStamp returns the stamp a chunk holding cur keeps after a request
// carrying st, and whether it changed: a higher generation wins, and a
// chunk without members takes those of an equal generation.
func mergeStamp(cur, st Stamp) (Stamp, bool) {
	if st.Gen > cur.Gen || (st.Gen == cur.Gen && cur.Members == [MaxMembers]ID{} && st.Members != [MaxMembers]ID{}) {
		return st, true
	}
	return cur, false
}

// SetStamp records st on the chunk for key when it is newer than the
// chunk's stamp (see Stamp); an absent chunk is left absent. With fua it is
// durable on return. An epoch older than the chunk's is refused with
// ErrStaleEpoch.
func (s *Store) SetStamp(ctx context.Context, key ChunkKey, epoch uint64, st Stamp, fua bool) error {
	c, err := s.lookup(key, true)
	if err != nil || c == nil {
		return err
	}
	err = func() error {
		defer c.mu.Unlock()
		if epoch < c.hdr.Epoch {
			return fmt.Errorf("stamp extent %d of VSD %s at epoch %d, chunk is at %d: %w", key.Extent, key.VSD, epoch, c.hdr.Epoch, ErrStaleEpoch)
		}
		next, newer := mergeStamp(c.hdr.Stamp, st)
		if !newer && epoch == c.hdr.Epoch {
			return nil
		}
		h := c.hdr
		h.Stamp, h.Epoch = next, epoch
		h.Generation++
		if err := s.writeRecord(h, c); err != nil {
			return err
		}
		c.hdr = h
		return nil
	}()
	if err == nil && fua {
		err = s.Sync()
	}
	return err
}

// Fence raises every chunk of vsd to epoch (rewriting their headers) and
// refuses, until the store is closed, to allocate a chunk of vsd for an
// older epoch: afterwards any request from an owner with an older epoch
// fails with ErrStaleEpoch. It fails with ErrStaleEpoch, changing nothing
// more, if a chunk or an earlier fence is newer than epoch. The chunk
// headers are synced before it returns; the allocation fence lives in
// memory only.
func (s *Store) Fence(ctx context.Context, vsd ID, epoch uint64) error {
	s.mu.Lock()
	if f := s.fences[vsd]; f > epoch {
		s.mu.Unlock()
		return fmt.Errorf("fence VSD %s at epoch %d, already fenced at %d: %w", vsd, epoch, f, ErrStaleEpoch)
	}
	s.fences[vsd] = epoch
	var keys []ChunkKey
	for k := range s.byKey {
		if k.VSD == vsd {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := s.lookup(k, true)
		if err != nil {
			return err
		}
		if c == nil {
			continue
		}
		err = func() error {
			defer c.mu.Unlock()
			switch {
			case c.hdr.Epoch > epoch:
				return fmt.Errorf("fence VSD %s at epoch %d, extent %d is at %d: %w", vsd, epoch, k.Extent, c.hdr.Epoch, ErrStaleEpoch)
			case c.hdr.Epoch == epoch:
				return nil
			}
			h := c.hdr
			h.Epoch = epoch
			h.Generation++
			if err := s.writeRecord(h, c); err != nil {
				return err
			}
			c.hdr = h
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return s.Sync()
}
