//go:build !linux

package chunkstore

import (
	"errors"
	"os"
)

func directFlag() (int, error) {
	return 0, errors.New("O_DIRECT is only supported on Linux; open the disk buffered")
}

func fdatasync(f *os.File) error { return f.Sync() }
