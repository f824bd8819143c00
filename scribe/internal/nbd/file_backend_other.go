//go:build !linux

package nbd

import "errors"

// FileBackend is Linux-only (it relies on fallocate and SEEK_DATA).
type FileBackend struct{ Backend }

// OpenFileBackend fails outside Linux.
func OpenFileBackend(path string) (*FileBackend, error) {
	return nil, errors.New("nbd file backend: only available on Linux (it relies on fallocate and SEEK_DATA)")
}

// Close does nothing.
func (b *FileBackend) Close() error { return nil }
