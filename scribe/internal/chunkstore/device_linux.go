package chunkstore

import (
	"os"
	"syscall"
)

func directFlag() (int, error) { return syscall.O_DIRECT, nil }

func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
