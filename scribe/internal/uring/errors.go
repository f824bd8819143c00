package uring

import "errors"

// ErrClosed is returned by calls on a closed Ring.
var ErrClosed = errors.New("io_uring closed")

// ErrUnsupported is returned by New where this package has no io_uring
// (other operating systems).
var ErrUnsupported = errors.New("io_uring is only available on Linux")
