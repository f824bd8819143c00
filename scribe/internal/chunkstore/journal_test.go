package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// journalWrites counts device writes that land in the journal and in the
// record table.
type journalWrites struct {
	mu               sync.Mutex
	journal, records int
}

func (w *journalWrites) hook(sb Superblock) func(Op, int64, int) error {
	return func(op Op, off int64, n int) error {
		if op != OpWrite {
			return nil
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case off >= int64(sb.JournalOffset) && off < int64(sb.JournalOffset+sb.JournalBlocks*BlockSize):
			w.journal++
		case off >= metaOffset && off < int64(sb.JournalOffset):
			w.records++
		}
		return nil
	}
}

func TestJournalOverwriteAndReplay(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			path, dev := newDisk(t, 64<<20, m.opts)
			fp := NewFailpointDevice(dev)
			s := formatOpen(t, fp)
			sb := s.Superblock()
			ctx := context.Background()
			k := ChunkKey{VSD: ID{7}, Extent: 1}
			if err := s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{1}, 64<<10), false); err != nil {
				t.Fatal(err)
			}
			var w journalWrites
			fp.Set(w.hook(sb))
			// Overwrites of written blocks: one journal write (the
			// chunk's mark), no record write.
			want := bytes.Repeat([]byte{1}, 64<<10)
			for i := range 5 {
				p := bytes.Repeat([]byte{byte(10 + i)}, BlockSize)
				off := int64(i%3) * BlockSize
				if err := s.Write(ctx, k, 1, off, p, false); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], p)
			}
			if w.journal != 1 || w.records != 0 {
				t.Errorf("5 overwrites: %d journal and %d record writes; want 1 and 0", w.journal, w.records)
			}
			if err := s.Check(ctx); err != nil {
				t.Fatalf("check with the journal ahead of the records: %v", err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			fp.Set(nil)
			// Reopen without closing (a crash): the journal is replayed.
			s2 := reopen(t, path, m.opts)
			defer s2.Close()
			if err := s2.Check(ctx); err != nil {
				t.Fatalf("check after replay: %v", err)
			}
			got := make([]byte, len(want))
			if err := s2.Read(ctx, k, 0, got); err != nil {
				t.Fatalf("read after replay: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("data after replay differs")
			}
			dev.Close() // the crashed store is abandoned
		})
	}
}

// TestJournalCheckpointsWrapTheRing overwrites far more blocks than the
// ring holds: checkpoints must write the records before blocks are reused.
func TestJournalCheckpointsWrapTheRing(t *testing.T) { onDevices(t, testJournalCheckpointsWrapTheRing) }

