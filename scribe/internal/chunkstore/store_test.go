package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// newDisk returns a sparse zero file of size bytes opened as a Device.
func newDisk(t *testing.T, size int64, opts ...FileOptions) (string, Device) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	dev, err := OpenFile(path, append(opts, FileOptions{})[0])
	if errors.Is(err, ErrNoUring) {
		t.Skipf("io_uring is unavailable here, so RingDevice cannot be tested (OpenFile falls back to FileDevice): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, dev
}

// modes are the device modes storage tests run in.
var modes = []struct {
	name string
	opts FileOptions
}{
	{"buffered", FileOptions{IO: IOSyscalls}},
	{"direct", FileOptions{Direct: true, IO: IOSyscalls}},
	{"direct io_uring", FileOptions{Direct: true, IO: IOUring}},
}

// devices are the Device implementations the suite runs on: FileDevice
// and RingDevice, both buffered (the direct ones run in modes).
var devices = []struct {
	name string
	opts FileOptions
}{{"file", FileOptions{IO: IOSyscalls}}, {"uring", FileOptions{IO: IOUring}}}

// onDevices runs test as a subtest on each of devices.
func onDevices(t *testing.T, test func(t *testing.T, dopts FileOptions)) {
	for _, d := range devices {
		t.Run(d.name, func(t *testing.T) { test(t, d.opts) })
	}
}

// openStore formats and opens a store, checked and closed in cleanup.
func openStore(t *testing.T, size int64, opts ...FileOptions) (string, *Store) {
	t.Helper()
	path, dev := newDisk(t, size, opts...)
	if _, err := Format(dev, FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return // the test reopened the disk and checks the new store
		}
		if err := s.Check(context.Background()); err != nil {
			t.Errorf("check: %v", err)
		}
		s.Close()
	})
	return path, s
}

