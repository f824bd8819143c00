// Package rootfs makes the appliance's root file system tree: a Debian
// base from debootstrap, customised for a read-only squashfs root (kernel
// modules in the initramfs, fstab for the state and EFI partitions, the
// systemd-repart definition of the state partition, an empty machine-id),
// cached on disk under a key made of everything that went into it; and the
// cheap per-build layer (the shoal binary, its units, the update key,
// os-release) on a hard-linked copy of the base.
//
// Invariants: a cached base is complete or absent (built in a temp dir and
// renamed); it is never written after that: the layer is applied to a
// hard-link copy and every file it writes replaces a link instead of
// writing through it. Builds on one cache directory are serialised by a
// lock file.
package rootfs
