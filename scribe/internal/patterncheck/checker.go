package patterncheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Device is what the checker writes to: an NBD client, a VSD, a file.
type Device interface {
	ReadAt(p []byte, off int64) error
	WriteAt(p []byte, off int64, fua bool) error
	Flush() error
}

// Config configures a Checker.
type Config struct {
	// BlockSize is the size of one pattern block. Zero value: 4096.
	BlockSize int
	// Blocks is the number of blocks checked, from offset 0. Required.
	Blocks int64
	// Seed makes the filler bytes reproducible. Zero value: seed 0.
	Seed uint64
}

// ErrMismatch is wrapped by every verification failure.
var ErrMismatch = errors.New("block content is not an acknowledged or pending write")

const magic = "SHOALPAT"

// Checker tracks acknowledged and pending writes per block.
type Checker struct {
	cfg     Config
	seq     uint64
	acked   []uint64           // durable write per block, 0 = zero block
	pending map[int64][]uint64 // writes since the last durability point
}

// New returns a Checker for cfg.
func New(cfg Config) (*Checker, error) {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 4096
	}
	if cfg.BlockSize < 64 || cfg.Blocks <= 0 {
		return nil, fmt.Errorf("pattern checker: block size %d (min 64) and %d blocks", cfg.BlockSize, cfg.Blocks)
	}
	return &Checker{cfg: cfg, acked: make([]uint64, cfg.Blocks), pending: map[int64][]uint64{}}, nil
}

// Pattern returns the content of write seq to block.
func (c *Checker) Pattern(block int64, seq uint64) []byte {
	b := make([]byte, c.cfg.BlockSize)
	copy(b, magic)
	binary.LittleEndian.PutUint64(b[8:], uint64(block))
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint64(b[24:], c.cfg.Seed)
	r := rand.New(rand.NewPCG(c.cfg.Seed^seq, uint64(block)))
	for i := 32; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// Write writes a new pattern to block; with fua it is durable once
// Write returns nil. A failed write stays pending (it may have landed).
func (c *Checker) Write(dev Device, block int64, fua bool) error {
	if block < 0 || block >= c.cfg.Blocks {
		return fmt.Errorf("pattern write to block %d of %d", block, c.cfg.Blocks)
	}
	c.seq++
	err := dev.WriteAt(c.Pattern(block, c.seq), block*int64(c.cfg.BlockSize), fua)
	if err == nil && fua {
		c.acked[block] = c.seq
		delete(c.pending, block)
		return nil
	}
	c.pending[block] = append(c.pending[block], c.seq)
	if err != nil {
		return fmt.Errorf("pattern write %d to block %d: %w", c.seq, block, err)
	}
	return nil
}

// Flush flushes dev; on success every completed write is durable.
func (c *Checker) Flush(dev Device) error {
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("pattern flush: %w", err)
	}
	for b, seqs := range c.pending {
		c.acked[b] = seqs[len(seqs)-1]
	}
	clear(c.pending)
	return nil
}

// Acked reports the number of blocks holding an acknowledged write.
func (c *Checker) Acked() int {
	n := 0
	for _, s := range c.acked {
		if s != 0 {
			n++
		}
	}
	return n
}

// Verify reads every block and checks it holds its acknowledged write or
// a pending one. It returns every mismatch (at most 20 listed), wrapping
// ErrMismatch. Afterwards the observed content is the new baseline.
func (c *Checker) Verify(dev Device) error {
	var problems []error
	observed := make([]uint64, c.cfg.Blocks)
	buf := make([]byte, c.cfg.BlockSize)
	zero := make([]byte, c.cfg.BlockSize)
	for b := range c.cfg.Blocks {
		if err := dev.ReadAt(buf, b*int64(c.cfg.BlockSize)); err != nil {
			problems = append(problems, fmt.Errorf("block %d: read: %w", b, err))
			continue
		}
		seq := uint64(0)
		if !bytes.Equal(buf, zero) {
			seq = binary.LittleEndian.Uint64(buf[16:])
			if string(buf[:8]) != magic || binary.LittleEndian.Uint64(buf[8:]) != uint64(b) || seq == 0 ||
				!bytes.Equal(buf, c.Pattern(b, seq)) {
				problems = append(problems, fmt.Errorf("block %d: corrupt or misplaced content (acknowledged write %d): %w", b, c.acked[b], ErrMismatch))
				continue
			}
		}
		if seq != c.acked[b] && !slices.Contains(c.pending[b], seq) {
			problems = append(problems, fmt.Errorf("block %d holds write %d; acknowledged %d, pending %v: %w", b, seq, c.acked[b], c.pending[b], ErrMismatch))
			continue
		}
		observed[b] = seq
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Errorf("and %d more", len(problems)-20))
		}
		return errors.Join(problems...)
	}
	c.acked = observed
	clear(c.pending)
	return nil
}