func reopen(t *testing.T, path string, opts ...FileOptions) *Store {
	t.Helper()
	dev, err := OpenFile(path, append(opts, FileOptions{})[0])
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFormatRefusesData(t *testing.T) { onDevices(t, testFormatRefusesData) }

func testFormatRefusesData(t *testing.T, dopts FileOptions) {
	tests := []struct {
		name   string
		prep   func(t *testing.T, dev Device)
		size   int64
		force  bool
		wantIs error
	}{
		{"blank disk", func(*testing.T, Device) {}, 64 << 20, false, nil},
		{"foreign data", func(t *testing.T, d Device) { d.WriteAt([]byte("ext4 superblock"), 1024) }, 64 << 20, false, ErrForeignData},
		{"foreign data with force", func(t *testing.T, d Device) { d.WriteAt([]byte("ext4"), 1024) }, 64 << 20, true, nil},
		{"already formatted", func(t *testing.T, d Device) { Format(d, FormatOptions{}) }, 64 << 20, false, ErrFormatted},
		{"already formatted with force", func(t *testing.T, d Device) { Format(d, FormatOptions{}) }, 64 << 20, true, nil},
		{"too small", func(*testing.T, Device) {}, 1 << 20, false, ErrTooSmall},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dev := newDisk(t, tt.size, dopts)
			defer dev.Close()
			tt.prep(t, dev)
			before := make([]byte, 8192)
			dev.ReadAt(before, 0)
			_, err := Format(dev, FormatOptions{Force: tt.force})
			if !errors.Is(err, tt.wantIs) || (err != nil) != (tt.wantIs != nil) {
				t.Fatalf("format: %v; want %v", err, tt.wantIs)
			}
			after := make([]byte, 8192)
			dev.ReadAt(after, 0)
			if err != nil && !bytes.Equal(before, after) {
				t.Error("a refused format changed the disk")
			}
			if err == nil {
				s, err := Open(dev)
				if err != nil {
					t.Fatalf("open after format: %v", err)
				}
				if st := s.Stats(); st.Used != 0 || st.Chunks == 0 {
					t.Errorf("fresh store stats %+v", st)
				}
				if err := s.Check(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestSuperblockBackup(t *testing.T) { onDevices(t, testSuperblockBackup) }

func testSuperblockBackup(t *testing.T, dopts FileOptions) {
	path, dev := newDisk(t, 32<<20, dopts)
	sb, err := Format(dev, FormatOptions{NodeID: ID{1}, ClusterID: ID{2}})
	if err != nil {
		t.Fatal(err)
	}
	dev.WriteAt([]byte("rot"), 100)
	dev.Close()
	s := reopen(t, path, dopts)
	defer s.Close()
	if diff := cmp.Diff(sb, s.Superblock()); diff != "" {
		t.Errorf("superblock from backup (-want +got):\n%s", diff)
	}
	if err := s.Check(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("check with a rotten primary superblock: %v; want ErrCorrupt", err)
	}
}

func TestWriteReadPersist(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { testWriteReadPersist(t, m.opts) })
	}
}

func testWriteReadPersist(t *testing.T, opts FileOptions) {
	path, s := openStore(t, 64<<20, opts)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{9}, Extent: 3}
	want := make([]byte, DefaultChunkSize)
	write := func(off int64, p []byte) {
		t.Helper()
		if err := s.Write(ctx, k, 1, off, p, false); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	write(0, bytes.Repeat([]byte{0xab}, 8192))
	write(5000, bytes.Repeat([]byte{0xcd}, 100))    // inside one block
	write(12000, bytes.Repeat([]byte{0xef}, 70000)) // unaligned, several blocks
	write(DefaultChunkSize-4096, bytes.Repeat([]byte{1}, 4096))
	write(5000, bytes.Repeat([]byte{0x11}, 50)) // overwrite
	got := make([]byte, DefaultChunkSize)
	if err := s.Read(ctx, k, 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read differs from writes")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := reopen(t, path, opts)
	defer s2.Close()
	clear(got)
	if err := s2.Read(ctx, k, 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read after reopen differs")
	}
	if got := s2.Chunks(ID{9}); len(got) != 1 || got[0].Key != k || got[0].Epoch != 1 {
		t.Errorf("chunks of VSD 9 after reopen: %+v; want extent 3 at epoch 1", got)
	}
	// Overwrite after reopen exercises the unknown-slot path.
	if err := s2.Write(ctx, k, 1, 0, bytes.Repeat([]byte{0x22}, 4096), true); err != nil {
		t.Fatal(err)
	}
	if err := s2.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Read(ctx, ChunkKey{VSD: ID{9}, Extent: 4}, 0, got); err != nil || !bytes.Equal(got, make([]byte, len(got))) {
		t.Errorf("absent chunk: err %v, nonzero %v", err, !bytes.Equal(got, make([]byte, len(got))))
	}
}

func TestZeroFreesSpace(t *testing.T) { onDevices(t, testZeroFreesSpace) }

func testZeroFreesSpace(t *testing.T, dopts FileOptions) {
	_, s := openStore(t, 32<<20, dopts)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{1}, Extent: 0}
	s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{7}, 3*BlockSize), false)
	if err := s.Zero(ctx, k, 1, 100, BlockSize, false); err != nil { // partial + partial
		t.Fatal(err)
	}
	got := make([]byte, 3*BlockSize)
	s.Read(ctx, k, 0, got)
	want := bytes.Repeat([]byte{7}, 3*BlockSize)
	clear(want[100 : 100+BlockSize])
	if !bytes.Equal(got, want) {
		t.Error("partial zero: wrong content")
	}
	if err := s.Zero(ctx, k, 1, 0, 3*BlockSize, false); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Used != 0 {
		t.Errorf("zeroing every written block left %d chunks used", st.Used)
	}
}

func TestStaleEpochRefused(t *testing.T) { onDevices(t, testStaleEpochRefused) }

func testStaleEpochRefused(t *testing.T, dopts FileOptions) {
	_, s := openStore(t, 32<<20, dopts)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{1}, Extent: 0}
	if err := s.Write(ctx, k, 5, 0, []byte("new owner"), false); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"write": s.Write(ctx, k, 4, 0, []byte("old owner"), false),
		"zero":  s.Zero(ctx, k, 4, 0, BlockSize, false),
		"free":  s.Free(ctx, k, 4),
	} {
		if !errors.Is(err, ErrStaleEpoch) {
			t.Errorf("%s at an older epoch: %v; want ErrStaleEpoch", name, err)
		}
	}
	got := make([]byte, 9)
	s.Read(ctx, k, 0, got)
	if string(got) != "new owner" {
		t.Errorf("content after refused writes: %q", got)
	}
}

