package peer

import "errors"

// Sentinel errors.
var (
	ErrNotMember     = errors.New("this node is not in a cluster")
	ErrAlreadyMember = errors.New("this node is already in a cluster: run `shoal cluster leave` first")
	ErrUnknownNode   = errors.New("no such node")
	ErrWrongCode     = errors.New("wrong admission code")
	ErrNodeAlive     = errors.New("node is alive")
	ErrRefused       = errors.New("admission refused")
	ErrBadPolicy     = errors.New("unknown admission policy: want auto, approve or code")
)
