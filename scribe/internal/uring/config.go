package uring

import (
	"fmt"
	"time"
)

// Config configures New.
type Config struct {
	// Entries is the most requests in flight at once, rounded up to a
	// power of two (the submission queue has twice as many entries, for
	// the no-ops of pairs, see Ring.WriteAtBoth). Zero value: 128.
	Entries uint32

	// maxIO, if positive, caps the bytes of one submission, so tests
	// see transfers resumed after a short one.
	maxIO int
	// rawWait, if positive, replaces the package's rawWait, so tests
	// see lone requests go on waiting in blocking system calls.
	rawWait time.Duration
}

// DefaultConfig is Config with its defaults filled in.
func DefaultConfig() Config { return Config{Entries: 128} }

// Validate reports a configuration New cannot use.
func (c Config) Validate() error {
	if c.Entries > 4096 {
		return fmt.Errorf("io_uring config: %d entries, more than 4096", c.Entries)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Entries == 0 {
		c.Entries = DefaultConfig().Entries
	}
	if c.maxIO <= 0 || c.maxIO > maxTransfer {
		c.maxIO = maxTransfer
	}
	if c.rawWait <= 0 {
		c.rawWait = rawWait
	}
	return c
}

// maxTransfer is the most bytes one submission asks for (its length is
// 32 bits; Linux caps one read or write a little under 2 GiB anyway).
const maxTransfer = 1 << 30

// rawWait is how long a lone request waits for its completion in a raw
// system call, keeping its P (see Ring.wait); past it, it waits in a
// blocking one. A 4 KiB read or write of an SSD or virtual disk takes a
// tenth of that.
const rawWait = time.Millisecond
