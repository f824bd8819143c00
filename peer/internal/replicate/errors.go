package replicate

import "errors"

var (
	// ErrMustResync is returned to a peer that was away longer than the
	// rejoin horizon: it must reset and load a snapshot.
	ErrMustResync = errors.New("peer must resync from a snapshot")
	// ErrUnreachable is returned by MemNetwork for a lost or partitioned
	// message and an unknown peer.
	ErrUnreachable = errors.New("peer unreachable")
	// ErrBadMessage is returned (wrapped) for a message that does not decode.
	ErrBadMessage = errors.New("bad replication message")
)
