package hypervisor

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/shoal-hci/shoal/peer"
)

// DefaultRuntimeDir holds one directory per VM QEMU process on a node.
const DefaultRuntimeDir = "/run/shoal/vm"

// DefaultPeerSocket is shoal peer's local API on a node.
const DefaultPeerSocket = "/run/shoal/peer.sock"

// DefaultNBDSocket is scribe's NBD socket on a node: one export per VSD.
const DefaultNBDSocket = "/run/shoal/scribe.sock"

// DefaultFailoverWait is how long survivors wait, after they first see a
// VM's node failed, before they claim the VM: the failed node's fence
// deadline plus 10 % (docs/claims.md, 4.4 s with peer's defaults) and
// time for its daemon to pause its VMs.
const DefaultFailoverWait = 5 * time.Second

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
	// Accel forces "kvm" or "tcg"; "": probed when the first VM starts
	// (KVM only where a kernel really boots under it).
	Accel string
	// ProbeKernel is the kernel booted by the KVM probe; "": the host's
	// /boot/vmlinuz-$(uname -r), and without one TCG.
	ProbeKernel string
	// StopGrace is how long a stop waits for the guest to power off after
	// the ACPI power button before QEMU is told to quit; 0: 60 s.
	StopGrace time.Duration
	// PeerSocket is shoal peer's local API socket; "": DefaultPeerSocket.
	PeerSocket string
	// NBDSocket is scribe's NBD socket VSD disks are reached on; "":
	// DefaultNBDSocket.
	NBDSocket string
	// Bridge is the bridge a VM NIC on network "default" joins as a tap;
	// "": QEMU's user-mode network instead (no root, no bridge; tests).
	Bridge string
	// FailoverWait is how long after first seeing a VM's node failed this
	// node waits before claiming the VM; 0: DefaultFailoverWait. Never
	// set it below peer's FailoverWait (docs/claims.md).
	FailoverWait time.Duration
	// Interval is the reconcile period (changes of vm/ records and of the
	// fence also wake the loop at once); 0: 1 s.
	Interval time.Duration
	// DataDir is shoal peer's data dir, where the console service and
	// live migration (mutual TLS between the QEMUs) find this node's
	// cluster credentials (peer.LoadNodeTLS). "": no console service
	// (Validate refuses it with ConsoleListen) and every migration to or
	// from this node fails.
	DataDir string
	// ConsoleListen is where the console service serves the serial
	// consoles of this node's VMs to other members (mutual TLS, port
	// ConsolePort); "": no console service (the local CLI still attaches
	// directly).
	ConsoleListen string
	// Ready, if set, is called once the daemon has re-attached to its
	// VMs and reconciles (systemd READY=1).
	Ready func()
}

// DefaultConfig returns the configuration of a node, without NodeID.
func DefaultConfig() Config {
	return Config{RuntimeDir: DefaultRuntimeDir, StopGrace: 60 * time.Second,
		PeerSocket: DefaultPeerSocket, NBDSocket: DefaultNBDSocket,
		FailoverWait: DefaultFailoverWait, Interval: time.Second,
		DataDir: peer.DefaultDataDir, ConsoleListen: DefaultConsoleListen}
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
	if c.FailoverWait < 0 || c.Interval < 0 {
		return fmt.Errorf("%w: FailoverWait %v or Interval %v is negative", ErrBadConfig, c.FailoverWait, c.Interval)
	}
	if c.ConsoleListen != "" && c.DataDir == "" {
		return fmt.Errorf("%w: ConsoleListen %q needs DataDir (the node's cluster credentials)", ErrBadConfig, c.ConsoleListen)
	}
	if c.NBDSocket != "" && !filepath.IsAbs(c.NBDSocket) {
		return fmt.Errorf("%w: NBDSocket %q is not an absolute path", ErrBadConfig, c.NBDSocket)
	}
	return nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.StopGrace == 0 {
		c.StopGrace = d.StopGrace
	}
	if c.PeerSocket == "" {
		c.PeerSocket = d.PeerSocket
	}
	if c.NBDSocket == "" {
		c.NBDSocket = d.NBDSocket
	}
	if c.FailoverWait == 0 {
		c.FailoverWait = d.FailoverWait
	}
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}
