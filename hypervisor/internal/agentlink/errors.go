package agentlink

import "errors"

var (
	// ErrDisconnected is returned by a request whose connection to the
	// agent broke before the reply came: it may or may not have run.
	ErrDisconnected = errors.New("agent link broke before the reply")
	// ErrAgent wraps an error the agent replied with.
	ErrAgent = errors.New("guest agent")
	// ErrStopped is returned by requests once Run has returned.
	ErrStopped = errors.New("agent link stopped")
)