func testJournalCheckpointsWrapTheRing(t *testing.T, dopts FileOptions) {
	path, s := openStore(t, 32<<20, dopts)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed(t), 1))
	want := make([][]byte, 3)
	for e := range want {
		want[e] = bytes.Repeat([]byte{byte(e)}, DefaultChunkSize/4)
		if err := s.Write(ctx, ChunkKey{VSD: ID{1}, Extent: uint64(e)}, 1, 0, want[e], false); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 * int(s.sb.JournalBlocks) {
		e := r.IntN(3)
		off := r.Int64N(int64(len(want[e])) - 3*BlockSize)
		p := make([]byte, 1+r.IntN(3*BlockSize))
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		if err := s.Write(ctx, ChunkKey{VSD: ID{1}, Extent: uint64(e)}, 1, off, p, i%3 == 0); err != nil {
			t.Fatal(err)
		}
		copy(want[e][off:], p)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	abandon(s) // a crash: the journal is replayed
	s2 := reopen(t, path, dopts)
	defer s2.Close()
	if err := s2.Check(ctx); err != nil {
		t.Fatalf("check after reopen: %v", err)
	}
	for e := range want {
		got := make([]byte, len(want[e]))
		if err := s2.Read(ctx, ChunkKey{VSD: ID{1}, Extent: uint64(e)}, 0, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[e]) {
			t.Errorf("extent %d differs after reopen", e)
		}
	}
}

// TestOlderFormatRefused: a disk of format version 2 (journal without
// open slots or entry positions) is refused with ErrVersion, and the
// message says which version this build reads.
func TestOlderFormatRefused(t *testing.T) { onDevices(t, testOlderFormatRefused) }

func testOlderFormatRefused(t *testing.T, dopts FileOptions) {
	_, dev := newDisk(t, 32<<20, dopts)
	sb, err := Format(dev, FormatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sb.Version = 2
	for _, off := range []int64{0, superSize} {
		if _, err := dev.WriteAt(sb.encode(), off); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Open(dev)
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "format version 2 (this build reads 3)") {
		t.Fatalf("open a format 2 disk: %v; want ErrVersion naming both versions", err)
	}
	dev.Close()
}

// abandon leaves s as a crash would: its device closed, nothing else
// written, and openStore's cleanup no longer checks it.
func abandon(s *Store) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.dev.Close()
}

// formatOpen formats dev and opens it; the test closes or abandons it.
func formatOpen(t *testing.T, dev Device) *Store {
	t.Helper()
	if _, err := Format(dev, FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var errCrash = errors.New("crashed")

// noSync is a Device whose Sync does nothing: the crash below stops the
// process, not the power, so every completed write persists anyway.
type noSync struct{ Device }

func (noSync) Sync() error { return nil }

// crashAtOp is one operation of TestCrashAtEveryDeviceWrite's workload.
type crashAtOp struct {
	extent uint64
	off, n int64
	data   []byte // nil: zero
	fua    bool
	sync   bool // a Sync after the op
}

func crashAtWorkload(sd uint64, n int) []crashAtOp {
	r := rand.New(rand.NewPCG(sd, 7))
	ops := make([]crashAtOp, n)
	for i := range ops {
		o := crashAtOp{extent: uint64(r.IntN(3)), sync: i%4 == 3, fua: r.IntN(8) == 0}
		// A narrow range, so most writes overwrite written blocks (as
		// single or run entries); one in eight is larger.
		o.off = r.Int64N(192 << 10)
		o.n = 1 + r.Int64N(40<<10)
		if r.IntN(8) == 0 {
			o.n = 1 + r.Int64N(384<<10)
			o.off = r.Int64N(448<<10 - o.n + 1)
		}
		if i < 3 {
			// Write every extent's first 448 KiB, so the larger writes
			// overwrite more than 64 written blocks at once.
			o = crashAtOp{extent: uint64(i), n: 448 << 10, data: make([]byte, 448<<10)}
			for j := range o.data {
				o.data[j] = byte(j*7 + i)
			}
		}
		if r.IntN(12) != 0 {
			o.data = make([]byte, o.n)
			for j := range o.data {
				o.data[j] = byte(r.Uint32())
			}
		}
		ops[i] = o
	}
	return ops
}

// TestCrashAtEveryDeviceWrite runs a workload of writes, overwrites,
// zeroes, FUA writes and syncs and stops the disk at every device write in
// turn (that write and all later ones never happen, as when the process
// dies); a write to the journal is also torn (half of it reaches the
// disk). After each stop the store reopens, Check passes, every completed
// operation reads back, and the one in flight left old or new bytes.
// Overwrites that pair their data with the journal's open block (a sync
// every four operations makes them frequent) are tried with either of
// the two reaching the disk first.
func TestCrashAtEveryDeviceWrite(t *testing.T) {
	for _, rev := range []bool{false, true} {
		t.Run(map[bool]string{false: "data first", true: "journal first"}[rev], func(t *testing.T) {
			onDevices(t, func(t *testing.T, dopts FileOptions) { testCrashAtEveryDeviceWrite(t, dopts, rev) })
		})
	}
}

func testCrashAtEveryDeviceWrite(t *testing.T, dopts FileOptions, reversed bool) {
	sd := seed(t)
	ops := crashAtWorkload(sd, 60)
	ctx := context.Background()
	var journalWrite []bool // by device write number, from the full run
	pairs := 0              // WriteAtBoth calls of the full run
	run := func(t *testing.T, crashAt int, torn bool) (writes int) {
		path, dev := newDisk(t, 4<<20, dopts) // 3 chunks, a 16-block journal: checkpoints every 8 blocks
		if _, err := Format(dev, FormatOptions{}); err != nil {
			t.Fatal(err)
		}
		fp := NewFailpointDevice(noSync{dev})
		fp.pairReversed = reversed
		s, err := Open(fp)
		if err != nil {
			t.Fatal(err)
		}
		// Seal blocks early and checkpoint after every sealed block.
		s.j.blockUnits, s.j.checkpointAt = 24, 1
		sb := s.Superblock()
		var mu sync.Mutex
		fp.Set(func(op Op, off int64, n int) error {
			mu.Lock()
			defer mu.Unlock()
			if op == OpWrite {
				writes++
				if crashAt == 0 {
					journalWrite = append(journalWrite, off >= int64(sb.JournalOffset) && off < sb.ringOffset(0)+int64(sb.JournalBlocks)*BlockSize)
				}
			}
			if crashAt > 0 && writes >= crashAt {
				if torn && writes == crashAt {
					return &TornWrite{Bytes: n / 2, Err: errCrash}
				}
				return errCrash
			}
			return nil
		})
		model := make([][]byte, 3)
		for i := range model {
			model[i] = make([]byte, DefaultChunkSize)
		}
		var failed *crashAtOp
		for i, o := range ops {
			k := ChunkKey{VSD: ID{3}, Extent: o.extent}
			if o.data != nil {
				err = s.Write(ctx, k, 1, o.off, o.data, o.fua)
			} else {
				err = s.Zero(ctx, k, 1, o.off, o.n, o.fua)
			}
			if err == nil && o.sync {
				err = s.Sync()
			}
			if err != nil {
				if crashAt == 0 || !errors.Is(err, errCrash) {
					t.Fatalf("op %d: %v", i, err)
				}
				failed = &ops[i]
				break
			}
			if o.data != nil {
				copy(model[o.extent][o.off:], o.data)
			} else {
				clear(model[o.extent][o.off : o.off+o.n])
			}
		}
		if crashAt == 0 {
			if err := s.Check(ctx); err != nil {
				t.Fatal(err)
			}
			s.j.mu.Lock()
			cp := s.j.checkpointed
			s.j.mu.Unlock()
			if cp == 0 {
				t.Error("the workload never checkpointed the journal")
			}
			if pairs = fp.pairs; pairs == 0 {
				t.Error("the workload never paired data with the open block")
			}
			s.Close()
			return writes
		}
		dev.Close() // the crashed store is abandoned
		dev2, err := OpenFile(path, dopts)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := Open(noSync{dev2})
		if err != nil {
			t.Fatalf("crash at device write %d (torn %v): reopen: %v", crashAt, torn, err)
		}
		defer s2.Close()
		if err := s2.Check(ctx); err != nil {
			t.Fatalf("crash at device write %d (torn %v): check: %v", crashAt, torn, err)
		}
		for e := range model {
			got := make([]byte, DefaultChunkSize)
			if err := s2.Read(ctx, ChunkKey{VSD: ID{3}, Extent: uint64(e)}, 0, got); err != nil {
				t.Fatalf("crash at device write %d (torn %v): read extent %d: %v", crashAt, torn, e, err)
			}
			if bytes.Equal(got, model[e]) {
				continue // the common case, without a loop the race detector slows down
			}
			for off := range got {
				if got[off] == model[e][off] {
					continue
				}
				if f := failed; f != nil && f.extent == uint64(e) && int64(off) >= f.off && int64(off) < f.off+f.n {
					if f.data == nil && got[off] == 0 || f.data != nil && got[off] == f.data[int64(off)-f.off] {
						continue
					}
				}
				t.Fatalf("crash at device write %d (torn %v): extent %d byte %d is %#x, want %#x (seed %d)", crashAt, torn, e, off, got[off], model[e][off], sd)
			}
		}
		return writes
	}
	total := run(t, 0, false)
	tornRuns := 0
	for k := 1; k <= total; k++ {
		run(t, k, false)
		if journalWrite[k-1] {
			run(t, k, true)
			tornRuns++
		}
	}
	t.Logf("%d operations, %d device writes (%d pairs of data and open block), %d of them torn in turn", len(ops), total, pairs, tornRuns)
}

func FuzzDecodeJournalBlock(f *testing.F) {
	const nonce, chunks, blocks = 99, 40, 256
	b := alignedBuf(BlockSize)
	encodeJournalBlock(b, nonce, 12, []jentry{{Slot: 3, Block: 255, Which: 1, Sum: 0xdeadbeef}, {Slot: 39, Block: 0, Sum: 7}})
	f.Add(bytes.Clone(b))
	encodeJournalBlock(b, nonce, 1, nil)
	f.Add(bytes.Clone(b))
	// A mark, runs for both slots (one ending mid-unit, one a whole
	// chunk), and a single entry after them.
	encodeJournalBlock(b, nonce, 7, []jentry{
		{Slot: 2, Which: jmark},
		{Slot: 2, Block: 10, Which: jrunA, Sums: []uint32{1, 2, 3, 4, 5}},
		{Slot: 5, Block: 0, Which: jrunA + 1, Sums: make([]uint32, blocks)},
		{Slot: 6, Block: 1, Which: 0, Sum: 9},
	})
	f.Add(bytes.Clone(b))
	f.Add(make([]byte, BlockSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		jb, ok, err := decodeJournalBlock(b, nonce, chunks, blocks)
		if err != nil || !ok {
			return
		}
		units := 0
		for _, e := range jb.Entries {
			n := 1
			if e.Which >= jrunA {
				n = len(e.Sums)
			}
			if e.Slot >= chunks || int(e.Block)+n > blocks || e.Which > jrunA+1 || int(e.Idx) != units {
				t.Fatalf("decoded entry outside the store: %+v", e)
			}
			units += e.units()
		}
		if units != jb.Units || units > journalMaxEntries {
			t.Fatalf("entries take %d units, block says %d", units, jb.Units)
		}
		again := make([]byte, BlockSize)
		encodeJournalBlock(again, nonce, jb.Seq, jb.Entries)
		jb2, ok, err := decodeJournalBlock(again, nonce, chunks, blocks)
		if err != nil || !ok {
			t.Fatalf("re-decode: ok %v, %v", ok, err)
		}
		if diff := cmp.Diff(jb, jb2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func TestJournalBlockRoundTrip(t *testing.T) {
	b := alignedBuf(BlockSize)
	want := jblock{Seq: 5, Units: 5, Entries: []jentry{
		{Slot: 1, Block: 2, Which: 1, Sum: 3},
		{Slot: 1, Which: jmark, Idx: 1},
		{Slot: 2, Block: 250, Which: jrunA, Sums: []uint32{7, 8, 9, 10, 11, 12}, Idx: 2},
	}}
	encodeJournalBlock(b, 8, want.Seq, want.Entries)
	got, ok, err := decodeJournalBlock(b, 8, 10, 256)
	if err != nil || !ok {
		t.Fatalf("decode: ok %v, %v", ok, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name  string
		mod   func([]byte)
		nonce uint64
		ok    bool
		err   error
	}{
		{"other format", func([]byte) {}, 9, false, nil},
		{"torn", func(b []byte) { b[100] ^= 1 }, 8, false, nil},
	} {
		c := bytes.Clone(b)
		tc.mod(c)
		_, ok, err := decodeJournalBlock(c, tc.nonce, 10, 256)
		if ok != tc.ok || !errors.Is(err, tc.err) {
			t.Errorf("%s: ok %v, err %v", tc.name, ok, err)
		}
	}
	// A valid block naming a slot or blocks outside the store is corrupt.
	for _, e := range []jentry{{Slot: 10}, {Slot: 1, Block: 254, Which: jrunA + 1, Sums: []uint32{1, 2, 3}}} {
		encodeJournalBlock(b, 8, 5, []jentry{e})
		if _, _, err := decodeJournalBlock(b, 8, 10, 256); !errors.Is(err, ErrCorrupt) {
			t.Errorf("entry %+v outside the store: %v; want ErrCorrupt", e, err)
		}
	}
}

// TestJournalSealedButUnwrittenBlock: a record written while a journal
// block was sealed but not yet written names that block; after a crash
// that lost it, the reopened journal must number its blocks past it, or
// their entries would count as included in the record.
func TestJournalSealedButUnwrittenBlock(t *testing.T) {
	onDevices(t, testJournalSealedButUnwrittenBlock)
}

func testJournalSealedButUnwrittenBlock(t *testing.T, dopts FileOptions) {
	path, dev := newDisk(t, 32<<20, dopts)
	s := formatOpen(t, dev)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{4}, Extent: 0}
	if err := s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{1}, 8*BlockSize), true); err != nil {
		t.Fatal(err)
	}
	// Three blocks sealed whose writes never happened, then a record.
	s.j.mu.Lock()
	s.j.next += 3
	s.j.written += 3
	s.j.mu.Unlock()
	if err := s.SetStamp(ctx, k, 1, Stamp{Gen: 1}, true); err != nil {
		t.Fatal(err)
	}
	dev.Close() // crash
	s2 := reopen(t, path, dopts)
	want := bytes.Repeat([]byte{2}, BlockSize)
	if err := s2.Write(ctx, k, 1, 3*BlockSize, want, true); err != nil {
		t.Fatal(err)
	}
	s2.dev.Close() // crash again: the overwrite lives in the journal only
	s3 := reopen(t, path, dopts)
	defer s3.Close()
	if err := s3.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	got := make([]byte, BlockSize)
	if err := s3.Read(ctx, k, 3*BlockSize, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("block 3 holds %d, want %d", got[0], want[0])
	}
}

// TestOpenSlotWriteFails: a failed (torn) write of the open block loses
// nothing: Sync writes the chunk records instead, the next write of the
// open block goes to the same slot (the other still holds the last good
// copy), successful ones alternate, and a reopen without Close (a crash)
// reads every acknowledged write. With pairs, the open block fails in
// the write that pairs it with data: the write still succeeds (its data
// is written), and the Sync writes the open block to the same slot.
func TestOpenSlotWriteFails(t *testing.T) {
	for _, pair := range []bool{false, true} {
		t.Run(fmt.Sprintf("pairs %v", pair), func(t *testing.T) {
			onDevices(t, func(t *testing.T, dopts FileOptions) { testOpenSlotWriteFails(t, dopts, pair) })
		})
	}
}

func testOpenSlotWriteFails(t *testing.T, dopts FileOptions, pair bool) {
	path, dev := newDisk(t, 32<<20, dopts)
	fp := NewFailpointDevice(dev)
	s := formatOpen(t, fp)
	if !pair {
		s.dev.pair = nil // Sync writes every open block
	}
	sb := s.Superblock()
	ctx := context.Background()
	k := ChunkKey{VSD: ID{5}, Extent: 2}
	if err := s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{1}, 16*BlockSize), true); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{1}, 16*BlockSize)
	type slotWrite struct {
		off    int64
		failed bool
	}
	var writes []slotWrite
	records := 0
	hook := func(fail bool) func(Op, int64, int) error {
		return func(op Op, off int64, n int) error {
			switch {
			case op != OpWrite:
			case off >= int64(sb.JournalOffset) && off < sb.ringOffset(0):
				writes = append(writes, slotWrite{off, fail})
				if fail {
					return &TornWrite{Bytes: n / 2, Err: syscall.EIO}
				}
			case off < int64(sb.JournalOffset):
				records++
			}
			return nil
		}
	}
	for i := range 6 {
		p := bytes.Repeat([]byte{byte(2 + i)}, 4*BlockSize)
		off := int64(i%4) * 4 * BlockSize
		fp.Set(hook(pair && i%2 == 0 && i > 0)) // not the mark of the first
		nw := len(writes)
		if err := s.Write(ctx, k, 1, off, p, false); err != nil {
			t.Fatal(err)
		}
		if pair && i > 0 && len(writes) == nw {
			t.Errorf("write %d right after a sync did not write the open block with its data", i)
		}
		copy(want[off:], p)
		fp.Set(hook(!pair && i%2 == 0))
		before := records
		if err := s.Sync(); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if !pair && i%2 == 0 && len(writes) > 0 && writes[len(writes)-1].failed && records == before {
			t.Errorf("sync %d: the open block's write failed and no record was written", i)
		}
	}
	fp.Set(nil)
	failures := 0
	for i := 1; i < len(writes); i++ {
		prev, cur := writes[i-1], writes[i]
		if prev.failed {
			failures++
		}
		if prev.failed != (cur.off == prev.off) {
			t.Errorf("open-slot writes %+v: write %d went to the wrong slot", writes, i)
		}
	}
	if failures == 0 {
		t.Fatalf("open-slot writes %+v: none failed before another write", writes)
	}
	abandon(s)
	s2 := reopen(t, path, dopts)
	defer s2.Close()
	if err := s2.Check(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if err := s2.Read(ctx, k, 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("acknowledged overwrites differ after a reopen")
	}
}

// TestCheckpointKeepsChunksMarked: a checkpoint marks the chunks it
// wrote again, so their next overwrite is one device write (no mark to
// wait for); Close leaves no chunk marked, so a clean Open reads no
// chunk data.
func TestCheckpointKeepsChunksMarked(t *testing.T) { onDevices(t, testCheckpointKeepsChunksMarked) }

func testCheckpointKeepsChunksMarked(t *testing.T, dopts FileOptions) {
	path, dev := newDisk(t, 32<<20, dopts)
	fp := NewFailpointDevice(dev)
	s := formatOpen(t, fp)
	sb := s.Superblock()
	ctx := context.Background()
	keys := []ChunkKey{{VSD: ID{6}, Extent: 0}, {VSD: ID{6}, Extent: 1}}
	for _, k := range keys {
		if err := s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{1}, 8*BlockSize), false); err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{2}, BlockSize), false); err != nil {
			t.Fatal(err) // marks the chunk
		}
	}
	if err := s.checkpoint(true, true); err != nil {
		t.Fatal(err)
	}
	// The first chunk is written again, the second is left marked.
	var w journalWrites
	fp.Set(w.hook(sb))
	if err := s.Write(ctx, keys[0], 1, BlockSize, bytes.Repeat([]byte{3}, BlockSize), false); err != nil {
		t.Fatal(err)
	}
	fp.Set(nil)
	if w.journal != 0 || w.records != 0 {
		t.Errorf("overwrite after a checkpoint: %d journal and %d record writes; want none (still marked)", w.journal, w.records)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dev2, err := OpenFile(path, dopts)
	if err != nil {
		t.Fatal(err)
	}
	fp2 := NewFailpointDevice(dev2)
	var dataReads int
	fp2.Set(func(op Op, off int64, n int) error {
		if op == OpRead && off >= int64(sb.DataOffset) {
			dataReads++
		}
		return nil
	})
	s2, err := Open(fp2)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if dataReads != 0 {
		t.Errorf("open after Close read chunk data %d times; want 0 (no chunk left marked)", dataReads)
	}
	fp2.Set(nil)
	if err := s2.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
