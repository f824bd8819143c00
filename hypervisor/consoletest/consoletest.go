// Package consoletest fakes a VM's QEMU serial console for tests of the
// console service and of `shoal vm console`: a UNIX socket where QEMU's
// would be, serving one client at a time, and a console log.
package consoletest

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
)

// Greeting is what the fake console prints to every client that attaches.
const Greeting = "login: "

// Serial creates the runtime directory of VM id below runtimeDir with a
// console log holding history, and serves its serial socket until the
// test ends: each client gets Greeting, then what it types echoed in
// upper case. runtimeDir must be short (socket paths are limited).
func Serial(t testing.TB, runtimeDir, id, history string) {
	t.Helper()
	dir := filepath.Join(runtimeDir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(qemu.ConsoleLog(dir), []byte(history), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", qemu.SerialSocket(dir))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(Greeting))
			b := make([]byte, 256)
			for {
				n, err := c.Read(b)
				if err != nil {
					break
				}
				c.Write(bytes.ToUpper(b[:n]))
			}
			c.Close()
		}
	}()
}
