package scribe

import "errors"

// Sentinel errors.
var (
	ErrBadName   = errors.New("bad VSD name")
	ErrBadSize   = errors.New("bad size")
	ErrBadRecord = errors.New("malformed scribe record in the cluster state")
	// ErrNotMember: this node is not in a cluster yet; scribe serves
	// nothing until it is.
	ErrNotMember = errors.New("this node is not a cluster member yet: scribe serves no VSD until it is (see `shoal status`)")
	// ErrInUse: another node that is up has the VSD open; taking it
	// over is explicit (claim the next epoch first).
	ErrInUse = errors.New("the VSD is open on another node")
	// ErrNoDisks: the VSD needs more nodes with data disks than the
	// cluster has.
	ErrNoDisks = errors.New("not enough nodes with data disks for the VSD's replicas")
)
