package patterncheck

import (
	"errors"
	"testing"
)

// memDevice is a block device in memory whose un-flushed writes can be
// lost on demand, like a crash.
type memDevice struct {
	durable, cache map[int64][]byte
}

func newMem() *memDevice { return &memDevice{durable: map[int64][]byte{}, cache: map[int64][]byte{}} }

func (m *memDevice) ReadAt(p []byte, off int64) error {
	if b, ok := m.cache[off]; ok {
		copy(p, b)
	} else if b, ok := m.durable[off]; ok {
		copy(p, b)
	} else {
		clear(p)
	}
	return nil
}

func (m *memDevice) WriteAt(p []byte, off int64, fua bool) error {
	m.cache[off] = append([]byte(nil), p...)
	if fua {
		m.durable[off] = m.cache[off]
	}
	return nil
}

func (m *memDevice) Flush() error {
	for k, v := range m.cache {
		m.durable[k] = v
	}
	return nil
}

func (m *memDevice) crash() { clear(m.cache) }

func TestVerify(t *testing.T) {
	tests := []struct {
		name    string
		fault   func(m *memDevice, c *Checker)
		wantErr bool
	}{
		{"no fault", func(*memDevice, *Checker) {}, false},
		{"crash loses unflushed writes", func(m *memDevice, _ *Checker) { m.crash() }, false},
		{"lost acknowledged write", func(m *memDevice, _ *Checker) { m.crash(); delete(m.durable, 0) }, true},
		{"bit flip", func(m *memDevice, _ *Checker) { m.crash(); m.durable[4096][100] ^= 1 }, true},
		{"misplaced block", func(m *memDevice, _ *Checker) { m.crash(); m.durable[4096] = m.durable[0] }, true},
		{"stale block", func(m *memDevice, c *Checker) {
			m.crash()
			m.durable[8192] = c.Pattern(2, 1) // an older write than the acknowledged one
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMem()
			c, err := New(Config{Blocks: 4, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range []int64{2, 0, 1, 2} {
				c.Write(m, b, false)
			}
			c.Flush(m)
			c.Write(m, 3, true)
			c.Write(m, 1, false) // pending at the fault
			tt.fault(m, c)
			err = c.Verify(m)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrMismatch)) {
				t.Errorf("verify: %v; want error %v", err, tt.wantErr)
			}
		})
	}
}
