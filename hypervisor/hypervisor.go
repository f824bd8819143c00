package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
)

// Hypervisor is the daemon of one node. So far it finds the QEMU
// processes left by an earlier run and re-attaches to them; reconciling
// vm/<name> records is still to come (see docs/hypervisor.md).
type Hypervisor struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns a Hypervisor; nothing runs until Run.
func New(cfg Config) (*Hypervisor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = DefaultConfig().StopGrace
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hypervisor{cfg: cfg, log: log}, nil
}

// Run probes the host, re-attaches to the VMs still running from
// RuntimeDir and keeps them until ctx ends. It returns nil on
// cancellation; QEMU processes keep running after it returns.
func (h *Hypervisor) Run(ctx context.Context) error {
	host, err := qemu.ProbeHost(ctx, qemu.ProbeOptions{QEMU: h.cfg.QEMU, Kernel: h.cfg.ProbeKernel, Accel: qemu.Accel(h.cfg.Accel)})
	if err != nil {
		return fmt.Errorf("hypervisor: %w", err)
	}
	h.log.Info("qemu host", "qemu", host.QEMU, "accel", host.Accel, "why", host.AccelReason, "vsock", host.Vsock)
	if err := os.MkdirAll(h.cfg.RuntimeDir, 0o700); err != nil {
		return fmt.Errorf("hypervisor: create runtime dir: %w", err)
	}
	vms, err := h.reattach(ctx)
	defer func() {
		for _, vm := range vms {
			vm.Close()
		}
	}()
	if err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// reattach attaches to every VM directory whose QEMU still runs.
func (h *Hypervisor) reattach(ctx context.Context) ([]*qemu.VM, error) {
	entries, err := os.ReadDir(h.cfg.RuntimeDir)
	if err != nil {
		return nil, fmt.Errorf("hypervisor: read runtime dir: %w", err)
	}
	var vms []*qemu.VM
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(h.cfg.RuntimeDir, e.Name())
		vm, err := qemu.Attach(ctx, dir, nil, h.log)
		switch {
		case errors.Is(err, qemu.ErrNotRunning) || errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			h.log.Warn("cannot re-attach to a VM's QEMU; it keeps running unmanaged", "dir", dir, "err", err)
			continue
		}
		st, err := vm.Status(ctx)
		h.log.Info("re-attached", "vm", vm.Spec().Name, "status", st, "err", err)
		vms = append(vms, vm)
	}
	return vms, nil
}
