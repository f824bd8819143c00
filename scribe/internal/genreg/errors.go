package genreg

import "errors"

var (
	// ErrCorrupt: a register file's header is not one this package wrote.
	ErrCorrupt = errors.New("generation register file is corrupt")
	// ErrClosed: the Dir was closed.
	ErrClosed = errors.New("generation register is closed")
	// ErrBadEntry: an entry cannot be registered (zero generation).
	ErrBadEntry = errors.New("bad generation register entry")
)
