package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
)

func TestWriteSums(t *testing.T) { onDevices(t, testWriteSums) }

// testWriteSums: a write with given checksums reads back (first write,
// then an overwrite through the journal, then after a reopen), a badly
// shaped one fails with ErrRange and changes nothing, and a wrong
// checksum makes its block fail with ErrChecksum, never read wrong data.
func testWriteSums(t *testing.T, dopts FileOptions) {
	path, s := openStore(t, 32<<20, dopts)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{1}, Extent: 3}
	pattern := func(b byte, n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = b + byte(i/BlockSize)
		}
		return p
	}
	first := pattern(1, 8*BlockSize)
	if err := s.WriteSums(ctx, k, 1, Stamp{}, 0, first, BlockSums(nil, first), false); err != nil {
		t.Fatal(err)
	}
	over := pattern(40, 6*BlockSize) // all written: goes through the journal
	if err := s.WriteSums(ctx, k, 1, Stamp{}, BlockSize, over, BlockSums(nil, over), false); err != nil {
		t.Fatal(err)
	}
	want := append(append(first[:BlockSize:BlockSize], over...), first[7*BlockSize:]...)

	for _, tt := range []struct {
		name string
		off  int64
		p    []byte
		sums []uint32
	}{
		{"misaligned offset", 100, make([]byte, BlockSize), make([]uint32, 1)},
		{"partial block", 0, make([]byte, BlockSize+1), make([]uint32, 1)},
		{"too few checksums", 0, make([]byte, 2*BlockSize), make([]uint32, 1)},
		{"too many checksums", 0, make([]byte, BlockSize), make([]uint32, 2)},
		{"nil checksums", 0, make([]byte, BlockSize), nil},
	} {
		if err := s.WriteSums(ctx, k, 1, Stamp{}, tt.off, tt.p, tt.sums, false); !errors.Is(err, ErrRange) {
			t.Errorf("%s: %v; want ErrRange", tt.name, err)
		}
	}
	got := make([]byte, len(want))
	if err := s.Read(ctx, k, 0, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after the refused writes: %v, equal %v", err, bytes.Equal(got, want))
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, path, dopts)
	defer s.Close()
	if err := s.Read(ctx, k, 0, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after reopen: %v, equal %v", err, bytes.Equal(got, want))
	}

	// A wrong checksum: that block fails, the others read.
	bad := pattern(90, 2*BlockSize)
	sums := BlockSums(nil, bad)
	sums[1] ^= 1
	if err := s.WriteSums(ctx, k, 1, Stamp{}, 2*BlockSize, bad, sums, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Read(ctx, k, 3*BlockSize, got[:BlockSize]); !errors.Is(err, ErrChecksum) {
		t.Errorf("read of the block written with a wrong checksum: %v; want ErrChecksum", err)
	}
	if err := s.Read(ctx, k, 2*BlockSize, got[:BlockSize]); err != nil || !bytes.Equal(got[:BlockSize], bad[:BlockSize]) {
		t.Errorf("read of the block written with its checksum: %v, equal %v", err, bytes.Equal(got[:BlockSize], bad[:BlockSize]))
	}
	if err := s.Check(ctx); !errors.Is(err, ErrChecksum) {
		t.Errorf("check with a wrong checksum: %v; want ErrChecksum", err)
	}
	// Rewriting the block repairs it.
	if err := s.WriteSums(ctx, k, 1, Stamp{}, 3*BlockSize, bad[BlockSize:], BlockSums(nil, bad[BlockSize:]), true); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Errorf("check after the rewrite: %v", err)
	}
}

func TestBlockSums(t *testing.T) {
	p := bytes.Repeat([]byte{1, 2, 3}, BlockSize)
	got := BlockSums([]uint32{7}, p)
	want := []uint32{7, crc(p[:BlockSize]), crc(p[BlockSize : 2*BlockSize]), crc(p[2*BlockSize:])}
	if !slices.Equal(got, want) {
		t.Errorf("BlockSums = %x; want %x", got, want)
	}
}
