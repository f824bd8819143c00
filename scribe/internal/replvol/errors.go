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
	// ErrNoMajority: a replica failed and its drop could not be recorded
	// in the generation register of a majority of the pool's nodes, so the
	// request fails (EIO) rather than be acknowledged on fewer replicas.
	// Bring nodes back.
	ErrNoMajority = errors.New("too few nodes reachable to record a replica drop")
	// ErrClosed: the Volume was closed.
	ErrClosed = errors.New("volume is closed")
)
