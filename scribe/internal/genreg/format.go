package genreg

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// Entry is the newest generation of one extent and the member disks that
// hold it (zero IDs unused).
type Entry struct {
	Extent  uint64
	Gen     uint64
	Members [chunkstore.MaxMembers]chunkstore.ID
}

// On-disk and wire sizes.
const (
	// EntrySize is the encoded size of an Entry.
	EntrySize = 16 + 16*chunkstore.MaxMembers

	fileMagic   = "SHOALREG"
	fileVersion = 1
	fileHeader  = 16
	recHeader   = 16
	// maxRecordEntries bounds one record (and one Put): 8 MiB of entries.
	maxRecordEntries = (8 << 20) / EntrySize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendEntry appends e's encoding.
func AppendEntry(b []byte, e Entry) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, e.Extent)
	b = le.AppendUint64(b, e.Gen)
	for _, m := range e.Members {
		b = append(b, m[:]...)
	}
	return b
}

// DecodeEntries parses a sequence of encoded entries; it never panics.
func DecodeEntries(b []byte) ([]Entry, error) {
	if len(b)%EntrySize != 0 {
		return nil, fmt.Errorf("%d bytes of register entries: %w", len(b), ErrCorrupt)
	}
	out := make([]Entry, 0, len(b)/EntrySize)
	le := binary.LittleEndian
	for ; len(b) > 0; b = b[EntrySize:] {
		e := Entry{Extent: le.Uint64(b), Gen: le.Uint64(b[8:])}
		for i := range e.Members {
			copy(e.Members[i][:], b[16+16*i:])
		}
		out = append(out, e)
	}
	return out, nil
}

func encodeFileHeader() []byte {
	b := make([]byte, fileHeader)
	copy(b, fileMagic)
	binary.LittleEndian.PutUint32(b[8:], fileVersion)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
	return b
}

func encodeRecord(epoch uint64, es []Entry) []byte {
	b := make([]byte, recHeader, recHeader+EntrySize*len(es))
	binary.LittleEndian.PutUint32(b, uint32(len(es)))
	binary.LittleEndian.PutUint64(b[8:], epoch)
	for _, e := range es {
		b = AppendEntry(b, e)
	}
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

// state is a register's content.
type state struct {
	epoch   uint64
	entries map[uint64]Entry
}

// merge applies one record.
func (s *state) merge(epoch uint64, es []Entry) {
	s.epoch = max(s.epoch, epoch)
	for _, e := range es {
		if cur, ok := s.entries[e.Extent]; !ok || e.Gen > cur.Gen {
			s.entries[e.Extent] = e
		}
	}
}

// replay decodes a register file: the state and the length of its valid
// prefix (a torn or corrupt tail is not part of it). It never panics.
func replay(b []byte) (state, int64, error) {
	st := state{entries: map[uint64]Entry{}}
	if len(b) < fileHeader {
		return st, 0, fmt.Errorf("file of %d bytes: %w", len(b), ErrCorrupt)
	}
	le := binary.LittleEndian
	if string(b[:8]) != fileMagic || le.Uint32(b[12:]) != crc32.Checksum(b[:12], castagnoli) {
		return st, 0, fmt.Errorf("header: %w", ErrCorrupt)
	}
	if v := le.Uint32(b[8:]); v != fileVersion {
		return st, 0, fmt.Errorf("version %d: %w", v, ErrCorrupt)
	}
	off := int64(fileHeader)
	for rest := b[fileHeader:]; len(rest) >= recHeader; {
		n := int64(le.Uint32(rest))
		if n > maxRecordEntries || int64(len(rest)) < recHeader+n*EntrySize {
			break
		}
		size := recHeader + n*EntrySize
		if le.Uint32(rest[4:]) != crc32.Checksum(rest[8:size], castagnoli) {
			break
		}
		es, _ := DecodeEntries(rest[recHeader:size])
		st.merge(le.Uint64(rest[8:]), es)
		off += size
		rest = rest[size:]
	}
	return st, off, nil
}
