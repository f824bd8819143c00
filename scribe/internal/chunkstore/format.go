package chunkstore

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// On-disk constants.
const (
	// BlockSize is the checksum granularity.
	BlockSize = 4096
	// DefaultChunkSize is the extent size used unless FormatOptions says.
	DefaultChunkSize = 1 << 20
	// MaxChunkSize bounds FormatOptions.ChunkSize.
	MaxChunkSize = 8 << 20 // the written-block bitmap must fit the 512-byte header

	superMagic    = "SHOALDSK"
	formatVersion = 3
	superSize     = 4096
	metaOffset    = 2 * superSize
	headerSize    = 512
	recordMagic   = 0x4b4e4843 // "CHNK"
	stateUsed     = 1
	probeSize     = 64 << 10

	// stampOffset holds the replication stamp in a record header: the
	// generation (u64) then MaxMembers disk IDs. The written-block bitmap
	// (at most 256 bytes for 8 MiB chunks) ends before it.
	stampOffset = 384
	// jseqOffset holds, in a record header, the journal position up to
	// which the record includes its chunk's journal entries: the block
	// sequence (u64), then at jidxOffset the entry index in it (u32).
	jseqOffset = 440
	jidxOffset = 448
)

// MaxMembers is the most replicas a Stamp names.
const MaxMembers = 3

