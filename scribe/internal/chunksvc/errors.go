package chunksvc

import "errors"

var (
	// ErrUnreachable: the connection to the peer failed or was closed;
	// dial again.
	ErrUnreachable = errors.New("chunk service peer unreachable")
	// ErrNoDisk: the request named a disk the node does not serve.
	ErrNoDisk = errors.New("no such disk on this node")
	// ErrProtocol: a frame did not decode or broke a bound.
	ErrProtocol = errors.New("chunk service protocol error")
	// ErrRemote: the peer failed the request for a reason with no
	// sentinel of its own (the message says which).
	ErrRemote = errors.New("chunk service request failed")
	// ErrUnauthorized: the peer's certificate was refused.
	ErrUnauthorized = errors.New("chunk service peer not authorized")
)
