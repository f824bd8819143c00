package faultdisk

import "errors"

// ErrBadRequest is returned for a control request the server refused
// (unknown disk, unknown mode, malformed line).
var ErrBadRequest = errors.New("bad faultdisk request")

// ErrStillMounted is returned by Serve when the kernel kept the file system
// busy after the unmount (typically a copy of the mount in a mount namespace
// that is still alive); the process should exit to abort the connection.
var ErrStillMounted = errors.New("file system still in use after unmount: another mount namespace may hold a copy")
