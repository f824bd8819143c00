package replvol

import "errors"

var (
	// ErrUnavailable: no copy of the data can be trusted right now (the
	// replicas holding the newest copy are unreachable); the client sees
	// EIO. Bring the nodes back, or heal the extent.
	ErrUnavailable = errors.New("no up-to-date replica of the extent is reachable")
	// ErrTooFewNodes: too many nodes holding the VSD are unreachable to
	// rebuild its extent map safely; bring them back and open again.
	ErrTooFewNodes = errors.New("too many nodes of the VSD are unreachable to open it safely")
	// ErrFenced: a newer owner (higher epoch) holds the VSD; this Volume
	// can no longer write (the client sees EPERM).
	ErrFenced = errors.New("a newer owner holds the VSD")
	// ErrClosed: the Volume was closed.
	ErrClosed = errors.New("volume is closed")
)