func TestBitRotDetected(t *testing.T) { onDevices(t, testBitRotDetected) }

func testBitRotDetected(t *testing.T, dopts FileOptions) {
	path, s := openStore(t, 32<<20, dopts)
	ctx := context.Background()
	k := ChunkKey{VSD: ID{1}, Extent: 0}
	s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{7}, 2*BlockSize), true)
	info, _ := s.Info(k)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{8}, s.sb.chunkOffset(info.Slot)+BlockSize+17)
	f.Close()
	got := make([]byte, 2*BlockSize)
	if err := s.Read(ctx, k, 0, got); !errors.Is(err, ErrChecksum) {
		t.Errorf("read of a rotten block: %v; want ErrChecksum", err)
	}
	if err := s.Read(ctx, k, 0, got[:BlockSize]); err != nil {
		t.Errorf("read of the good block: %v", err)
	}
	if err := s.Check(ctx); !errors.Is(err, ErrChecksum) {
		t.Errorf("check: %v; want ErrChecksum", err)
	}
	// Rewriting the block repairs it.
	if err := s.Write(ctx, k, 1, BlockSize, bytes.Repeat([]byte{9}, BlockSize), false); err != nil {
		t.Fatal(err)
	}
}

func TestFailpointEIO(t *testing.T) { onDevices(t, testFailpointEIO) }

func testFailpointEIO(t *testing.T, dopts FileOptions) {
	_, dev := newDisk(t, 32<<20, dopts)
	fp := NewFailpointDevice(dev)
	if _, err := Format(fp, FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	k := ChunkKey{VSD: ID{1}, Extent: 2}
	s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{1}, BlockSize), false)
	for _, op := range []Op{OpWrite, OpSync, OpRead} {
		fp.Set(func(o Op, off int64, n int) error {
			if o == op {
				return syscall.EIO
			}
			return nil
		})
		var err error
		switch op {
		case OpWrite:
			err = s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{2}, BlockSize), false)
		case OpSync:
			err = s.Write(ctx, k, 1, 0, bytes.Repeat([]byte{3}, BlockSize), true)
		case OpRead:
			err = s.Read(ctx, k, 0, make([]byte, BlockSize))
		}
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%v failpoint: %v; want EIO", op, err)
		}
	}
	fp.Set(nil)
	// A failed write to a fresh chunk gives the slot back.
	fp.Set(func(o Op, off int64, n int) error {
		if o == OpWrite {
			return syscall.ENOSPC
		}
		return nil
	})
	if err := s.Write(ctx, ChunkKey{VSD: ID{1}, Extent: 3}, 1, 0, []byte{1}, false); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write with ENOSPC: %v", err)
	}
	fp.Set(nil)
	if st := s.Stats(); st.Used != 1 {
		t.Errorf("used chunks %d after a failed first write; want 1", st.Used)
	}
	got := make([]byte, BlockSize)
	if err := s.Read(ctx, k, 0, got); err != nil {
		t.Fatalf("read after failures: %v", err)
	}
	if got[0] != 1 && got[0] != 2 && got[0] != 3 {
		t.Errorf("block holds %d; want one of the written values", got[0])
	}
	if err := s.Check(ctx); err != nil {
		t.Error(err)
	}
}

func seed(t *testing.T) uint64 {
	t.Helper()
	v := uint64(rand.Uint32())
	if s := os.Getenv("SHOAL_SEED"); s != "" {
		var err error
		if v, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SHOAL_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (rerun with SHOAL_SEED=%d)", v, v)
	return v
}

func TestConcurrentRandomOps(t *testing.T) {
	sd := seed(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { testConcurrentRandomOps(t, sd, m.opts) })
	}
}

