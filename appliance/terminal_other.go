//go:build !linux

package appliance

import (
	"errors"
	"io"
)

func isTerminal(any) bool { return false }

func makeRaw(any) (func(), error) {
	return nil, errors.New("raw terminal mode is supported on Linux only")
}

func pollRead(r io.Reader, p []byte) (int, error) { return r.Read(p) }
