package chunksvc_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// TestWriteSumsOverTheWire: checksums sent with a write over TLS are
// stored as sent once the first and last block match (a wrong one in
// between makes only its block unreadable, never wrong data); when the
// first or last block does not match, the replica computes them all.
func TestWriteSumsOverTheWire(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	cl := dial(t, c, "node1")
	s := c.Stores("node1")[0]
	disk := s.Superblock().DiskID
	const bs = chunkstore.BlockSize
	data := make([]byte, 4*bs)
	for i := range data {
		data[i] = byte(i/bs*31 + i%253)
	}
	good := chunkstore.BlockSums(nil, data)
	tests := []struct {
		name    string
		wrong   int // block whose checksum is sent wrong; -1: none
		badRead int // block that must then fail with ErrChecksum; -1: none
	}{
		{"right checksums", -1, -1},
		{"wrong first checksum: recomputed", 0, -1},
		{"wrong last checksum: recomputed", 3, -1},
		{"wrong middle checksum: stored", 2, 2},
	}
	for i, tt := range tests {
		key := chunkstore.ChunkKey{VSD: chunkstore.ID{5}, Extent: uint64(i)}
		sums := slices.Clone(good)
		if tt.wrong >= 0 {
			sums[tt.wrong] ^= 0x40
		}
		// The first write makes the blocks written; the second goes
		// through the journal. Both carry the same checksums.
		for range 2 {
			if err := cl.WriteSums(ctx, disk, key, 1, chunkstore.Stamp{}, 0, data, sums, false); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		}
		for b := range 4 {
			got := make([]byte, bs)
			err := cl.Read(ctx, disk, key, int64(b*bs), got)
			switch {
			case b == tt.badRead && !errors.Is(err, chunkstore.ErrChecksum):
				t.Errorf("%s: read of block %d: %v; want ErrChecksum", tt.name, b, err)
			case b != tt.badRead && (err != nil || !bytes.Equal(got, data[b*bs:(b+1)*bs])):
				t.Errorf("%s: read of block %d: %v, equal %v", tt.name, b, err, bytes.Equal(got, data[b*bs:(b+1)*bs]))
			}
		}
		if tt.badRead >= 0 {
			// Rewriting the block with its checksum repairs it.
			p := data[tt.badRead*bs : (tt.badRead+1)*bs]
			if err := cl.WriteSums(ctx, disk, key, 1, chunkstore.Stamp{}, int64(tt.badRead*bs), p, chunkstore.BlockSums(nil, p), true); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tt := range []struct {
		name string
		off  int64
		p    []byte
		sums []uint32
	}{
		{"misaligned", 512, data[:bs], good[:1]},
		{"part block", 0, data[:bs+1], good[:1]},
		{"count mismatch", 0, data[:2*bs], good[:1]},
		{"empty", 0, nil, nil},
	} {
		if err := cl.WriteSums(ctx, disk, chunkstore.ChunkKey{VSD: chunkstore.ID{6}}, 1, chunkstore.Stamp{}, tt.off, tt.p, tt.sums, false); !errors.Is(err, chunkstore.ErrRange) {
			t.Errorf("%s: %v; want ErrRange", tt.name, err)
		}
	}
	if cs := s.Chunks(chunkstore.ID{6}); len(cs) != 0 {
		t.Errorf("refused writes left chunks: %+v", cs)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("store check: %v", err)
	}
}
