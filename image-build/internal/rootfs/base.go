package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/image-build/internal/hostcmd"
)

// revision changes whenever customise changes, so cached bases built by
// older code are not reused.
const revision = "shoal-base-3"

// BaseSpec is what the base tree is made of.
type BaseSpec struct {
	Suite    string   // bookworm
	Mirror   string   // http://deb.debian.org/debian
	Packages []string // on top of minbase
	// DropModules are directories under the kernel's modules tree
	// (kernel/sound, …) removed to save space.
	DropModules []string
	// InitrdModules are loaded by the initramfs before it looks for the
	// root (the squashfs driver, disk controllers).
	InitrdModules []string
	CacheDir      string
}

// Key identifies a base: same key, same tree.
func (s BaseSpec) Key() string {
	h := sha256.New()
	pkgs := slices.Clone(s.Packages)
	slices.Sort(pkgs)
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n%s\n", revision, s.Suite, s.Mirror,
		strings.Join(pkgs, ","), strings.Join(s.DropModules, ","), strings.Join(s.InitrdModules, ","))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Base is a finished base tree in the cache.
type Base struct {
	Dir           string // <cache>/base-<key>
	Root          string // the tree
	Kernel        string // vmlinuz, moved out of the tree
	Initrd        string // the initramfs, moved out of the tree
	KernelVersion string
}

// Stub and Bootloader are the systemd-boot EFI binaries inside the base.
func (b Base) Stub() string {
	return filepath.Join(b.Root, "usr/lib/systemd/boot/efi/linuxx64.efi.stub")
}

// Bootloader is systemd-boot itself.
func (b Base) Bootloader() string {
	return filepath.Join(b.Root, "usr/lib/systemd/boot/efi/systemd-bootx64.efi")
}

// Lock takes the cache directory's lock; call the returned function to
// release it.
func Lock(ctx context.Context, cacheDir string) (func(), error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(cacheDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("cache lock: %w", err)
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("wait for the cache lock %s (another build runs): %w", f.Name(), ctx.Err())
		case <-t.C:
		}
	}
}