// Stamp is the replicated layer's version of one extent, kept in the
// chunk header: Gen grows whenever the set of up-to-date replicas shrinks,
// and Members names the disks that hold generation Gen (zero IDs unused).
// The store only persists it: a stamp with a higher Gen replaces the
// chunk's, a lower one is ignored.
type Stamp struct {
	Gen     uint64
	Members [MaxMembers]ID
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ID is a 128-bit identifier (disk, node, cluster, VSD).
type ID [16]byte

// NewID returns a random ID.
func NewID() ID {
	var id ID
	rand.Read(id[:])
	return id
}

func (id ID) String() string { return fmt.Sprintf("%x", id[:]) }

// Superblock describes a formatted disk.
type Superblock struct {
	Version    uint32
	ChunkSize  uint32
	DiskID     ID
	NodeID     ID
	ClusterID  ID
	DiskSize   uint64 // bytes the format covers
	ChunkCount uint64
	DataOffset uint64
	// Nonce is random per format; chunk records carry it.
	Nonce uint64
	// JournalOffset and JournalBlocks locate the checksum journal after
	// the record table: two 4 KiB slots for the open block, then a ring
	// of JournalBlocks 4 KiB blocks (see journal.go).
	JournalOffset uint64
	JournalBlocks uint64
}

func (sb Superblock) blocksPerChunk() int { return int(sb.ChunkSize / BlockSize) }

// recordSize is the size of one chunk record: header plus two checksum
// slots per block, rounded up to 4 KiB.
func (sb Superblock) recordSize() int64 {
	return roundUp(headerSize+8*int64(sb.blocksPerChunk()), BlockSize)
}

func (sb Superblock) recordOffset(slot uint64) int64 {
	return metaOffset + int64(slot)*sb.recordSize()
}

func (sb Superblock) chunkOffset(slot uint64) int64 {
	return int64(sb.DataOffset) + int64(slot)*int64(sb.ChunkSize)
}

// ringOffset is where journal block seq lives in the ring.
func (sb Superblock) ringOffset(seq uint64) int64 {
	return int64(sb.JournalOffset) + int64(journalOpenSlots+seq%sb.JournalBlocks)*BlockSize
}

// openSlotOffset is where open-block slot k (0 or 1) lives.
func (sb Superblock) openSlotOffset(k int) int64 {
	return int64(sb.JournalOffset) + int64(k)*BlockSize
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// journalBlocksFor is the journal size of a disk of size bytes: one
// 4 KiB block per 256 KiB, at least 16 and at most 4096 (16 MiB).
func journalBlocksFor(size int64) int64 { return min(max(size>>18, 16), 4096) }

// maxChunks keeps slot numbers within a journal entry's 32 bits.
const maxChunks = 1<<32 - 1

// layout computes chunk count, journal and data offset for a disk of size
// bytes.
func layout(size int64, chunkSize uint32) (Superblock, error) {
	sb := Superblock{Version: formatVersion, ChunkSize: chunkSize, DiskSize: uint64(size)}
	rs := sb.recordSize()
	jb := journalBlocksFor(size)
	area := (jb + journalOpenSlots) * BlockSize
	n := min((size-metaOffset-area)/(rs+int64(chunkSize)), maxChunks)
	for ; n > 0; n-- {
		journal := metaOffset + n*rs
		data := roundUp(journal+area, int64(chunkSize))
		if data+n*int64(chunkSize) <= size {
			sb.ChunkCount, sb.DataOffset = uint64(n), uint64(data)
			sb.JournalOffset, sb.JournalBlocks = uint64(journal), uint64(jb)
			return sb, nil
		}
	}
	return sb, fmt.Errorf("disk of %d bytes with %d-byte chunks: %w", size, chunkSize, ErrTooSmall)
}

func (sb Superblock) encode() []byte {
	b := make([]byte, superSize)
	copy(b, superMagic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], sb.Version)
	le.PutUint32(b[12:], BlockSize)
	le.PutUint32(b[16:], sb.ChunkSize)
	copy(b[24:], sb.DiskID[:])
	copy(b[40:], sb.NodeID[:])
	copy(b[56:], sb.ClusterID[:])
	le.PutUint64(b[72:], sb.DiskSize)
	le.PutUint64(b[80:], sb.ChunkCount)
	le.PutUint64(b[88:], metaOffset)
	le.PutUint64(b[96:], sb.DataOffset)
	le.PutUint64(b[104:], sb.Nonce)
	le.PutUint64(b[112:], sb.JournalOffset)
	le.PutUint64(b[120:], sb.JournalBlocks)
	le.PutUint32(b[superSize-4:], crc(b[:superSize-4]))
	return b
}

// decodeSuperblock parses and validates a superblock; it never panics.
func decodeSuperblock(b []byte) (Superblock, error) {
	if len(b) < superSize || string(b[:8]) != superMagic {
		return Superblock{}, ErrNotFormatted
	}
	le := binary.LittleEndian
	if got, want := crc(b[:superSize-4]), le.Uint32(b[superSize-4:]); got != want {
		return Superblock{}, fmt.Errorf("superblock checksum %08x, stored %08x: %w", got, want, ErrCorrupt)
	}
	sb := Superblock{
		Version:    le.Uint32(b[8:]),
		ChunkSize:  le.Uint32(b[16:]),
		DiskSize:   le.Uint64(b[72:]),
		ChunkCount: le.Uint64(b[80:]),
		DataOffset: le.Uint64(b[96:]),
		Nonce:      le.Uint64(b[104:]),

		JournalOffset: le.Uint64(b[112:]),
		JournalBlocks: le.Uint64(b[120:]),
	}
	copy(sb.DiskID[:], b[24:])
	copy(sb.NodeID[:], b[40:])
	copy(sb.ClusterID[:], b[56:])
	if sb.Version != formatVersion {
		return Superblock{}, fmt.Errorf("format version %d (this build reads %d): %w", sb.Version, formatVersion, ErrVersion)
	}
	if bs := le.Uint32(b[12:]); bs != BlockSize || le.Uint64(b[88:]) != metaOffset {
		return Superblock{}, fmt.Errorf("block size %d, table offset %d: %w", bs, le.Uint64(b[88:]), ErrCorrupt)
	}
	if sb.ChunkSize < BlockSize || sb.ChunkSize > MaxChunkSize || sb.ChunkSize%BlockSize != 0 || (sb.ChunkSize/BlockSize)%8 != 0 {
		return Superblock{}, fmt.Errorf("chunk size %d: %w", sb.ChunkSize, ErrCorrupt)
	}
	want, err := layout(int64(min(sb.DiskSize, 1<<62)), sb.ChunkSize)
	if err != nil || want.ChunkCount != sb.ChunkCount || want.DataOffset != sb.DataOffset || want.JournalOffset != sb.JournalOffset || want.JournalBlocks != sb.JournalBlocks {
		return Superblock{}, fmt.Errorf("layout (%d chunks at %d, journal of %d blocks at %d) does not match the disk size %d: %w", sb.ChunkCount, sb.DataOffset, sb.JournalBlocks, sb.JournalOffset, sb.DiskSize, ErrCorrupt)
	}
	return sb, nil
}

// header is the metadata part of a chunk record.
type header struct {
	Used       bool
	Slot       uint64
	VSD        ID
	Extent     uint64
	Epoch      uint64
	Generation uint64
	Written    []byte // one bit per block
	Stamp      Stamp
	// JSeq and JIdx: the record includes every journal entry of its
	// chunk in journal blocks before JSeq and the entries before index
	// JIdx of block JSeq; later ones are replayed.
	JSeq uint64
	JIdx uint32
}

func (h header) encode(nonce uint64, blocks int) []byte {
	b := make([]byte, headerSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], recordMagic)
	le.PutUint16(b[4:], formatVersion)
	if h.Used {
		le.PutUint16(b[6:], stateUsed)
	}
	le.PutUint64(b[8:], nonce)
	le.PutUint64(b[16:], h.Slot)
	copy(b[24:], h.VSD[:])
	le.PutUint64(b[40:], h.Extent)
	le.PutUint64(b[48:], h.Epoch)
	le.PutUint64(b[56:], h.Generation)
	copy(b[64:64+blocks/8], h.Written)
	le.PutUint64(b[stampOffset:], h.Stamp.Gen)
	for i, m := range h.Stamp.Members {
		copy(b[stampOffset+8+16*i:], m[:])
	}
	le.PutUint64(b[jseqOffset:], h.JSeq)
	le.PutUint32(b[jidxOffset:], h.JIdx)
	le.PutUint32(b[headerSize-4:], crc(b[:headerSize-4]))
	return b
}

