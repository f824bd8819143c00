package hypervisor

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// DefaultRuntimeDir holds one directory per VM QEMU process on a node.
const DefaultRuntimeDir = "/run/shoal/vm"

// Config configures the hypervisor daemon. The zero value of each field
// is documented; DefaultConfig fills the node's paths.
type Config struct {
	// Log receives the daemon's log; nil discards it.
	Log *slog.Logger
	// NodeID is this node's ID (hex, from the node identity). Required.
	NodeID string
	// RuntimeDir holds one directory per VM, named by the VM's ID
	// (sockets, pid, spec.json, console log); it must survive daemon
	// restarts but not reboots. Required, at most 62 bytes (QEMU's UNIX
	// socket paths below it must fit 108 bytes).
	RuntimeDir string
	// QEMU is the qemu-system-x86_64 binary; "": found on PATH.
	QEMU string
	// Accel forces "kvm" or "tcg"; "": probed at start (KVM only where a
	// kernel really boots under it).
	Accel string
	// ProbeKernel is the kernel booted by the KVM probe; "": the host's
	// /boot/vmlinuz-$(uname -r), and without one TCG.
	ProbeKernel string
	// StopGrace is how long a stop waits for the guest to power off after
	// the ACPI power button before QEMU is told to quit; 0: 60 s.
	StopGrace time.Duration
}

// DefaultConfig returns the configuration of a node, without NodeID.
func DefaultConfig() Config {
	return Config{RuntimeDir: DefaultRuntimeDir, StopGrace: 60 * time.Second}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("%w: NodeID is empty", ErrBadConfig)
	}
	if c.RuntimeDir == "" || !filepath.IsAbs(c.RuntimeDir) {
		return fmt.Errorf("%w: RuntimeDir %q is not an absolute path", ErrBadConfig, c.RuntimeDir)
	}
	// <RuntimeDir>/<32-hex VM ID>/serial.sock must fit sun_path.
	if len(c.RuntimeDir)+1+32+len("/serial.sock") > 107 {
		return fmt.Errorf("%w: RuntimeDir %q is too long for QEMU's UNIX sockets (keep it under 62 bytes)", ErrBadConfig, c.RuntimeDir)
	}
	switch c.Accel {
	case "", "kvm", "tcg":
	default:
		return fmt.Errorf("%w: Accel %q is not kvm, tcg or empty (probe)", ErrBadConfig, c.Accel)
	}
	if c.StopGrace < 0 {
		return fmt.Errorf("%w: StopGrace %v is negative", ErrBadConfig, c.StopGrace)
	}
	return nil
}
