//go:build !linux

package rawsock

import "io"

// Wrap returns rw: raw socket I/O is Linux-only.
func Wrap(rw io.ReadWriter) io.ReadWriter { return rw }
