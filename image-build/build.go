package imagebuild

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/image-build/internal/esp"
	"github.com/shoal-hci/shoal/image-build/internal/gptdisk"
	"github.com/shoal-hci/shoal/image-build/internal/hostcmd"
	"github.com/shoal-hci/shoal/image-build/internal/rootfs"
	"github.com/shoal-hci/shoal/image-build/internal/uki"
)

// Partition labels of the appliance disk.
const (
	LabelESP   = "shoal-esp"
	LabelRootA = "shoal-root-a"
	LabelRootB = "shoal-root-b"
	LabelState = "shoal-state"
)

// Slots are the root slots, by name.
var Slots = []string{"a", "b"}

// SlotLabel returns the partition label of slot "a" or "b".
func SlotLabel(slot string) string { return "shoal-root-" + slot }

// HostTools are the programs Build runs, with the Debian package of each.
var HostTools = map[string]string{
	"debootstrap": "debootstrap",
	"mksquashfs":  "squashfs-tools",
	"objcopy":     "binutils",
	"mkfs.vfat":   "dosfstools",
	"mcopy":       "mtools",
	"mmd":         "mtools",
	"sfdisk":      "fdisk",
	"chroot":      "coreutils",
	"cp":          "coreutils",
}

// Builder builds images from one Config.
type Builder struct {
	cfg Config
}

// New checks cfg and returns a Builder.
func New(cfg Config) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Builder{cfg: cfg}, nil
}

// Result is what a build made and what it cost.
type Result struct {
	Image        string            // the GPT disk image
	RootSquashfs string            // the root file system (one slot's content)
	UKIs         map[string]string // slot → its UKI (root=PARTLABEL of that slot)
	ESPName      string            // the slot A UKI's file name on the ESP (with the try counter)

	BaseBuilt bool // the base was built (not taken from the cache)
	BaseTime  time.Duration
	Total     time.Duration

	ImageBytes, ImageAllocated, SquashfsBytes, UKIBytes, SlotBytes int64
	// Contents are the biggest parts of the root, uncompressed, biggest
	// first: what dominates the slot.
	Contents []Part
}

// Part is a piece of the root file system and its uncompressed size.
type Part struct {
	Name  string
	Bytes int64
}

// OSRelease is the os-release of a version; in a UKI it names the slot.
func OSRelease(version, slot string) []byte {
	pretty := "Shoal " + version
	if slot != "" {
		pretty += " (slot " + strings.ToUpper(slot) + ")"
	}
	return fmt.Appendf(nil, "NAME=\"Shoal\"\nID=shoal\nID_LIKE=debian\nPRETTY_NAME=%q\nVERSION=%q\nVERSION_ID=%q\nIMAGE_ID=shoal\nIMAGE_VERSION=%q\nHOME_URL=\"https://github.com/shoal-hci/shoal\"\n",
		pretty, version, version, version)
}

// SlotCmdline is the kernel command line of a slot's UKI.
func (c Config) SlotCmdline(slot string) string {
	return "root=PARTLABEL=" + SlotLabel(slot) + " " + c.Cmdline
}

// UKIName is the file name of a fresh slot's UKI on the ESP, with its try
// counter: shoal-<version>+<tries>.efi.
func UKIName(version string, tries int) string {
	return fmt.Sprintf("shoal-%s+%d.efi", version, tries)
}

// LoaderConf is systemd-boot's loader.conf.
func LoaderConf(timeout int) []byte {
	return fmt.Appendf(nil, "timeout %d\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n", timeout)
}