// EnsureBase returns the cached base for spec, building it first when it is
// missing (minutes: debootstrap, then customise). built says which.
// The caller holds the cache lock.
func EnsureBase(ctx context.Context, log *slog.Logger, spec BaseSpec) (b Base, built bool, err error) {
	dir := filepath.Join(spec.CacheDir, "base-"+spec.Key())
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		b, err := loadBase(dir)
		return b, false, err
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return Base{}, false, fmt.Errorf("clear %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return Base{}, false, err
	}
	debs := filepath.Join(spec.CacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return Base{}, false, err
	}
	log.Info("debootstrap: building the base tree (minutes; cached afterwards)", "suite", spec.Suite, "key", spec.Key())
	if _, err := hostcmd.Run(ctx, log, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(spec.Packages, ","), "--cache-dir="+debs,
		spec.Suite, filepath.Join(tmp, "root"), spec.Mirror); err != nil {
		return Base{}, false, fmt.Errorf("debootstrap: %w", err)
	}
	if err := customise(ctx, log, spec, tmp); err != nil {
		return Base{}, false, fmt.Errorf("customise base: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "done"), []byte(spec.Key()+"\n"), 0o644); err != nil {
		return Base{}, false, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return Base{}, false, fmt.Errorf("finish base: %w", err)
	}
	b, err = loadBase(dir)
	return b, true, err
}

func loadBase(dir string) (Base, error) {
	b := Base{Dir: dir, Root: filepath.Join(dir, "root"), Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img")}
	v, err := os.ReadFile(filepath.Join(dir, "kernel-version"))
	if err != nil {
		return Base{}, fmt.Errorf("cached base %s is incomplete (delete it): %w", dir, err)
	}
	b.KernelVersion = strings.TrimSpace(string(v))
	return b, nil
}

// Files the base carries for the appliance.
const (
	fstab = `# Shoal appliance. The root is a read-only squashfs slot, named on the kernel
# command line (root=PARTLABEL=shoal-root-a or -b). The state partition is made
# by systemd-repart on first boot (/usr/lib/repart.d/50-shoal-state.conf).
PARTLABEL=shoal-state  /var   ext4   defaults,noatime,x-systemd.device-timeout=5min  0 2
PARTLABEL=shoal-esp    /boot  vfat   umask=0077,noatime,x-systemd.device-timeout=5min  0 0
tmpfs                  /tmp   tmpfs  mode=1777,nosuid,nodev  0 0
`
	repartState = `# The state partition of a Shoal node: created and formatted by
# systemd-repart on first boot in the free space of the boot disk (all of
# it), mounted on /var (/etc/fstab). Other disks are left to scribe.
[Partition]
Type=linux-generic
Label=shoal-state
Format=ext4
`
)

// customise turns the debootstrap tree in dir/root into the appliance base.
func customise(ctx context.Context, log *slog.Logger, spec BaseSpec, dir string) error {
	root := filepath.Join(dir, "root")
	write := func(rel, content string, mode fs.FileMode) error {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		os.Remove(p)
		return os.WriteFile(p, []byte(content), mode)
	}
	symlink := func(rel, target string) error {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		os.Remove(p)
		return os.Symlink(target, p)
	}

	kvers, err := filepath.Glob(filepath.Join(root, "usr/lib/modules/*"))
	if err != nil || len(kvers) != 1 {
		return fmt.Errorf("want exactly one kernel in the base, found %v", kvers)
	}
	kver := filepath.Base(kvers[0])
	for _, d := range spec.DropModules {
		if err := os.RemoveAll(filepath.Join(kvers[0], d)); err != nil {
			return err
		}
	}
	if _, err := hostcmd.Run(ctx, log, "chroot", root, "depmod", "-a", kver); err != nil {
		return err
	}
	steps := []error{
		write("etc/initramfs-tools/modules", "# Shoal: the root is squashfs on a disk partition.\n"+strings.Join(spec.InitrdModules, "\n")+"\n", 0o644),
		write("etc/initramfs-tools/conf.d/shoal.conf", "MODULES=most\nCOMPRESS=zstd\n", 0o644),
		write("etc/fstab", fstab, 0o644),
		write("usr/lib/repart.d/50-shoal-state.conf", repartState, 0o644),
		// Empty: systemd makes a transient one in /run on the read-only root.
		write("etc/machine-id", "", 0o444),
		write("etc/hostname", "shoal\n", 0o644),
		// netd writes the node's resolver configuration there.
		symlink("etc/resolv.conf", "../run/shoal/resolv.conf"),
		// It would prompt on the console on a machine-id-less boot.
		symlink("etc/systemd/system/systemd-firstboot.service", "/dev/null"),
	}
	if err := errors.Join(steps...); err != nil {
		return err
	}
	// Timers that maintain a package-managed system: the root is an image.
	for _, t := range []string{"apt-daily-upgrade.timer", "apt-daily.timer", "dpkg-db-backup.timer"} {
		os.Remove(filepath.Join(root, "etc/systemd/system/timers.target.wants", t))
	}
	if _, err := hostcmd.Run(ctx, log, "chroot", root, "update-initramfs", "-u", "-k", kver); err != nil {
		return err
	}
	// Kernel and initramfs go into the UKIs, not the root.
	if err := os.Rename(filepath.Join(root, "boot/vmlinuz-"+kver), filepath.Join(dir, "vmlinuz")); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(root, "boot/initrd.img-"+kver), filepath.Join(dir, "initrd.img")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kernel-version"), []byte(kver+"\n"), 0o644); err != nil {
		return err
	}
	// What an image has no use for; /boot stays as the ESP's mount point and
	// /var as the state partition's.
	for _, glob := range []string{
		"boot/*", "vmlinuz*", "initrd.img*", "var/*",
		"usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
	} {
		matches, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	return nil
}
