package nbd

import (
	"context"
	"fmt"
	"sync"
)

// memPage is the allocation unit of MemoryBackend.
const memPage = 4096

// MemoryBackend is a sparse in-memory Backend for tests: pages never
// written (or trimmed) are holes that read as zeroes.
type MemoryBackend struct {
	size int64

	mu    sync.RWMutex
	pages map[int64][]byte
	// Flushes counts Flush calls and FUA writes (for tests).
	flushes int
}

// NewMemoryBackend returns an empty export of size bytes.
func NewMemoryBackend(size int64) *MemoryBackend {
	return &MemoryBackend{size: size, pages: map[int64][]byte{}}
}

// Size implements Backend.
func (m *MemoryBackend) Size() int64 { return m.size }

// Flushes reports how many Flush calls and FUA writes were served.
func (m *MemoryBackend) Flushes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.flushes
}

// AllocatedBytes reports the bytes held in allocated pages.
func (m *MemoryBackend) AllocatedBytes() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.pages)) * memPage
}

func (m *MemoryBackend) inRange(off, n int64) error {
	if off < 0 || n < 0 || off+n > m.size || off+n < off {
		return fmt.Errorf("memory backend range [%d,+%d) outside %d bytes: %w", off, n, m.size, ErrInvalid)
	}
	return nil
}

// ReadAt implements Backend.
func (m *MemoryBackend) ReadAt(_ context.Context, p []byte, off int64) error {
	if err := m.inRange(off, int64(len(p))); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		pg, in := pos/memPage, pos%memPage
		n := min(int64(len(p)-done), memPage-in)
		if page, ok := m.pages[pg]; ok {
			copy(p[done:done+int(n)], page[in:])
		} else {
			clear(p[done : done+int(n)])
		}
		done += int(n)
	}
	return nil
}

// WriteAt implements Backend.
func (m *MemoryBackend) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if err := m.inRange(off, int64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		pg, in := pos/memPage, pos%memPage
		n := min(int64(len(p)-done), memPage-in)
		page, ok := m.pages[pg]
		if !ok {
			page = make([]byte, memPage)
			m.pages[pg] = page
		}
		copy(page[in:], p[done:done+int(n)])
		done += int(n)
	}
	if fua {
		m.flushes++
	}
	return nil
}

// Flush implements Backend.
func (m *MemoryBackend) Flush(context.Context) error {
	m.mu.Lock()
	m.flushes++
	m.mu.Unlock()
	return nil
}

// Trim implements Backend: it frees whole pages and zeroes partial ones.
func (m *MemoryBackend) Trim(ctx context.Context, off, length int64, fua bool) error {
	return m.WriteZeroes(ctx, off, length, ZeroFlags{FUA: fua})
}

// WriteZeroes implements Backend.
func (m *MemoryBackend) WriteZeroes(_ context.Context, off, length int64, f ZeroFlags) error {
	if err := m.inRange(off, length); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for pos := off; pos < off+length; {
		pg, in := pos/memPage, pos%memPage
		n := min(off+length-pos, memPage-in)
		page, ok := m.pages[pg]
		switch {
		case n == memPage && !f.NoHole:
			delete(m.pages, pg)
		case ok:
			clear(page[in : in+n])
		case f.NoHole:
			m.pages[pg] = make([]byte, memPage)
		}
		pos += n
	}
	return nil
}

// BlockStatus implements Backend.
func (m *MemoryBackend) BlockStatus(_ context.Context, off, length int64, maxExtents int) ([]Extent, error) {
	if err := m.inRange(off, length); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Extent
	for pos := off; pos < off+length; {
		pg, in := pos/memPage, pos%memPage
		n := min(off+length-pos, memPage-in)
		_, data := m.pages[pg]
		e := Extent{Length: n, Hole: !data, Zero: !data}
		if k := len(out) - 1; k >= 0 && out[k].Hole == e.Hole {
			out[k].Length += n
		} else {
			if len(out) == maxExtents {
				break
			}
			out = append(out, e)
		}
		pos += n
	}
	return out, nil
}
