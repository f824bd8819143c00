//go:build !linux

package qemu

import (
	"context"
	"errors"
)

var errNotLinux = errors.New("running QEMU VMs needs Linux")

// ProbeOptions tune ProbeHost (Linux only).
type ProbeOptions struct {
	QEMU, Kernel string
	Accel        Accel
}

// ProbeHost needs Linux.
func ProbeHost(context.Context, ProbeOptions) (Host, error) { return Host{}, errNotLinux }

func startProcess(string, []string, string, string) (int, error) { return 0, errNotLinux }

func isQEMUFor(int, string) bool { return false }

type watcher struct{ exited, stop chan struct{} }

func watchProcess(int) (*watcher, error) { return nil, errNotLinux }

func (w *watcher) close() {}

func kill(int) error { return errNotLinux }

func attachTaps(Spec) error { return errNotLinux }
