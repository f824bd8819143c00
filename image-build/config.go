package imagebuild

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
)

// Config is one build. Start from DefaultConfig.
type Config struct {
	// OutDir receives the image and the artefacts bundles are made of.
	// Required.
	OutDir string
	// Version names the build (os-release, UKI file names). Required; letters,
	// digits and . _ - only (it lands in FAT file names).
	Version string
	// Shoal is the shoal binary to install. Required. It must have the
	// install-units and health verbs.
	Shoal string
	// CacheDir holds the cached base trees and downloaded packages.
	CacheDir string
	// UpdateKey is the update bundles' ed25519 public key (as written by
	// `shoal-image keygen`), baked into the image as
	// /usr/share/shoal/update.pub. Required.
	UpdateKey []byte

	// Suite and Mirror are where debootstrap takes Debian from.
	Suite, Mirror string
	// Packages are installed on top of debootstrap's minbase.
	Packages []string
	// DropModules are kernel module directories removed to save space.
	DropModules []string
	// InitrdModules are put in the initramfs for finding the root.
	InitrdModules []string

	// ESPMiB, SlotMiB are partition sizes. A slot holds one root squashfs
	// and leaves room for later, bigger versions.
	ESPMiB, SlotMiB int
	// Cmdline is the kernel command line without root=, which the slot adds.
	Cmdline string
	// Tries is the boot counter a fresh slot's UKI starts with.
	Tries int
	// MenuTimeout is systemd-boot's menu timeout in seconds (0: hidden;
	// hold a key at boot to see it).
	MenuTimeout int
	// CompressionLevel is mksquashfs's zstd level (1–22).
	CompressionLevel int

	// Log receives progress. Nil discards.
	Log *slog.Logger
}

// DefaultConfig is the appliance image; OutDir, Version, Shoal and
// UpdateKey must still be set.
func DefaultConfig() Config {
	return Config{
		CacheDir: "/var/cache/shoal-image",
		Suite:    "bookworm",
		Mirror:   "http://deb.debian.org/debian",
		Packages: []string{
			"systemd", "systemd-sysv", "dbus", "udev", "iproute2", "kmod",
			"linux-image-amd64", "initramfs-tools", "zstd", "busybox",
			"systemd-boot", "systemd-boot-efi", "e2fsprogs",
			"qemu-system-x86", "qemu-utils", "ovmf", "nftables",
			// Started by udev only when a hypervisor offers its virtio port
			// (org.qemu.guest_agent.0): how the qa harness runs commands
			// in image-level nodes (docs/image.md).
			"qemu-guest-agent",
		},
		DropModules: []string{
			"kernel/sound", "kernel/drivers/media", "kernel/drivers/staging",
			"kernel/drivers/net/wireless", "kernel/net/wireless", "kernel/net/mac80211",
			"kernel/drivers/bluetooth", "kernel/net/bluetooth", "kernel/drivers/isdn",
			"kernel/drivers/gpu/drm/amd", "kernel/drivers/gpu/drm/nouveau", "kernel/drivers/gpu/drm/radeon",
			"kernel/drivers/gpu/drm/i915",
		},
		InitrdModules: []string{
			"squashfs", "virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "ahci",
		},
		ESPMiB:           256,
		SlotMiB:          1024,
		Cmdline:          "ro rootfstype=squashfs console=tty0 console=ttyS0,115200 panic=10",
		Tries:            3,
		MenuTimeout:      3,
		CompressionLevel: 6,
	}
}

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports a Config that cannot build.
func (c Config) Validate() error {
	var errs []error
	if c.OutDir == "" {
		errs = append(errs, errors.New("OutDir is required"))
	}
	if !versionRE.MatchString(c.Version) {
		errs = append(errs, fmt.Errorf("version %q: use letters, digits and . _ - (at most 64)", c.Version))
	}
	if c.Shoal == "" {
		errs = append(errs, errors.New("the shoal binary is required"))
	}
	if c.CacheDir == "" {
		errs = append(errs, errors.New("CacheDir is required"))
	}
	if len(c.UpdateKey) == 0 {
		errs = append(errs, errors.New("the update public key (UpdateKey) is required; shoal-image keygen makes one"))
	}
	if c.Suite == "" || c.Mirror == "" || len(c.Packages) == 0 {
		errs = append(errs, errors.New("the Debian suite, mirror and package list are required"))
	}
	if c.ESPMiB < 64 || c.SlotMiB < 128 {
		errs = append(errs, fmt.Errorf("ESP of %d MiB (want ≥ 64) or slot of %d MiB (want ≥ 128) too small", c.ESPMiB, c.SlotMiB))
	}
	if c.Tries < 1 || c.Tries > 9 {
		errs = append(errs, fmt.Errorf("tries %d: want 1–9", c.Tries))
	}
	if c.MenuTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative menu timeout %d", c.MenuTimeout))
	}
	if c.CompressionLevel < 1 || c.CompressionLevel > 22 {
		errs = append(errs, fmt.Errorf("zstd level %d: want 1–22", c.CompressionLevel))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("image build config: %w", err)
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
