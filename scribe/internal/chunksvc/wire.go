package chunksvc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// Wire bounds.
const (
	// MaxData bounds the data of one request (a write) and the count of a
	// read or zero: one chunk of the largest size.
	MaxData = chunkstore.MaxChunkSize
	// maxResponse bounds one response (a chunk list).
	maxResponse = 256 << 20

	reqHeaderSize  = 128
	respHeaderSize = 16
	reqMagic       = 0x43 // 'C', first byte of every request header
)

type op uint8

const (
	opWrite op = iota + 1
	opRead
	opZero
	opFree
	opStamp
	opFence
	opSync
	opChunks
	opStat
	opRegGet // read (and fence) the VSD's generation register
	opRegPut // register entries (data: genreg entries)
	opLast
)

// Request flags.
const (
	flagFUA = 1
	// flagSums: a write's data is preceded by the CRC-32C of each of its
	// blocks (u32 each; offset and count block-aligned), so the replica
	// need not compute them (see LocalReplica.handle).
	flagSums = 2
)

// sumsLen is the length of the checksums of a write of count bytes
// (flagSums).
func sumsLen(count uint32) uint32 { return count / chunkstore.BlockSize * 4 }

// status codes of a response.
const (
	stOK uint8 = iota
	stErr
	stStale
	stChecksum
	stFull
	stRange
	stNoDisk
)

// request is one decoded request header; data follows it on the wire.
type request struct {
	op     op
	flags  uint8
	id     uint64
	disk   chunkstore.ID
	key    chunkstore.ChunkKey
	epoch  uint64
	stamp  chunkstore.Stamp
	off    uint32
	count  uint32 // bytes to read or zero; data length of a write
	length uint32 // bytes of data following the header
	// sums are the checksums a client sends with a write (flagSums),
	// not part of the header; the server reads them into requestData.
	sums []uint32
}

func (r *request) encode(b []byte) {
	le := binary.LittleEndian
	clear(b[:reqHeaderSize])
	b[0] = reqMagic
	b[1] = byte(r.op)
	b[2] = r.flags
	le.PutUint32(b[4:], r.length)
	le.PutUint64(b[8:], r.id)
	copy(b[16:], r.disk[:])
	copy(b[32:], r.key.VSD[:])
	le.PutUint64(b[48:], r.key.Extent)
	le.PutUint64(b[56:], r.epoch)
	le.PutUint64(b[64:], r.stamp.Gen)
	// Two members fit the header's fixed part before off/count; the
	// third follows them.
	copy(b[72:], r.stamp.Members[0][:])
	copy(b[88:], r.stamp.Members[1][:])
	copy(b[104:], r.stamp.Members[2][:])
	le.PutUint32(b[120:], r.off)
	le.PutUint32(b[124:], r.count)
}

// decodeRequest parses and bounds-checks a request header; it never
// panics and accepts only what encode can produce for a valid request.
func decodeRequest(b []byte) (request, error) {
	if len(b) < reqHeaderSize {
		return request{}, fmt.Errorf("request header of %d bytes: %w", len(b), ErrProtocol)
	}
	le := binary.LittleEndian
	r := request{
		op:     op(b[1]),
		flags:  b[2],
		length: le.Uint32(b[4:]),
		id:     le.Uint64(b[8:]),
		epoch:  le.Uint64(b[56:]),
		off:    le.Uint32(b[120:]),
		count:  le.Uint32(b[124:]),
	}
	copy(r.disk[:], b[16:])
	copy(r.key.VSD[:], b[32:])
	r.key.Extent = le.Uint64(b[48:])
	r.stamp.Gen = le.Uint64(b[64:])
	copy(r.stamp.Members[0][:], b[72:])
	copy(r.stamp.Members[1][:], b[88:])
	copy(r.stamp.Members[2][:], b[104:])
	switch {
	case b[0] != reqMagic || b[3] != 0:
		return request{}, fmt.Errorf("request magic %#x: %w", b[0], ErrProtocol)
	case r.op == 0 || r.op >= opLast:
		return request{}, fmt.Errorf("unknown op %d: %w", r.op, ErrProtocol)
	case r.flags&^(flagFUA|flagSums) != 0:
		return request{}, fmt.Errorf("unknown flags %#x: %w", r.flags, ErrProtocol)
	case r.count > MaxData || r.off > MaxData:
		return request{}, fmt.Errorf("offset %d, count %d beyond %d: %w", r.off, r.count, MaxData, ErrProtocol)
	case r.flags&flagSums != 0 && (r.op != opWrite || r.count == 0 || r.off%chunkstore.BlockSize != 0 || r.count%chunkstore.BlockSize != 0):
		return request{}, fmt.Errorf("op %d of [%d,+%d) with checksums: %w", r.op, r.off, r.count, ErrProtocol)
	case r.flags&flagSums != 0 && r.length != r.count+sumsLen(r.count):
		return request{}, fmt.Errorf("write of %d bytes with checksums carries %d: %w", r.count, r.length, ErrProtocol)
	case (r.op == opWrite || r.op == opRegPut) && r.flags&flagSums == 0 && r.length != r.count:
		return request{}, fmt.Errorf("write of %d bytes carries %d: %w", r.count, r.length, ErrProtocol)
	case r.op == opRegPut && r.length%genreg.EntrySize != 0:
		return request{}, fmt.Errorf("register put of %d bytes, not whole entries: %w", r.length, ErrProtocol)
	case r.op != opWrite && r.op != opRegPut && r.length != 0:
		return request{}, fmt.Errorf("op %d carries %d bytes of data: %w", r.op, r.length, ErrProtocol)
	}
	return r, nil
}

type response struct {
	status uint8
	id     uint64
	length uint32
}

