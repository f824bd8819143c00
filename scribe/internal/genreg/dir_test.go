package genreg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

var (
	vsd  = chunkstore.ID{1}
	vsd2 = chunkstore.ID{2}
	d1   = chunkstore.ID{0xd1}
	d2   = chunkstore.ID{0xd2}
)

func entry(ext, gen uint64, ms ...chunkstore.ID) Entry {
	e := Entry{Extent: ext, Gen: gen}
	copy(e.Members[:], ms)
	return e
}

func openDir(t *testing.T, path string) *Dir {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		d.Close()
	})
	return d
}

func TestPutReadFenceReopen(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir()
	d := openDir(t, path)
	steps := []struct {
		name  string
		epoch uint64
		put   []Entry
		err   error
	}{
		{"first drop", 1, []Entry{entry(3, 1<<32+1, d1), entry(7, 1<<32+2, d2)}, nil},
		{"newer gen replaces", 1, []Entry{entry(3, 1<<32+5, d2)}, nil},
		{"older gen ignored", 1, []Entry{entry(7, 1<<32, d1)}, nil},
		{"newer epoch", 2, []Entry{entry(9, 2<<32, d1, d2)}, nil},
		{"stale epoch refused", 1, []Entry{entry(9, 3<<32, d1)}, chunkstore.ErrStaleEpoch},
		{"generation 0 refused", 2, []Entry{entry(1, 0)}, ErrBadEntry},
	}
	for _, s := range steps {
		if err := d.Put(ctx, vsd, s.epoch, s.put); !errors.Is(err, s.err) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.err)
		}
	}
	want := []Entry{entry(3, 1<<32+5, d2), entry(7, 1<<32+2, d2), entry(9, 2<<32, d1, d2)}
	got, err := d.Read(ctx, vsd, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("entries (-want +got):\n%s", diff)
	}
	if _, err := d.Read(ctx, vsd, 1); !errors.Is(err, chunkstore.ErrStaleEpoch) {
		t.Fatalf("read at an older epoch: %v, want stale epoch", err)
	}
	// A read fences: after Read at 4, a Put at 3 is refused.
	if _, err := d.Read(ctx, vsd2, 4); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, vsd2, 3, []Entry{entry(1, 1, d1)}); !errors.Is(err, chunkstore.ErrStaleEpoch) {
		t.Fatalf("put after a newer read: %v", err)
	}
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2 := openDir(t, path)
	got, err = d2.Read(ctx, vsd, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[chunkstore.ID]uint64{vsd: 2, vsd2: 4}, d2.Epochs()); diff != "" {
		t.Fatalf("epochs (-want +got):\n%s", diff)
	}
	if err := d2.Remove(vsd); err != nil {
		t.Fatal(err)
	}
	if got, _ := d2.Read(ctx, vsd, 0); len(got) != 0 {
		t.Fatalf("after Remove: %v", got)
	}
}

// TestTornTail cuts the file at every length inside its last record (a
// crash while appending): reopening yields the state before that record,
// and the register works on.
func TestTornTail(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	d := openDir(t, src)
	if err := d.Put(ctx, vsd, 1, []Entry{entry(1, 10, d1)}); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(src, vsd.String()+suffix)
	before, _ := os.ReadFile(name)
	if err := d.Put(ctx, vsd, 2, []Entry{entry(1, 11, d2), entry(2, 12, d1)}); err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(name)
	for cut := len(before); cut < len(full); cut++ {
		dir := t.TempDir()
		torn := append([]byte(nil), full[:cut]...)
		if cut > len(before) && cut%7 == 0 {
			torn[cut-1] ^= 0x55 // garbage instead of a short tail
		}
		if err := os.WriteFile(filepath.Join(dir, vsd.String()+suffix), torn, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(dir)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		got, err := r.Read(ctx, vsd, 1)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if diff := cmp.Diff([]Entry{entry(1, 10, d1)}, got); diff != "" {
			t.Fatalf("cut at %d (-want +got):\n%s", cut, diff)
		}
		if err := r.Put(ctx, vsd, 1, []Entry{entry(5, 20, d1)}); err != nil {
			t.Fatalf("cut at %d: put: %v", cut, err)
		}
		if err := r.Check(); err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		r.Close()
	}
}

func TestCompaction(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir()
	d := openDir(t, path)
	d.compactAt = 4096
	var want []Entry
	for i := range 400 {
		e := entry(uint64(i%50), uint64(i+1), d1)
		if err := d.Put(ctx, vsd, 1, []Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		want = append(want, entry(uint64(i), uint64(350+i+1), d1))
	}
	fi, err := os.Stat(filepath.Join(path, vsd.String()+suffix))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 4*4096 {
		t.Fatalf("file of %d bytes after 400 puts of 50 live entries: never compacted", fi.Size())
	}
	d.Close()
	r := openDir(t, path)
	got, err := r.Read(ctx, vsd, 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestBadHeaderRefused(t *testing.T) {
	path := t.TempDir()
	if err := os.WriteFile(filepath.Join(path, vsd.String()+suffix), []byte("not a register file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open: %v, want ErrCorrupt", err)
	}
}

// FuzzReplay: register file bytes from disk never panic the decoder, and
// whatever prefix it accepts re-encodes to a file that replays the same.
func FuzzReplay(f *testing.F) {
	f.Add(encodeFileHeader())
	f.Add(append(encodeFileHeader(), encodeRecord(3, []Entry{entry(1, 2, d1), entry(5, 9, d1, d2)})...))
	f.Add(append(append(encodeFileHeader(), encodeRecord(1, nil)...), 0xff, 0xff, 0xff, 0x7f))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, valid, err := replay(b)
		if err != nil {
			return
		}
		if valid < fileHeader || valid > int64(len(b)) {
			t.Fatalf("valid prefix %d of %d bytes", valid, len(b))
		}
		var es []Entry
		for _, e := range st.entries {
			es = append(es, e)
		}
		again, n, err := replay(append(encodeFileHeader(), encodeRecord(st.epoch, es)...))
		if err != nil || n != int64(fileHeader+recHeader+EntrySize*len(es)) || again.epoch != st.epoch || !equalEntries(again.entries, st.entries) {
			t.Fatalf("re-encoded state differs: %v", err)
		}
	})
}

func FuzzDecodeEntries(f *testing.F) {
	f.Add(AppendEntry(nil, entry(1, 2, d1)))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := DecodeEntries(b)
		if err != nil {
			return
		}
		var out []byte
		for _, e := range es {
			out = AppendEntry(out, e)
		}
		if string(out) != string(b) {
			t.Fatalf("round trip differs")
		}
	})
}
