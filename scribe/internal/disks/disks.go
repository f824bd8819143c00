package disks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// Config says where the disks are and whose they are.
type Config struct {
	// Globs are the paths of data disks (shell globs). Zero value: the
	// machine's whole block devices except the boot disk (see the package
	// doc).
	Globs []string
	// NodeID and ClusterID are written into the superblock of a disk
	// formatted here, and must match on a disk opened. Required.
	NodeID, ClusterID chunkstore.ID
	// ForceFormat lists disks (paths as discovered) that are formatted
	// even if they hold foreign data or another node's store. Zero value:
	// none.
	ForceFormat []string
	// ChunkSize of disks formatted here. Zero value: chunkstore's default.
	ChunkSize uint32
	// Buffered opens disks without O_DIRECT. Zero value: O_DIRECT where
	// the file system supports it, buffered elsewhere.
	Buffered bool
	// NoUring does the disks' I/O with blocking system calls. Zero value:
	// O_DIRECT disks use io_uring where the kernel allows it
	// (chunkstore.IOAuto).
	NoUring bool
	// SysRoot is prefixed to /sys and /proc paths (tests). Zero value: "".
	SysRoot string
	// Log receives one line per disk. Zero value: slog.Default().
	Log *slog.Logger
}

// Validate reports a configuration Open cannot use.
func (c Config) Validate() error {
	if c.NodeID == (chunkstore.ID{}) || c.ClusterID == (chunkstore.ID{}) {
		return errors.New("disks config: node and cluster IDs are required")
	}
	for _, g := range c.Globs {
		if _, err := filepath.Match(g, ""); err != nil {
			return fmt.Errorf("disks config: glob %q: %w", g, err)
		}
	}
	return nil
}

// Disk is one open data disk.
type Disk struct {
	Path  string
	Store *chunkstore.Store
	// Direct: opened with O_DIRECT.
	Direct bool
	// Formatted: Open formatted it.
	Formatted bool
}

// Size is the chunk area in bytes.
func (d *Disk) Size() int64 {
	return int64(d.Store.Stats().Chunks) * d.Store.ChunkSize()
}

// Free is the chunk area not in use, in bytes.
func (d *Disk) Free() int64 {
	st := d.Store.Stats()
	return int64(st.Chunks-st.Used) * d.Store.ChunkSize()
}

// ID is the disk's UUID from its superblock.
func (d *Disk) ID() chunkstore.ID { return d.Store.Superblock().DiskID }

// Close syncs and closes the disk.
func (d *Disk) Close() error {
	return errors.Join(d.Store.Sync(), d.Store.Close())
}

// Problem is a disk Open left alone, and why.
type Problem struct {
	Path string
	Err  error
}

func (p Problem) Error() string { return p.Path + ": " + p.Err.Error() }

