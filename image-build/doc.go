// Package imagebuild builds the bootable appliance image and the pieces of
// update bundles: a GPT disk image with an EFI system partition (systemd-boot
// and one unified kernel image, UKI, per root slot), two read-only squashfs
// root slots A and B, and a systemd-repart definition in the root that makes
// the state partition on first boot.
//
// A build has two stages. The base (debootstrap of Debian with the kernel,
// systemd, QEMU, OVMF…, customised for a read-only root) is cached under
// Config.CacheDir, keyed by everything that goes into it, and takes minutes
// the first time. The layer (the shoal binary, its systemd units, the update
// public key, os-release) goes on a hard-linked copy of the base every build;
// then mksquashfs, objcopy (UKIs), mtools (ESP) and sfdisk (GPT) run, which
// together take well under a minute.
//
// Boot counting: the slot's UKI lands on the ESP as
// EFI/Linux/shoal-<version>+<tries>.efi; systemd-boot counts tries down and
// systemd-bless-boot drops the suffix once boot-complete.target (which
// shoal-health.service gates) is reached. An entry out of tries sorts last,
// so systemd-boot boots the other slot.
//
// Build needs root (debootstrap, chroot, files owned by other users) and the
// host tools listed in HostTools. Nothing here mounts anything or uses loop
// devices. Builds sharing a cache directory are serialised by a lock file.
package imagebuild
