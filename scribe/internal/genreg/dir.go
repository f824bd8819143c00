package genreg

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

const suffix = ".reg"

// compactAbove: a file larger than this and than four times its live
// content is rewritten.
const compactAbove = 1 << 20

// Dir is the register of one node: a directory of per-VSD files.
type Dir struct {
	path string
	// compactAt: a file larger than this and than four times its live
	// content is rewritten (compactAbove; tests lower it).
	compactAt int64

	mu     sync.Mutex
	closed bool
	files  map[chunkstore.ID]*file
}

type file struct {
	mu   sync.Mutex
	path string
	f    *os.File // nil until the first write
	size int64
	st   state
}

// Open loads the register kept in path, creating the directory if needed.
// A file with a bad header fails Open (it is not ours: move it away); a
// torn tail is cut off.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("generation register dir: %w", err)
	}
	d := &Dir{path: path, compactAt: compactAbove, files: map[chunkstore.ID]*file{}}
	names, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("generation register dir: %w", err)
	}
	for _, n := range names {
		vsd, ok := parseName(n.Name())
		if !ok {
			continue
		}
		f, err := load(filepath.Join(path, n.Name()))
		if err != nil {
			d.Close()
			return nil, err
		}
		d.files[vsd] = f
	}
	return d, nil
}

func parseName(name string) (chunkstore.ID, bool) {
	var id chunkstore.ID
	h, ok := strings.CutSuffix(name, suffix)
	if !ok {
		return id, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

func load(path string) (*file, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read generation register %q: %w", path, err)
	}
	st, valid, err := replay(b)
	if err != nil {
		return nil, fmt.Errorf("generation register %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open generation register %q: %w", path, err)
	}
	if valid < int64(len(b)) {
		if err := f.Truncate(valid); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut the torn tail of generation register %q: %w", path, err)
		}
	}
	return &file{path: path, f: f, size: valid, st: st}, nil
}

func (d *Dir) file(vsd chunkstore.ID) (*file, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	f := d.files[vsd]
	if f == nil {
		f = &file{path: filepath.Join(d.path, vsd.String()+suffix), st: state{entries: map[uint64]Entry{}}}
		d.files[vsd] = f
	}
	return f, nil
}

// Fence raises vsd's epoch to epoch, durably. It fails with
// chunkstore.ErrStaleEpoch when the register has seen a newer epoch.
func (d *Dir) Fence(ctx context.Context, vsd chunkstore.ID, epoch uint64) error {
	return d.Put(ctx, vsd, epoch, nil)
}

// Read fences vsd at epoch (see Fence) and returns its entries in extent
// order. Epoch 0 reads without fencing (a reader of a read-only VSD).
func (d *Dir) Read(ctx context.Context, vsd chunkstore.ID, epoch uint64) ([]Entry, error) {
	if epoch > 0 {
		if err := d.Fence(ctx, vsd, epoch); err != nil {
			return nil, err
		}
	}
	f, err := d.file(vsd)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Entry, 0, len(f.st.entries))
	for _, e := range f.st.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Extent, b.Extent) })
	return out, nil
}