// Discover returns the paths of the data disks, sorted.
func Discover(cfg Config) ([]string, error) {
	if len(cfg.Globs) == 0 {
		return blockDevices(cfg.SysRoot)
	}
	var out []string
	for _, g := range cfg.Globs {
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("disk glob %q: %w", g, err)
		}
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && (fi.Mode().IsRegular() || fi.Mode()&os.ModeDevice != 0) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Open discovers the disks and opens each, formatting blank ones. It
// returns the disks opened (the caller closes them) and the ones left
// alone; the error is for bad configuration or failed discovery only.
func Open(ctx context.Context, cfg Config) ([]*Disk, []Problem, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	paths, err := Discover(cfg)
	if err != nil {
		return nil, nil, err
	}
	var disks []*Disk
	var probs []Problem
	for _, p := range paths {
		if ctx.Err() != nil {
			break
		}
		d, err := openOne(cfg, p)
		if err != nil {
			log.Error("data disk left alone", "disk", p, "err", err)
			probs = append(probs, Problem{Path: p, Err: err})
			continue
		}
		log.Info("data disk", "disk", p, "id", d.ID(), "size", d.Size(), "free", d.Free(), "direct", d.Direct, "formatted", d.Formatted)
		disks = append(disks, d)
	}
	if err := ctx.Err(); err != nil {
		for _, d := range disks {
			d.Close()
		}
		return nil, nil, err
	}
	return disks, probs, nil
}

func openOne(cfg Config, path string) (*Disk, error) {
	direct := !cfg.Buffered
	mode := chunkstore.IOAuto
	if cfg.NoUring {
		mode = chunkstore.IOSyscalls
	}
	dev, err := chunkstore.OpenFile(path, chunkstore.FileOptions{Direct: direct, IO: mode, Log: cfg.Log})
	if err != nil && direct {
		direct = false
		dev, err = chunkstore.OpenFile(path, chunkstore.FileOptions{})
	}
	if err != nil {
		return nil, err
	}
	d := &Disk{Path: path, Direct: direct}
	force := slices.Contains(cfg.ForceFormat, path)
	sb, err := chunkstore.ReadSuperblock(dev)
	ours := err == nil && sb.NodeID == cfg.NodeID && sb.ClusterID == cfg.ClusterID
	switch {
	case ours:
		// Already this node's: opened as is, even when listed in
		// ForceFormat (a flag left in a unit file must not wipe the
		// disk on every start).
	case err == nil && !force:
		dev.Close()
		return nil, fmt.Errorf("%w: node %s cluster %s", ErrForeignStore, sb.NodeID, sb.ClusterID)
	case err == nil || errors.Is(err, chunkstore.ErrNotFormatted):
		_, ferr := chunkstore.Format(dev, chunkstore.FormatOptions{
			NodeID: cfg.NodeID, ClusterID: cfg.ClusterID, ChunkSize: cfg.ChunkSize, Force: force,
		})
		if ferr != nil {
			dev.Close()
			return nil, ferr
		}
		d.Formatted = true
	default:
		dev.Close()
		return nil, err
	}
	st, err := chunkstore.Open(dev)
	if err != nil {
		dev.Close()
		return nil, err
	}
	d.Store = st
	return d, nil
}

// virtual block devices are never data disks.
var virtualPrefixes = []string{"loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"}

// blockDevices lists /dev/NAME for every whole block device in
// root/sys/block that is not virtual, not empty and not in use (mounted,
// swap or held by another device, itself or a partition).
func blockDevices(root string) ([]string, error) {
	sysBlock := filepath.Join(root, "/sys/block")
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	busy := busyDevices(root)
	var out []string
	for _, e := range ents {
		name := e.Name()
		if slices.ContainsFunc(virtualPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		if n, err := readInt(filepath.Join(dir, "size")); err != nil || n == 0 {
			continue
		}
		if inUse(dir, name, busy) {
			continue
		}
		out = append(out, "/dev/"+name)
	}
	slices.Sort(out)
	return out, nil
}

// inUse reports whether the disk in sysfs dir, or one of its partitions,
// is busy or has holders.
func inUse(dir, name string, busy map[string]bool) bool {
	if busy[name] || hasHolders(dir) {
		return true
	}
	parts, _ := os.ReadDir(dir)
	for _, p := range parts {
		if !strings.HasPrefix(p.Name(), name) {
			continue
		}
		pdir := filepath.Join(dir, p.Name())
		if _, err := os.Stat(filepath.Join(pdir, "partition")); err != nil {
			continue
		}
		if busy[p.Name()] || hasHolders(pdir) {
			return true
		}
		// A partitioned disk is someone's: the boot disk, or a disk
		// prepared by hand. Never take it.
		return true
	}
	return false
}

func hasHolders(dir string) bool {
	h, err := os.ReadDir(filepath.Join(dir, "holders"))
	return err == nil && len(h) > 0
}

// busyDevices returns the kernel names of devices mounted or used as swap.
func busyDevices(root string) map[string]bool {
	busy := map[string]bool{}
	add := func(src string) {
		if !strings.HasPrefix(src, "/dev/") {
			return
		}
		if real, err := filepath.EvalSymlinks(filepath.Join(root, src)); err == nil {
			src = real
		}
		busy[filepath.Base(src)] = true
	}
	if f, err := os.Open(filepath.Join(root, "/proc/self/mountinfo")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			_, rest, ok := strings.Cut(sc.Text(), " - ")
			if f := strings.Fields(rest); ok && len(f) >= 2 {
				add(f[1])
			}
		}
		f.Close()
	}
	if f, err := os.Open(filepath.Join(root, "/proc/swaps")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 0 {
				add(f[0])
			}
		}
		f.Close()
	}
	return busy
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