func (r response) encode(b []byte) {
	le := binary.LittleEndian
	clear(b[:respHeaderSize])
	le.PutUint32(b[0:], r.length)
	b[4] = r.status
	le.PutUint64(b[8:], r.id)
}

func decodeResponse(b []byte) (response, error) {
	le := binary.LittleEndian
	r := response{length: le.Uint32(b[0:]), status: b[4], id: le.Uint64(b[8:])}
	if r.length > maxResponse || r.status > stNoDisk || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return response{}, fmt.Errorf("response header %x: %w", b[:respHeaderSize], ErrProtocol)
	}
	return r, nil
}

// statusOf maps a store error to a status code.
func statusOf(err error) uint8 {
	switch {
	case err == nil:
		return stOK
	case errors.Is(err, chunkstore.ErrStaleEpoch):
		return stStale
	case errors.Is(err, chunkstore.ErrChecksum):
		return stChecksum
	case errors.Is(err, chunkstore.ErrFull):
		return stFull
	case errors.Is(err, chunkstore.ErrRange):
		return stRange
	case errors.Is(err, ErrNoDisk):
		return stNoDisk
	}
	return stErr
}

// remoteError rebuilds an error from a status code and message.
func remoteError(status uint8, msg string) error {
	var base error
	switch status {
	case stStale:
		base = chunkstore.ErrStaleEpoch
	case stChecksum:
		base = chunkstore.ErrChecksum
	case stFull:
		base = chunkstore.ErrFull
	case stRange:
		base = chunkstore.ErrRange
	case stNoDisk:
		base = ErrNoDisk
	default:
		base = ErrRemote
	}
	return fmt.Errorf("remote: %s: %w", msg, base)
}

// Chunk is one chunk of a VSD on one disk of a node.
type Chunk struct {
	Disk chunkstore.ID
	chunkstore.ChunkInfo
}

// DiskStat describes one disk of a node.
type DiskStat struct {
	ID        chunkstore.ID
	ChunkSize int64
	// Chunks and Free count chunk slots; bytes are times ChunkSize.
	Chunks, Free int64
}

const (
	chunkEntryFixed = 16 + 16 + 8 + 8 + 8 + 8 + 8 + 16*chunkstore.MaxMembers + 2
	statEntrySize   = 16 + 8 + 8 + 8
	maxBitmap       = chunkstore.MaxChunkSize / chunkstore.BlockSize / 8
)

func encodeChunks(cs []Chunk) []byte {
	le := binary.LittleEndian
	var out []byte
	for _, c := range cs {
		b := make([]byte, chunkEntryFixed, chunkEntryFixed+len(c.Written))
		copy(b[0:], c.Disk[:])
		copy(b[16:], c.Key.VSD[:])
		le.PutUint64(b[32:], c.Key.Extent)
		le.PutUint64(b[40:], c.Slot)
		le.PutUint64(b[48:], c.Epoch)
		le.PutUint64(b[56:], c.Generation)
		le.PutUint64(b[64:], c.Stamp.Gen)
		for i, m := range c.Stamp.Members {
			copy(b[72+16*i:], m[:])
		}
		le.PutUint16(b[chunkEntryFixed-2:], uint16(len(c.Written)))
		out = append(out, append(b, c.Written...)...)
	}
	return out
}

// decodeChunks parses a chunk list; it never panics.
func decodeChunks(b []byte) ([]Chunk, error) {
	le := binary.LittleEndian
	var out []Chunk
	for len(b) > 0 {
		if len(b) < chunkEntryFixed {
			return nil, fmt.Errorf("chunk list entry of %d bytes: %w", len(b), ErrProtocol)
		}
		n := int(le.Uint16(b[chunkEntryFixed-2:]))
		if n > maxBitmap || len(b) < chunkEntryFixed+n {
			return nil, fmt.Errorf("chunk list bitmap of %d bytes: %w", n, ErrProtocol)
		}
		var c Chunk
		copy(c.Disk[:], b[0:])
		copy(c.Key.VSD[:], b[16:])
		c.Key.Extent = le.Uint64(b[32:])
		c.Slot = le.Uint64(b[40:])
		c.Epoch = le.Uint64(b[48:])
		c.Generation = le.Uint64(b[56:])
		c.Stamp.Gen = le.Uint64(b[64:])
		for i := range c.Stamp.Members {
			copy(c.Stamp.Members[i][:], b[72+16*i:])
		}
		c.Written = append([]byte(nil), b[chunkEntryFixed:chunkEntryFixed+n]...)
		out = append(out, c)
		b = b[chunkEntryFixed+n:]
	}
	return out, nil
}

func encodeStats(ds []DiskStat) []byte {
	le := binary.LittleEndian
	out := make([]byte, statEntrySize*len(ds))
	for i, d := range ds {
		b := out[i*statEntrySize:]
		copy(b, d.ID[:])
		le.PutUint64(b[16:], uint64(d.ChunkSize))
		le.PutUint64(b[24:], uint64(d.Chunks))
		le.PutUint64(b[32:], uint64(d.Free))
	}
	return out
}

func decodeStats(b []byte) ([]DiskStat, error) {
	if len(b)%statEntrySize != 0 {
		return nil, fmt.Errorf("disk stats of %d bytes: %w", len(b), ErrProtocol)
	}
	le := binary.LittleEndian
	var out []DiskStat
	for ; len(b) > 0; b = b[statEntrySize:] {
		var d DiskStat
		copy(d.ID[:], b)
		d.ChunkSize = int64(le.Uint64(b[16:]) & (1<<62 - 1))
		d.Chunks = int64(le.Uint64(b[24:]) & (1<<62 - 1))
		d.Free = int64(le.Uint64(b[32:]) & (1<<62 - 1))
		out = append(out, d)
	}
	return out, nil
}