// Put records es for vsd at epoch, durably (entries with a generation no
// higher than the one held change nothing). It fails with
// chunkstore.ErrStaleEpoch, changing nothing, when the register has seen
// a newer epoch.
func (d *Dir) Put(ctx context.Context, vsd chunkstore.ID, epoch uint64, es []Entry) error {
	if len(es) > maxRecordEntries {
		return fmt.Errorf("register %d entries, at most %d at once: %w", len(es), maxRecordEntries, ErrBadEntry)
	}
	for _, e := range es {
		if e.Gen == 0 {
			return fmt.Errorf("register extent %d at generation 0: %w", e.Extent, ErrBadEntry)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := d.file(vsd)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch < f.st.epoch {
		return fmt.Errorf("register for VSD %s at epoch %d, already at %d: %w", vsd, epoch, f.st.epoch, chunkstore.ErrStaleEpoch)
	}
	var news []Entry
	for _, e := range es {
		if cur, ok := f.st.entries[e.Extent]; !ok || e.Gen > cur.Gen {
			news = append(news, e)
		}
	}
	if epoch == f.st.epoch && len(news) == 0 && f.f != nil {
		return nil
	}
	if err := f.append(d.path, encodeRecord(epoch, news)); err != nil {
		return fmt.Errorf("register for VSD %s: %w", vsd, err)
	}
	f.st.merge(epoch, news)
	if live := int64(fileHeader + recHeader + EntrySize*len(f.st.entries)); f.size > d.compactAt && f.size > 4*live {
		if err := f.compact(d.path); err != nil {
			return fmt.Errorf("register for VSD %s: %w", vsd, err)
		}
	}
	return nil
}

// append writes rec at the end of the file (creating it) and syncs.
func (f *file) append(dir string, rec []byte) error {
	if f.f == nil {
		if err := f.create(dir, nil); err != nil {
			return err
		}
	}
	if _, err := f.f.WriteAt(rec, f.size); err != nil {
		f.f.Truncate(f.size)
		return fmt.Errorf("append: %w", err)
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	f.size += int64(len(rec))
	return nil
}

// create writes a new file holding the header and rec, syncs it, renames
// it into place and syncs the directory.
func (f *file) create(dir string, rec []byte) error {
	tmp := f.path + ".tmp"
	nf, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	b := append(encodeFileHeader(), rec...)
	if _, err = nf.Write(b); err == nil {
		err = nf.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		nf.Close()
		os.Remove(tmp)
		return fmt.Errorf("create: %w", err)
	}
	if f.f != nil {
		f.f.Close()
	}
	f.f, f.size = nf, int64(len(b))
	return nil
}

// compact rewrites the file with one record holding the live state.
func (f *file) compact(dir string) error {
	es := make([]Entry, 0, len(f.st.entries))
	for _, e := range f.st.entries {
		es = append(es, e)
	}
	var rec []byte
	for len(es) > maxRecordEntries {
		rec = append(rec, encodeRecord(f.st.epoch, es[:maxRecordEntries])...)
		es = es[maxRecordEntries:]
	}
	return f.create(dir, append(rec, encodeRecord(f.st.epoch, es)...))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Epochs returns the epoch of every VSD in the register.
func (d *Dir) Epochs() map[chunkstore.ID]uint64 {
	d.mu.Lock()
	fs := make(map[chunkstore.ID]*file, len(d.files))
	for id, f := range d.files {
		fs[id] = f
	}
	d.mu.Unlock()
	out := map[chunkstore.ID]uint64{}
	for id, f := range fs {
		f.mu.Lock()
		if f.f != nil {
			out[id] = f.st.epoch
		}
		f.mu.Unlock()
	}
	return out
}

// Remove deletes vsd's register (the VSD was deleted).
func (d *Dir) Remove(vsd chunkstore.ID) error {
	d.mu.Lock()
	f := d.files[vsd]
	delete(d.files, vsd)
	d.mu.Unlock()
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f != nil {
		f.f.Close()
		f.f = nil
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove generation register: %w", err)
	}
	return syncDir(d.path)
}

// Check re-reads every file and compares it with the register in memory.
func (d *Dir) Check() error {
	d.mu.Lock()
	fs := make(map[chunkstore.ID]*file, len(d.files))
	for id, f := range d.files {
		fs[id] = f
	}
	d.mu.Unlock()
	var errs []error
	for id, f := range fs {
		f.mu.Lock()
		if f.f != nil {
			b, err := os.ReadFile(f.path)
			if err != nil {
				errs = append(errs, err)
			} else if st, valid, err := replay(b); err != nil {
				errs = append(errs, fmt.Errorf("VSD %s: %w", id, err))
			} else if valid != int64(len(b)) || valid != f.size {
				errs = append(errs, fmt.Errorf("VSD %s: %d valid bytes of %d, expected %d: %w", id, valid, len(b), f.size, ErrCorrupt))
			} else if st.epoch != f.st.epoch || !equalEntries(st.entries, f.st.entries) {
				errs = append(errs, fmt.Errorf("VSD %s: file and memory differ: %w", id, ErrCorrupt))
			}
		}
		f.mu.Unlock()
	}
	return errors.Join(errs...)
}

func equalEntries(a, b map[uint64]Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Close closes the files; later calls fail with ErrClosed.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	var errs []error
	for _, f := range d.files {
		f.mu.Lock()
		if f.f != nil {
			errs = append(errs, f.f.Close())
			f.f = nil
		}
		f.mu.Unlock()
	}
	return errors.Join(errs...)
}
