package proccluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Options configures Up. The zero value of each field means its default.
type Options struct {
	Nodes        int           // number of nodes; 0 means 3
	Dir          string        // cluster directory; "" means /tmp/shoal-qa
	ShoalBin     string        // shoal binary to run; "" builds ./appliance/cmd/shoal of the module in the working directory into Dir/bin/shoal
	HelperBin    string        // binary with the hidden `fusedisk` verb (shoal-qa); "" means a copy of this executable in Dir/bin
	Disks        int           // data disks per node; 0 means 4, negative means none
	DiskSize     int64         // bytes per data disk (sparse); 0 means 8 GiB
	DiskMode     DiskMode      // how scribe sees its disks; "" means DiskModeFUSE
	DaemonEnv    []string      // extra KEY=VALUE environment of every daemon (e.g. GOMAXPROCS=2); nil means none
	ReadyTimeout time.Duration // how long a daemon may take to send READY=1; 0 means 60 s
	Log          *slog.Logger  // nil discards
	Out          io.Writer     // progress lines for humans; nil discards
}

// DiskMode is how a node's data disks reach scribe.
type DiskMode string

// Disk modes. Only DiskModeFUSE injects faults (DiskFail, DiskFull); the
// others exist for benchmarks, where the FUSE server's two extra kernel
// crossings per I/O and its CPU would be measured along with scribe.
const (
	// DiskModeFUSE serves each image through the harness's FUSE file
	// system (package faultdisk), which injects disk faults.
	DiskModeFUSE DiskMode = "fuse"
	// DiskModeFile gives scribe the image files themselves (through a
	// symlink), opened with O_DIRECT on the host file system, as qemu-nbd
	// opens its raw file.
	DiskModeFile DiskMode = "file"
	// DiskModeLoop attaches each image to a loop device with direct I/O
	// (losetup --direct-io=on), so scribe opens a block device, as on an
	// appliance.
	DiskModeLoop DiskMode = "loop"
)

// ParseDiskMode parses fuse, file or loop.
func ParseDiskMode(s string) (DiskMode, error) {
	switch m := DiskMode(s); m {
	case DiskModeFUSE, DiskModeFile, DiskModeLoop:
		return m, nil
	}
	return "", fmt.Errorf("disk mode %q: want fuse, file or loop", s)
}

// DefaultOptions returns the defaults spelled out.
func DefaultOptions() Options {
	return Options{Nodes: 3, Dir: "/tmp/shoal-qa", Disks: 4, DiskSize: 8 << 30, DiskMode: DiskModeFUSE, ReadyTimeout: 60 * time.Second}
}

// MaxNodes bounds the node count: static addresses are 10.88.0.(10+N).
const MaxNodes = 89

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Nodes == 0 {
		o.Nodes = d.Nodes
	}
	if o.Dir == "" {
		o.Dir = d.Dir
	}
	if o.Disks == 0 {
		o.Disks = d.Disks
	}
	if o.Disks < 0 {
		o.Disks = 0
	}
	if o.DiskSize == 0 {
		o.DiskSize = d.DiskSize
	}
	if o.DiskMode == "" {
		o.DiskMode = d.DiskMode
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = d.ReadyTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return o
}

// Validate reports a bad field.
func (o Options) Validate() error {
	switch {
	case o.Nodes < 0 || o.Nodes > MaxNodes:
		return fmt.Errorf("%d nodes: want 1 to %d", o.Nodes, MaxNodes)
	case o.Disks > 16:
		return fmt.Errorf("%d disks per node: want at most 16", o.Disks)
	case o.DiskSize < 0:
		return errors.New("negative disk size")
	case o.ReadyTimeout < 0:
		return errors.New("negative ready timeout")
	}
	for _, kv := range o.DaemonEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("daemon environment %q: want KEY=VALUE", kv)
		}
	}
	if o.DiskMode != "" {
		if _, err := ParseDiskMode(string(o.DiskMode)); err != nil {
			return err
		}
	}
	return nil
}
