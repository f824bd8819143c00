package chunksvc

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

func sampleRequests() []request {
	st := chunkstore.Stamp{Gen: 1<<32 + 3, Members: [3]chunkstore.ID{{1}, {2}, {3}}}
	key := chunkstore.ChunkKey{VSD: chunkstore.ID{0xaa}, Extent: 77}
	return []request{
		{op: opWrite, flags: flagFUA, id: 1, disk: chunkstore.ID{7}, key: key, epoch: 4, stamp: st, off: 4096, count: 8, length: 8},
		{op: opRead, id: 2, disk: chunkstore.ID{7}, key: key, off: 100, count: 4096},
		{op: opZero, id: 3, disk: chunkstore.ID{7}, key: key, epoch: 4, stamp: st, off: 0, count: MaxData},
		{op: opFree, id: 4, disk: chunkstore.ID{7}, key: key, epoch: 4},
		{op: opStamp, flags: flagFUA, id: 5, disk: chunkstore.ID{7}, key: key, epoch: 4, stamp: st},
		{op: opFence, id: 6, key: chunkstore.ChunkKey{VSD: key.VSD}, epoch: 9},
		{op: opSync, id: 7},
		{op: opChunks, id: 8, key: chunkstore.ChunkKey{VSD: key.VSD}},
		{op: opStat, id: 9},
		{op: opRegGet, id: 10, key: chunkstore.ChunkKey{VSD: key.VSD}, epoch: 9},
		{op: opRegPut, id: 11, key: chunkstore.ChunkKey{VSD: key.VSD}, epoch: 9, count: 2 * genreg.EntrySize, length: 2 * genreg.EntrySize},
		{op: opWrite, flags: flagFUA | flagSums, id: 12, disk: chunkstore.ID{7}, key: key, epoch: 4, stamp: st, off: 8192, count: 8192, length: 8192 + 8},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range sampleRequests() {
		b := make([]byte, reqHeaderSize)
		r.encode(b)
		got, err := decodeRequest(b)
		if err != nil {
			t.Fatalf("op %d: %v", r.op, err)
		}
		if diff := cmp.Diff(r, got, cmp.AllowUnexported(request{})); diff != "" {
			t.Fatalf("op %d round trip (-want +got):\n%s", r.op, diff)
		}
	}
}

func TestRequestBoundsRefused(t *testing.T) {
	base := sampleRequests()[0]
	tests := map[string]func(*request){
		"unknown op":       func(r *request) { r.op = opLast },
		"zero op":          func(r *request) { r.op = 0 },
		"huge count":       func(r *request) { r.count, r.length = MaxData+1, MaxData+1 },
		"huge offset":      func(r *request) { r.off = MaxData + 1 },
		"length mismatch":  func(r *request) { r.length = 9 },
		"data on a read":   func(r *request) { r.op = opRead },
		"unknown flag bit": func(r *request) { r.flags = 0x80 },
		"register part entry": func(r *request) {
			r.op, r.count, r.length = opRegPut, genreg.EntrySize+1, genreg.EntrySize+1
		},
		"register get with data":    func(r *request) { r.op, r.count, r.length = opRegGet, 8, 8 },
		"checksums of a part block": func(r *request) { r.flags = flagSums },
		"checksums at a part offset": func(r *request) {
			r.flags, r.off, r.count, r.length = flagSums, 100, 4096, 4100
		},
		"checksums missing":    func(r *request) { r.flags, r.off, r.count, r.length = flagSums, 0, 8192, 8192 },
		"checksums too many":   func(r *request) { r.flags, r.off, r.count, r.length = flagSums, 0, 4096, 4104 },
		"checksums of nothing": func(r *request) { r.flags, r.off, r.count, r.length = flagSums, 0, 0, 0 },
		"checksums on a register put": func(r *request) {
			r.op, r.flags, r.count, r.length = opRegPut, flagSums, 4096, 4100
		},
	}
	for name, mutate := range tests {
		r := base
		mutate(&r)
		b := make([]byte, reqHeaderSize)
		r.encode(b)
		if _, err := decodeRequest(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestChunkListRoundTrip(t *testing.T) {
	want := []Chunk{
		{Disk: chunkstore.ID{1}, ChunkInfo: chunkstore.ChunkInfo{Key: chunkstore.ChunkKey{VSD: chunkstore.ID{2}, Extent: 3}, Slot: 4, Epoch: 5, Generation: 6, Written: []byte{0xff, 1}, Stamp: chunkstore.Stamp{Gen: 7, Members: [3]chunkstore.ID{{8}}}}},
		{Disk: chunkstore.ID{9}, ChunkInfo: chunkstore.ChunkInfo{}},
	}
	got, err := decodeChunks(encodeChunks(want))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	stats := []DiskStat{{ID: chunkstore.ID{1}, ChunkSize: 1 << 20, Chunks: 100, Free: 42}}
	gotStats, err := decodeStats(encodeStats(stats))
	if err != nil || !cmp.Equal(stats, gotStats) {
		t.Fatalf("stats round trip: %v, %v", gotStats, err)
	}
}

// FuzzDecodeRequest: whatever decodes re-encodes to the same bytes and is
// within the bounds the server relies on.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		b := make([]byte, reqHeaderSize)
		r.encode(b)
		f.Add(b)
	}
	f.Add(make([]byte, reqHeaderSize))
	f.Add([]byte{reqMagic, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		carries := r.op == opWrite || r.op == opRegPut
		want := r.count
		if r.flags&flagSums != 0 {
			want = r.count + r.count/chunkstore.BlockSize*4
			if r.op != opWrite || r.count == 0 || r.count%chunkstore.BlockSize != 0 || r.off%chunkstore.BlockSize != 0 {
				t.Fatalf("checksums on a request that cannot carry them: %+v", r)
			}
		}
		if r.count > MaxData || r.off > MaxData || (carries && r.length != want) || (!carries && r.length != 0) ||
			(r.op == opRegPut && r.length%genreg.EntrySize != 0) {
			t.Fatalf("decoded out of bounds: %+v", r)
		}
		again := make([]byte, reqHeaderSize)
		r.encode(again)
		if !cmp.Equal(again, b[:reqHeaderSize]) {
			t.Fatalf("re-encode differs:\n%x\n%x", again, b[:reqHeaderSize])
		}
	})
}

// FuzzDecodeChunks: chunk lists and disk stats from a peer never panic and
// what decodes re-encodes identically.
func FuzzDecodeChunks(f *testing.F) {
	f.Add(encodeChunks([]Chunk{{Disk: chunkstore.ID{1}, ChunkInfo: chunkstore.ChunkInfo{Written: make([]byte, 32)}}}))
	f.Add(encodeStats([]DiskStat{{ID: chunkstore.ID{1}, ChunkSize: 1 << 20}}))
	f.Add(genreg.AppendEntry(nil, genreg.Entry{Extent: 3, Gen: 1 << 32, Members: [3]chunkstore.ID{{1}}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if cs, err := decodeChunks(b); err == nil {
			if again := encodeChunks(cs); !cmp.Equal(again, b) && len(b) > 0 {
				t.Fatalf("chunk list re-encodes differently")
			}
		}
		decodeStats(b)
		if es, err := genreg.DecodeEntries(b); err == nil {
			var again []byte
			for _, e := range es {
				again = genreg.AppendEntry(again, e)
			}
			if !cmp.Equal(again, b) && len(b) > 0 {
				t.Fatalf("register entries re-encode differently")
			}
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	b := make([]byte, respHeaderSize)
	response{status: stStale, id: 3, length: 10}.encode(b)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < respHeaderSize {
			return
		}
		r, err := decodeResponse(b)
		if err == nil && r.length > maxResponse {
			t.Fatalf("response length %d beyond the bound", r.length)
		}
	})
}
