package vmcluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Options describe a cluster to start.
type Options struct {
	// Dir holds everything of the cluster: state, disks, sockets, logs.
	// Keep it short (UNIX socket paths are limited to 107 bytes). Required.
	Dir string
	// Image is the built disk image (shoal-V.img). Up copies it into Dir
	// (sparse), so a rebuild does not pull the disk from under running
	// nodes. Required.
	Image string
	// Nodes is how many nodes Up boots. Zero means 3.
	Nodes int
	// Slots is how many nodes the switch has ports for, counting those
	// AddNode plugs in later. Zero means Nodes+3.
	Slots int
	// DataDisks per node (0, 1 or 2; negative means none), DataDiskSize
	// each (sparse qcow2). Zero values: 2 disks of 8 GiB.
	DataDisks    int
	DataDiskSize int64
	// BootDiskSize is the size of each node's overlay on the image: the
	// state partition gets what the image leaves. Zero means 6 GiB.
	BootDiskSize int64
	// MemMB per node. Zero means 1024.
	MemMB int
	// Accel is "tcg" or "kvm"; "" probes /dev/kvm (ProbeAccel).
	Accel string
	// APIPort is the localhost port node1's HTTPS API (7443) is forwarded
	// to. Zero means 17443; negative means no forward.
	APIPort int
	// NoDHCP leaves the segment without a DHCP server (no root needed for
	// the switch then).
	NoDHCP bool
	// QABin is the shoal-qa binary whose hidden verb `vm switchd` runs the
	// switch daemon. Required.
	QABin string
	// QEMU, QEMUImg, OVMFCode and OVMFVars: "" means the Debian paths.
	QEMU, QEMUImg, OVMFCode, OVMFVars string
	// Log receives progress. Nil discards.
	Log *slog.Logger
	// Out receives what an operator should see (may be nil).
	Out io.Writer
	// ReadyTimeout bounds the wait for the switch daemon. Zero means 30s.
	ReadyTimeout time.Duration
}

// DefaultOptions are Options with every zero value filled in.
func DefaultOptions() Options {
	return Options{
		Nodes:        3,
		DataDisks:    2,
		DataDiskSize: 8 << 30,
		BootDiskSize: 6 << 30,
		MemMB:        1024,
		APIPort:      17443,
		QEMU:         "qemu-system-x86_64",
		QEMUImg:      "qemu-img",
		OVMFCode:     "/usr/share/OVMF/OVMF_CODE_4M.fd",
		OVMFVars:     "/usr/share/OVMF/OVMF_VARS_4M.fd",
		ReadyTimeout: 30 * time.Second,
	}
}

// withDefaults fills zero values from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Nodes == 0 {
		o.Nodes = d.Nodes
	}
	if o.Slots == 0 {
		o.Slots = o.Nodes + 3
	}
	switch {
	case o.DataDisks == 0:
		o.DataDisks = d.DataDisks
	case o.DataDisks < 0:
		o.DataDisks = 0
	}
	if o.DataDiskSize == 0 {
		o.DataDiskSize = d.DataDiskSize
	}
	if o.BootDiskSize == 0 {
		o.BootDiskSize = d.BootDiskSize
	}
	if o.MemMB == 0 {
		o.MemMB = d.MemMB
	}
	if o.APIPort == 0 {
		o.APIPort = d.APIPort
	}
	for _, p := range []struct {
		v   *string
		def string
	}{
		{&o.QEMU, d.QEMU}, {&o.QEMUImg, d.QEMUImg}, {&o.OVMFCode, d.OVMFCode}, {&o.OVMFVars, d.OVMFVars},
	} {
		if *p.v == "" {
			*p.v = p.def
		}
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = d.ReadyTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return o
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case o.Dir == "" || o.Image == "" || o.QABin == "":
		return errors.New("vm cluster options: Dir, Image and QABin are required")
	case o.Nodes < 1 || o.Nodes > 50:
		return fmt.Errorf("vm cluster options: %d nodes: want 1 to 50", o.Nodes)
	case o.Slots < o.Nodes || o.Slots > 60:
		return fmt.Errorf("vm cluster options: %d switch slots for %d nodes: want Nodes to 60", o.Slots, o.Nodes)
	case o.DataDisks > 2:
		return fmt.Errorf("vm cluster options: %d data disks: want at most 2", o.DataDisks)
	case o.DataDiskSize < 1<<20 || o.BootDiskSize < 3<<30:
		return errors.New("vm cluster options: data disks need at least 1 MiB, the boot disk at least 3 GiB (the image is 2.3 GiB)")
	case o.MemMB < 512:
		return fmt.Errorf("vm cluster options: %d MiB of memory: the image needs at least 512", o.MemMB)
	case o.Accel != "" && o.Accel != "tcg" && o.Accel != "kvm":
		return fmt.Errorf("vm cluster options: accel %q: want tcg or kvm", o.Accel)
	case o.APIPort > 65535:
		return fmt.Errorf("vm cluster options: API port %d", o.APIPort)
	}
	return nil
}