func testConcurrentRandomOps(t *testing.T, sd uint64, opts FileOptions) {
	_, s := openStore(t, 64<<20, opts)
	ctx := context.Background()
	const extents = 4
	var wg sync.WaitGroup
	// Each worker owns distinct extents, so the final content is known.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(sd, uint64(w)))
			model := make([][]byte, extents)
			for i := range model {
				model[i] = make([]byte, DefaultChunkSize)
			}
			for range 300 {
				e := r.IntN(extents)
				k := ChunkKey{VSD: ID{byte(w)}, Extent: uint64(e)}
				off := r.Int64N(DefaultChunkSize - 1)
				n := 1 + r.Int64N(min(DefaultChunkSize-off, 64<<10))
				switch r.IntN(10) {
				case 0:
					if err := s.Zero(ctx, k, 1, off, n, false); err != nil {
						t.Error(err)
						return
					}
					clear(model[e][off : off+n])
				default:
					p := make([]byte, n)
					for i := range p {
						p[i] = byte(r.Uint32())
					}
					if err := s.Write(ctx, k, 1, off, p, r.IntN(20) == 0); err != nil {
						t.Error(err)
						return
					}
					copy(model[e][off:], p)
				}
				got := make([]byte, n)
				if err := s.Read(ctx, k, off, got); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got, model[e][off:off+n]) {
					t.Errorf("worker %d extent %d [%d,+%d): read differs from model", w, e, off, n)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestSyncGroupsAndReportsErrors(t *testing.T) { onDevices(t, testSyncGroupsAndReportsErrors) }

func testSyncGroupsAndReportsErrors(t *testing.T, dopts FileOptions) {
	_, dev := newDisk(t, 32<<20, dopts)
	fp := NewFailpointDevice(dev)
	if _, err := Format(fp, FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	syncs := 0
	fp.Set(func(o Op, _ int64, _ int) error {
		if o == OpSync {
			mu.Lock()
			syncs++
			mu.Unlock()
		}
		return nil
	})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Sync(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if syncs < 1 || syncs > 16 {
		t.Errorf("%d device syncs for 16 callers", syncs)
	}
	// Nothing written since: no device sync.
	before := syncs
	if err := s.Sync(); err != nil || syncs != before {
		t.Errorf("sync with nothing written: %v, %d device syncs; want none", err, syncs-before)
	}
	if err := s.Write(context.Background(), ChunkKey{VSD: ID{1}}, 1, 0, []byte{1}, false); err != nil {
		t.Fatal(err)
	}
	fp.Set(func(o Op, _ int64, _ int) error {
		if o == OpSync {
			return syscall.EIO
		}
		return nil
	})
	if err := s.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("sync with a failing device: %v; want EIO", err)
	}
	fp.Set(nil)
	if err := s.Sync(); err != nil {
		t.Errorf("sync after the device recovered: %v", err)
	}
}

func TestChunkSizes(t *testing.T) { onDevices(t, testChunkSizes) }

func testChunkSizes(t *testing.T, dopts FileOptions) {
	for _, cs := range []uint32{32 << 10, 1 << 20, MaxChunkSize} {
		t.Run(strconv.Itoa(int(cs)), func(t *testing.T) {
			path, dev := newDisk(t, 64<<20, dopts)
			if _, err := Format(dev, FormatOptions{ChunkSize: cs}); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dev)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			k := ChunkKey{VSD: ID{1}, Extent: 1}
			p := bytes.Repeat([]byte{0x3c}, int(cs)-100)
			if err := s.Write(ctx, k, 1, 50, p, true); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = reopen(t, path, dopts)
			defer s.Close()
			got := make([]byte, len(p))
			if err := s.Read(ctx, k, 50, got); err != nil || !bytes.Equal(got, p) {
				t.Errorf("read back: %v, equal %v", err, bytes.Equal(got, p))
			}
			if err := s.Check(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	_, dev := newDisk(t, 64<<20, dopts)
	if _, err := Format(dev, FormatOptions{ChunkSize: 16 << 20}); err == nil {
		t.Error("format accepted a 16 MiB chunk size")
	}
}
