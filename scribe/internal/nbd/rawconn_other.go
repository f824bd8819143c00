//go:build !linux

package nbd

import "io"

// rawConn is Linux-only; elsewhere sessions use the connection as is.
type rawConn struct{ io.ReadWriter }

func rawConnOf(io.ReadWriter) *rawConn { return nil }
