package agent

import "errors"

var (
	// ErrMalformed marks a line that is not a valid message (bad JSON, no
	// type, a missing payload). It spoils only that line: a Decoder
	// returning it can be read on.
	ErrMalformed = errors.New("malformed agent message")
	// ErrTooLong marks a line longer than MaxLine; it was skipped and the
	// Decoder can be read on.
	ErrTooLong = errors.New("agent message longer than the limit")
	// ErrNoTransport is returned when no transport to the host opens.
	ErrNoTransport = errors.New("no transport to the host")
)
