package chunkstore

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzDecodeSuperblock(f *testing.F) {
	sb, err := layout(1<<30, DefaultChunkSize)
	if err != nil {
		f.Fatal(err)
	}
	sb.DiskID, sb.NodeID, sb.Nonce = ID{1}, ID{2}, 42
	f.Add(sb.encode())
	f.Add(make([]byte, superSize))
	bad := sb.encode()
	bad[20] ^= 1
	f.Add(bad)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeSuperblock(b)
		if err != nil {
			return
		}
		// Whatever decodes must describe a layout that fits its disk and
		// survive a round trip.
		if got.DataOffset+got.ChunkCount*uint64(got.ChunkSize) > got.DiskSize {
			t.Fatalf("decoded layout overflows the disk: %+v", got)
		}
		again, err := decodeSuperblock(got.encode())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeHeader(f *testing.F) {
	const nonce, blocks = 77, 256
	h := header{Used: true, Slot: 5, VSD: ID{3}, Extent: 9, Epoch: 2, Generation: 4, Written: make([]byte, blocks/8), JSeq: 12, JIdx: 30}
	h.Written[3] = 0x81
	f.Add(h.encode(nonce, blocks), uint64(5))
	f.Add(make([]byte, headerSize), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, slot uint64) {
		got, used, err := decodeHeader(b, nonce, slot, blocks)
		if err != nil || !used {
			return
		}
		again, used2, err := decodeHeader(got.encode(nonce, blocks), nonce, slot, blocks)
		if err != nil || !used2 {
			t.Fatalf("re-decode: used %v, %v", used2, err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