// Build makes the image. It needs root.
func (b *Builder) Build(ctx context.Context) (Result, error) {
	cfg := b.cfg
	log := cfg.logger()
	start := time.Now()
	if os.Geteuid() != 0 {
		return Result{}, ErrNeedsRoot
	}
	if err := hostcmd.Need(HostTools); err != nil {
		return Result{}, err
	}
	shoal, err := filepath.Abs(cfg.Shoal)
	if err != nil {
		return Result{}, err
	}
	verbs, err := rootfs.Verbs(ctx, shoal)
	if err != nil {
		return Result{}, err
	}
	for _, want := range []string{"install-units", "health"} {
		if !slices.Contains(verbs, want) {
			return Result{}, fmt.Errorf("the shoal binary %s has no %q verb; the image needs it (build it from appliance/cmd/shoal)", shoal, want)
		}
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("out dir: %w", err)
	}
	unlock, err := rootfs.Lock(ctx, cfg.CacheDir)
	if err != nil {
		return Result{}, err
	}
	defer unlock()

	res := Result{UKIs: map[string]string{}}
	t := time.Now()
	base, built, err := rootfs.EnsureBase(ctx, log, rootfs.BaseSpec{
		Suite: cfg.Suite, Mirror: cfg.Mirror, Packages: cfg.Packages,
		DropModules: cfg.DropModules, InitrdModules: cfg.InitrdModules, CacheDir: cfg.CacheDir,
	})
	if err != nil {
		return Result{}, err
	}
	res.BaseBuilt, res.BaseTime = built, time.Since(t)
	log.Info("base ready", "dir", base.Dir, "built", built, "took", res.BaseTime.Round(time.Second), "kernel", base.KernelVersion)

	stage := filepath.Join(cfg.CacheDir, "stage")
	defer os.RemoveAll(stage)
	if err := rootfs.Stage(ctx, log, base, rootfs.Layer{
		Shoal: shoal, UpdateKey: cfg.UpdateKey, OSRelease: OSRelease(cfg.Version, ""),
		Issue: fmt.Appendf(nil, "Shoal %s \\n \\l\n\n", cfg.Version),
	}, stage); err != nil {
		return Result{}, err
	}
	res.Contents, err = contents(stage)
	if err != nil {
		return Result{}, err
	}

	v := cfg.Version
	res.RootSquashfs = filepath.Join(cfg.OutDir, "shoal-"+v+".root.squashfs")
	os.Remove(res.RootSquashfs)
	log.Info("mksquashfs", "out", res.RootSquashfs)
	if _, err := hostcmd.Run(ctx, log, "mksquashfs", stage, res.RootSquashfs, "-noappend", "-quiet", "-no-progress",
		"-comp", "zstd", "-Xcompression-level", fmt.Sprint(cfg.CompressionLevel)); err != nil {
		return Result{}, fmt.Errorf("make root squashfs: %w", err)
	}

	for _, slot := range Slots {
		out := filepath.Join(cfg.OutDir, fmt.Sprintf("shoal-%s-%s.efi", v, slot))
		if err := uki.Build(ctx, log, uki.Spec{
			Stub: base.Stub(), Kernel: base.Kernel, Initrd: base.Initrd,
			OSRel: OSRelease(v, slot), Cmdline: cfg.SlotCmdline(slot),
		}, out); err != nil {
			return Result{}, err
		}
		res.UKIs[slot] = out
	}

	espImg := filepath.Join(cfg.CacheDir, "esp.img")
	defer os.Remove(espImg)
	res.ESPName = UKIName(v, cfg.Tries)
	if err := esp.Build(ctx, log, espImg, cfg.ESPMiB, []esp.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Source: base.Bootloader()},
		{Path: "EFI/systemd/systemd-bootx64.efi", Source: base.Bootloader()},
		{Path: "loader/loader.conf", Data: LoaderConf(cfg.MenuTimeout)},
		{Path: "EFI/Linux/" + res.ESPName, Source: res.UKIs["a"]},
	}); err != nil {
		return Result{}, err
	}

	res.Image = filepath.Join(cfg.OutDir, "shoal-"+v+".img")
	if _, err := gptdisk.Build(ctx, log, res.Image, []gptdisk.Partition{
		{Label: LabelESP, Type: gptdisk.TypeESP, SizeMiB: int64(cfg.ESPMiB), Content: espImg},
		{Label: LabelRootA, Type: gptdisk.TypeRootX8664, SizeMiB: int64(cfg.SlotMiB), Content: res.RootSquashfs},
		{Label: LabelRootB, Type: gptdisk.TypeRootX8664, SizeMiB: int64(cfg.SlotMiB)},
	}); err != nil {
		return Result{}, err
	}

	res.ImageBytes, res.ImageAllocated = sizes(res.Image)
	res.SquashfsBytes, _ = sizes(res.RootSquashfs)
	res.UKIBytes, _ = sizes(res.UKIs["a"])
	res.SlotBytes = int64(cfg.SlotMiB) << 20
	res.Total = time.Since(start)
	return res, nil
}

func sizes(p string) (apparent, allocated int64) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, 0
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		allocated = s.Blocks * 512
	}
	return st.Size(), allocated
}

// contents sizes the parts of the root that are worth naming.
func contents(root string) ([]Part, error) {
	named := []string{
		"usr/lib/modules", "usr/lib/firmware", "usr/bin/qemu-system-x86_64",
		"usr/share/qemu", "usr/share/seabios", "usr/share/OVMF", "usr/share/ovmf",
		"usr/bin/shoal", "usr/lib/x86_64-linux-gnu", "usr/lib/systemd",
	}
	var parts []Part
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("size root: %w", err)
	}
	var namedTotal int64
	for _, n := range named {
		var sum int64
		filepath.WalkDir(filepath.Join(root, n), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					sum += info.Size()
				}
			}
			return nil
		})
		if sum > 0 {
			parts = append(parts, Part{Name: "/" + n, Bytes: sum})
			namedTotal += sum
		}
	}
	parts = append(parts, Part{Name: "everything else", Bytes: total - namedTotal})
	sort.Slice(parts, func(i, j int) bool { return parts[i].Bytes > parts[j].Bytes })
	return append([]Part{{Name: "root, uncompressed", Bytes: total}}, parts...), nil
}
