package qmp

import (
	"errors"
	"fmt"
)

// ErrClosed is wrapped by every error of a command that could not
// complete because the connection is closed or broken.
var ErrClosed = errors.New("qmp connection closed")

// Error is a QMP "error" reply.
type Error struct {
	Command string // the command that failed
	Class   string // QEMU's error class, e.g. "GenericError", "CommandNotFound"
	Desc    string // QEMU's human-readable description
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}
