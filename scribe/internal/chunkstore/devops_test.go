package chunkstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// deviceOps counts a store's device operations by region.
type deviceOps struct {
	mu                            sync.Mutex
	data, journal, records, syncs int
	// inSync is set while the test is in Sync; syncJournal counts the
	// journal writes made then.
	inSync      bool
	syncJournal int
}

// sync calls s.Sync, counting the journal writes it makes.
func (d *deviceOps) sync(s *Store) error {
	d.mu.Lock()
	d.inSync = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.inSync = false
		d.mu.Unlock()
	}()
	return s.Sync()
}

func (d *deviceOps) hook(sb Superblock) func(Op, int64, int) error {
	return func(op Op, off int64, n int) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch {
		case op == OpSync:
			d.syncs++
		case op != OpWrite:
		case off >= int64(sb.DataOffset):
			d.data++
		case off >= int64(sb.JournalOffset):
			d.journal++
			if d.inSync {
				d.syncJournal++
			}
		case off >= metaOffset:
			d.records++
		}
		return nil
	}
}

func (d *deviceOps) per(ops int) [4]float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := float64(ops)
	return [4]float64{float64(d.data) / f, float64(d.journal) / f, float64(d.records) / f, float64(d.syncs) / f}
}

// TestDeviceOpsPerWrite counts device writes (data, journal, records)
// and device syncs per operation in steady state: 4 KiB overwrites each
// followed by a Sync (NBD write+flush), 4 KiB overwrites synced every
// 256, and whole-chunk (1 MiB) overwrites synced every 8, over 32
// prefilled chunks. The counts are deterministic for a seed; the bounds
// below are what the format promises (see docs/scribe.md). It also
// counts the journal writes made inside Sync: none when writes are
// flushed one by one (each pairs the open block with its data, so the
// Sync only syncs the device).
func TestDeviceOpsPerWrite(t *testing.T) { onDevices(t, testDeviceOpsPerWrite) }