// decodeHeader parses a record header. ok is false for a record that is
// not part of this format (free); err is set for one that claims to be
// but fails its checks.
func decodeHeader(b []byte, nonce uint64, slot uint64, blocks int) (h header, ok bool, err error) {
	le := binary.LittleEndian
	if len(b) < headerSize || 64+blocks/8 > stampOffset || le.Uint32(b[0:]) != recordMagic || le.Uint64(b[8:]) != nonce {
		return header{}, false, nil
	}
	if got, want := crc(b[:headerSize-4]), le.Uint32(b[headerSize-4:]); got != want {
		return header{}, false, fmt.Errorf("record %d header checksum %08x, stored %08x: %w", slot, got, want, ErrCorrupt)
	}
	if v := le.Uint16(b[4:]); v != formatVersion {
		return header{}, false, fmt.Errorf("record %d version %d: %w", slot, v, ErrCorrupt)
	}
	h = header{
		Used:       le.Uint16(b[6:]) == stateUsed,
		Slot:       le.Uint64(b[16:]),
		Extent:     le.Uint64(b[40:]),
		Epoch:      le.Uint64(b[48:]),
		Generation: le.Uint64(b[56:]),
		Written:    bytes.Clone(b[64 : 64+blocks/8]),
		JSeq:       le.Uint64(b[jseqOffset:]),
		JIdx:       le.Uint32(b[jidxOffset:]),
	}
	copy(h.VSD[:], b[24:])
	h.Stamp.Gen = le.Uint64(b[stampOffset:])
	for i := range h.Stamp.Members {
		copy(h.Stamp.Members[i][:], b[stampOffset+8+16*i:])
	}
	if h.JIdx > journalMaxEntries {
		return header{}, false, fmt.Errorf("record %d names journal entry %d: %w", slot, h.JIdx, ErrCorrupt)
	}
	if h.Slot != slot {
		return header{}, false, fmt.Errorf("record %d names slot %d: %w", slot, h.Slot, ErrCorrupt)
	}
	return h, h.Used, nil
}

func bit(b []byte, i int) bool { return b[i/8]&(1<<(i%8)) != 0 }
func setBit(b []byte, i int)   { b[i/8] |= 1 << (i % 8) }
func clearBit(b []byte, i int) { b[i/8] &^= 1 << (i % 8) }
