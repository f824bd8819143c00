// Package uki builds unified kernel images: the distribution's systemd EFI
// stub (linuxx64.efi.stub) with .osrel, .cmdline, .linux and .initrd
// sections added by objcopy, as ukify would (bookworm has no ukify).
package uki

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shoal-hci/shoal/image-build/internal/hostcmd"
)

// Spec is what goes into one UKI.
type Spec struct {
	Stub    string // path of linuxx64.efi.stub
	Kernel  string // path of vmlinuz
	Initrd  string // path of the initramfs
	OSRel   []byte // os-release text: sd-boot takes the title and version from it
	Cmdline string // the kernel command line
}

// Section virtual addresses, far enough apart for a ~10 MiB kernel and a
// ~100 MiB initrd (the layout systemd documents for objcopy-built UKIs).
const (
	vmaOSRel   = 0x20000
	vmaCmdline = 0x30000
	vmaLinux   = 0x2000000
	vmaInitrd  = 0x3000000
)

// Build writes the UKI to out.
func Build(ctx context.Context, log *slog.Logger, s Spec, out string) error {
	for _, p := range []string{s.Stub, s.Kernel, s.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("build UKI: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".uki-")
	if err != nil {
		return fmt.Errorf("build UKI: %w", err)
	}
	defer os.RemoveAll(tmp)
	osrel := filepath.Join(tmp, "osrel")
	cmdline := filepath.Join(tmp, "cmdline")
	if err := os.WriteFile(osrel, s.OSRel, 0o644); err != nil {
		return fmt.Errorf("build UKI: %w", err)
	}
	if err := os.WriteFile(cmdline, []byte(s.Cmdline+"\x00"), 0o644); err != nil {
		return fmt.Errorf("build UKI: %w", err)
	}
	part := out + ".part"
	_, err = hostcmd.Run(ctx, log, "objcopy",
		"--add-section", ".osrel="+osrel, "--change-section-vma", fmt.Sprintf(".osrel=%#x", vmaOSRel),
		"--add-section", ".cmdline="+cmdline, "--change-section-vma", fmt.Sprintf(".cmdline=%#x", vmaCmdline),
		"--add-section", ".linux="+s.Kernel, "--change-section-vma", fmt.Sprintf(".linux=%#x", vmaLinux),
		"--add-section", ".initrd="+s.Initrd, "--change-section-vma", fmt.Sprintf(".initrd=%#x", vmaInitrd),
		s.Stub, part)
	if err != nil {
		os.Remove(part)
		return fmt.Errorf("build UKI %s: %w", out, err)
	}
	if err := os.Rename(part, out); err != nil {
		return fmt.Errorf("build UKI: %w", err)
	}
	return nil
}
