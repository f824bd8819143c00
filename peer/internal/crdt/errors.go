package crdt

import "errors"

// ErrCorrupt is returned (wrapped) when bytes do not decode as a canonical
// value of the expected kind.
var ErrCorrupt = errors.New("corrupt crdt encoding")

// ErrInvalid is returned (wrapped) for a well-formed value that breaks a
// rule: a bad key, an oversized value, a field of the wrong kind.
var ErrInvalid = errors.New("invalid crdt value")
