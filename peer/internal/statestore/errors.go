package statestore

import "errors"

var (
	// ErrNotFound is returned by Get for a key with no live record.
	ErrNotFound = errors.New("record not found")
	// ErrResync is returned by a watcher whose revision has been compacted
	// away or invalidated by a reset: list the prefix again and watch from
	// the revision returned with it.
	ErrResync = errors.New("watch revision compacted, resync required")
	// ErrSnapshotOrder is returned when snapshot chunks arrive out of order.
	ErrSnapshotOrder = errors.New("snapshot chunk out of order")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("state store closed")
)