func testDeviceOpsPerWrite(t *testing.T, dopts FileOptions) {
	sd := seed(t)
	const extents = 32
	rows := []struct {
		name      string
		ops       int
		size      int64
		syncEvery int
		// upper bounds per op: device writes (all regions), record
		// writes, syncs, journal writes inside Sync
		maxWrites, maxRecords, maxSyncs, maxSyncJournal float64
	}{
		{"4k write+flush", 2000, BlockSize, 1, 2.02, 0.01, 1, 0.01},
		{"4k write, flush every 256", 2000, BlockSize, 256, 1.02, 0.01, 0.01, 0.01},
		{"1M write, flush every 8", 200, DefaultChunkSize, 8, 1.5, 0.01, 0.13, 0.13},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %8s %8s %8s %8s %8s\n", "per op", "data", "journal", "records", "syncs", "in sync")
	for _, row := range rows {
		_, dev := newDisk(t, 64<<20, dopts)
		fp := NewFailpointDevice(noSync{dev})
		s := formatOpen(t, fp)
		ctx := context.Background()
		r := rand.New(rand.NewPCG(sd, 3))
		p := make([]byte, row.size)
		for e := range extents {
			if err := s.Write(ctx, ChunkKey{VSD: ID{9}, Extent: uint64(e)}, 1, 0, make([]byte, DefaultChunkSize), false); err != nil {
				t.Fatal(err)
			}
		}
		op := func() {
			k := ChunkKey{VSD: ID{9}, Extent: uint64(r.IntN(extents))}
			off := r.Int64N(DefaultChunkSize/row.size) * row.size
			for i := 0; i < len(p); i += BlockSize {
				binary.LittleEndian.PutUint64(p[i:], r.Uint64()) // a new checksum per block
			}
			if err := s.Write(ctx, k, 1, off, p, false); err != nil {
				t.Fatal(err)
			}
		}
		// Warm up (every chunk journaled once), then count.
		for i := range 2 * extents {
			op()
			if (i+1)%row.syncEvery == 0 {
				if err := s.Sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
		var d deviceOps
		fp.Set(d.hook(s.Superblock()))
		for i := range row.ops {
			op()
			if (i+1)%row.syncEvery == 0 {
				if err := d.sync(s); err != nil {
					t.Fatal(err)
				}
			}
		}
		fp.Set(nil)
		got := d.per(row.ops)
		inSync := float64(d.syncJournal) / float64(row.ops)
		fmt.Fprintf(&table, "%-28s %8.3f %8.3f %8.3f %8.3f %8.3f\n", row.name, got[0], got[1], got[2], got[3], inSync)
		if w := got[0] + got[1] + got[2]; w > row.maxWrites || got[2] > row.maxRecords || got[3] > row.maxSyncs {
			t.Errorf("%s: %.3f device writes (%.3f records) and %.3f syncs per op; want at most %.2f (%.2f) and %.2f", row.name, w, got[2], got[3], row.maxWrites, row.maxRecords, row.maxSyncs)
		}
		if inSync > row.maxSyncJournal {
			t.Errorf("%s: %.3f journal writes per op inside Sync, want at most %.2f", row.name, inSync, row.maxSyncJournal)
		}
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	t.Logf("device operations per op (seed %d):\n%s", sd, table.String())
}

// BenchmarkWriteFlush is 4 KiB overwrite + Sync (NBD write+flush at
// queue depth 1) on an O_DIRECT file disk whose every block is allocated
// first (as on a block device, unlike a sparse file), over 32 prefilled
// chunks. It reports CPU time per op (user+system of the process).
//
//	go test -run '^$' -bench WriteFlush -benchtime 3000x ./scribe/internal/chunkstore/
func BenchmarkWriteFlush(b *testing.B) {
	const size, extents = 64 << 20, 32
	path := filepath.Join(b.TempDir(), "disk")
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		b.Fatal(err)
	}
	dev, err := OpenFile(path, FileOptions{Direct: true})
	if err != nil {
		b.Skipf("O_DIRECT: %v", err)
	}
	if _, err := Format(dev, FormatOptions{}); err != nil {
		b.Fatal(err)
	}
	s, err := Open(dev)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for e := range extents {
		if err := s.Write(ctx, ChunkKey{VSD: ID{9}, Extent: uint64(e)}, 1, 0, make([]byte, DefaultChunkSize), true); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, BlockSize)
	op := func() {
		binary.LittleEndian.PutUint64(p, r.Uint64())
		k := ChunkKey{VSD: ID{9}, Extent: uint64(r.IntN(extents))}
		if err := s.Write(ctx, k, 1, r.Int64N(DefaultChunkSize/BlockSize)*BlockSize, p, false); err != nil {
			b.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	for range 2 * extents {
		op()
	}
	cpu0 := processCPU()
	b.ResetTimer()
	for range b.N {
		op()
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSyncWithNothingNew: a Sync after a Sync, with no write between,
// touches the device not at all (no open-block write, no fdatasync). An
// overwrite soon after a Sync (at most syncSoonWrites since it, the one
// before came that soon too) writes the open block with its data, in one
// pair, so its Sync only syncs; past that, overwrites write only their
// data and the Sync writes the open block once (with every entry) and
// syncs once. The last entry survives a crash and reopen.
func TestSyncWithNothingNew(t *testing.T) { onDevices(t, testSyncWithNothingNew) }

func testSyncWithNothingNew(t *testing.T, dopts FileOptions) {
	path, dev := newDisk(t, 64<<20, dopts)
	fp := NewFailpointDevice(dev)
	s := formatOpen(t, fp)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{9}, Extent: 3}
	if err := s.Write(ctx, k, 1, 0, make([]byte, DefaultChunkSize), true); err != nil {
		t.Fatal(err)
	}
	// ops counts the device operations of f (data, journal, records,
	// syncs).
	ops := func(f func() error) [4]float64 {
		var d deviceOps
		fp.Set(d.hook(s.Superblock()))
		defer fp.Set(nil)
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return d.per(1)
	}
	overwrite := func(b byte) func() error {
		return func() error {
			return s.Write(ctx, k, 1, 8*BlockSize, bytes.Repeat([]byte{b}, BlockSize), false)
		}
	}
	steps := []struct {
		name string
		f    func() error
		want [4]float64
	}{
		// The chunk's first overwrite writes (and waits for) its mark,
		// which takes its entry along: its Sync only syncs.
		{"first overwrite", overwrite(1), [4]float64{1, 1, 0, 0}},
		{"its sync", s.Sync, [4]float64{0, 0, 0, 1}},
		// Right after a Sync: the entry goes with the data.
		{"overwrite after a sync", overwrite(2), [4]float64{1, 1, 0, 0}},
		{"its sync", s.Sync, [4]float64{0, 0, 0, 1}},
		{"sync, nothing new", s.Sync, [4]float64{0, 0, 0, 0}},
		{"sync, nothing new again", s.Sync, [4]float64{0, 0, 0, 0}},
	}
	for i := range syncSoonWrites + 2 {
		want := [4]float64{1, 1, 0, 0}
		if i >= syncSoonWrites {
			want = [4]float64{1, 0, 0, 0} // no Sync soon: the data alone
		}
		steps = append(steps, struct {
			name string
			f    func() error
			want [4]float64
		}{fmt.Sprintf("overwrite %d of a run", i), overwrite(byte(10 + i)), want})
	}
	steps = append(steps, []struct {
		name string
		f    func() error
		want [4]float64
	}{
		{"sync after the run", s.Sync, [4]float64{0, 1, 0, 1}},
		// That Sync came late: the next overwrite goes alone.
		{"overwrite after a late sync", overwrite(3), [4]float64{1, 0, 0, 0}},
		{"its sync", s.Sync, [4]float64{0, 1, 0, 1}},
	}...)
	for _, st := range steps {
		if got := ops(st.f); got != st.want {
			t.Errorf("%s: %v device ops (data, journal, records, syncs), want %v", st.name, got, st.want)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// Crash (no Close: no checkpoint) and reopen: the last overwrite's
	// checksum comes from the journal's open block.
	abandon(s)
	s2 := reopen(t, path, dopts)
	defer s2.Close()
	got := make([]byte, BlockSize)
	if err := s2.Read(ctx, k, 8*BlockSize, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{3}, BlockSize)) {
		t.Fatalf("after reopen block 8 holds %x…, want 03…", got[:4])
	}
	if err := s2.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
