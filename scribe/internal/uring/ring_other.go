//go:build !linux

package uring

// Ring is unavailable on this operating system; New always fails.
type Ring struct{}

// New returns ErrUnsupported.
func New(Config) (*Ring, error) { return nil, ErrUnsupported }

// ReadAt returns ErrUnsupported.
func (*Ring) ReadAt(int, []byte, int64) (int, error) { return 0, ErrUnsupported }

// WriteAt returns ErrUnsupported.
func (*Ring) WriteAt(int, []byte, int64) (int, error) { return 0, ErrUnsupported }

// WriteAtBoth returns ErrUnsupported twice.
func (*Ring) WriteAtBoth(int, []byte, int64, []byte, int64) (error, error) {
	return ErrUnsupported, ErrUnsupported
}

// Fdatasync returns ErrUnsupported.
func (*Ring) Fdatasync(int) error { return ErrUnsupported }

// Close does nothing.
func (*Ring) Close() error { return nil }
