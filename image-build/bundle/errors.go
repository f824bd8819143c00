package bundle

import "errors"

// Errors Extract and the parsers return, matched with errors.Is.
var (
	// ErrBadSignature: the manifest is not signed by the key given.
	ErrBadSignature = errors.New("bundle signature does not match the update key: the bundle was not made with this image's key, or was altered")
	// ErrTampered: a file does not match the signed manifest.
	ErrTampered = errors.New("bundle file does not match its signed manifest: the bundle is damaged or was altered")
	// ErrMalformed: not a bundle, or one this code cannot read.
	ErrMalformed = errors.New("malformed bundle")
	// ErrBadKey: a key file that is not a shoal update key.
	ErrBadKey = errors.New("not a shoal update key")
)
