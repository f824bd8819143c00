package disks

import "errors"

// Sentinel errors.
var (
	// ErrForeignStore: the disk holds a chunk store of another node or
	// cluster (moved from elsewhere, or left from an old cluster).
	ErrForeignStore = errors.New("disk holds a shoal chunk store of another node or cluster (list it in --force-format to reuse it; its data is lost)")
	// ErrNoDisks: discovery found nothing.
	ErrNoDisks = errors.New("no data disks found")
)
