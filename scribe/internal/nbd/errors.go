package nbd

import "errors"

// Errors a Backend returns to choose the errno the client sees. Anything
// else becomes EIO.
var (
	// ErrNoSpace: the backing store is full (ENOSPC).
	ErrNoSpace = errors.New("no space left on the backing store")
	// ErrNotFast: a FAST_ZERO request cannot be served faster than by
	// writing zeroes (ENOTSUP).
	ErrNotFast = errors.New("zeroing would not be faster than writing")
	// ErrReadOnly: the export refuses writes (EPERM).
	ErrReadOnly = errors.New("export is read-only")
	// ErrInvalid: the request is malformed for this backend (EINVAL).
	ErrInvalid = errors.New("invalid request")

	// ErrExportExists is returned by AddExport for a name already served.
	ErrExportExists = errors.New("export already exists")
	// ErrBadExportName is returned by AddExport for a name the protocol
	// cannot carry (longer than 4096 bytes or containing NUL).
	ErrBadExportName = errors.New("bad export name")
	// ErrServing is returned by Serve when the server is already serving.
	ErrServing = errors.New("server is already serving")
	// ErrUnknownExport: a Resolver has no export of that name.
	ErrUnknownExport = errors.New("no such export")
)
