package proccluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/netns"
	"golang.org/x/sys/unix"
)

// Down removes everything the cluster in dir left, whether or not its
// state file is readable: processes tagged with its tag or inside its
// namespaces, every mount under dir, its namespaces, its notify sockets,
// disk images and state. Logs stay in dir/nodes/*/logs.
func Down(ctx context.Context, dir string, out io.Writer) error {
	if err := CheckPrereqs(); err != nil && errors.Is(err, ErrNotRoot) {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	tag, err := TagFor(dir)
	if err != nil {
		return err
	}
	return down(ctx, tag, dir, out)
}

// DownAll is Down for every harness cluster on this machine, found by
// prefix: tagged processes, shq- namespaces, faultdisk and shq- mounts.
func DownAll(ctx context.Context, out io.Writer) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return down(ctx, "", "", out)
}

func down(ctx context.Context, tag, dir string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	prefix := netns.Prefix + tag
	if tag != "" {
		prefix += "-"
	}
	names, err := netns.List(ctx, prefix)
	if err != nil {
		return err
	}
	// Processes: tagged ones, and whatever runs inside our namespaces.
	recs := taggedProcs(tag)
	seen := map[int]bool{}
	for _, r := range recs {
		seen[r.Pid] = true
	}
	for _, n := range names {
		pids, _ := netns.Pids(ctx, n)
		for _, p := range pids {
			if st, start, err := procStat(p); err == nil && st != 'Z' && !seen[p] && p != os.Getpid() {
				seen[p] = true
				recs = append(recs, procRecord{Pid: p, Start: start})
			}
		}
	}
	// With no dir (DownAll), the cluster dirs are the parents of the
	// namespace-file directories still mounted.
	dirs := []string{dir}
	if dir == "" {
		dirs = nil
		for _, mp := range ourMounts("", false) {
			if isNSDir(mp) {
				dirs = append(dirs, filepath.Dir(mp))
			}
		}
	}
	// Disk servers go last: a FUSE server cannot finish unmounting while a
	// node's mount namespace still holds a copy of its mount.
	var procs, servers []procRecord
	for _, r := range recs {
		if isDiskServer(r.Pid) {
			servers = append(servers, r)
		} else {
			procs = append(procs, r)
		}
	}
	var errs []error
	if len(procs) > 0 {
		fmt.Fprintf(out, "shoal-qa: stopping %d processes\n", len(procs))
		errs = append(errs, stopAll(ctx, procs, 3*time.Second))
	}
	errs = append(errs, unmountAll(dir, out, false))
	if len(servers) > 0 {
		fmt.Fprintf(out, "shoal-qa: stopping %d disk servers\n", len(servers))
		errs = append(errs, stopAll(ctx, servers, 3*time.Second))
	}
	errs = append(errs, unmountAll(dir, out, true))
	for _, n := range names {
		if err := netns.Delete(ctx, n); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(out, "shoal-qa: deleted namespace %s\n", n)
		}
	}
	notify, _ := filepath.Glob(filepath.Join(os.TempDir(), "shq-"+tag+"*-notify-*"))
	for _, n := range notify {
		os.RemoveAll(n)
	}
	for _, dir := range dirs {
		if !looksLikeClusterDir(dir) {
			continue
		}
		errs = append(errs, detachLoops(ctx, dir, out))
		imgs, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "disks", "*.img"))
		for _, f := range imgs {
			os.Remove(f)
		}
		socks, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "*.sock"))
		for _, f := range socks {
			os.Remove(f)
		}
		os.Remove(statePath(dir))
		nsDirs, _ := filepath.Glob(filepath.Join(dir, "shq-"+tag+"*-ns"))
		for _, d := range nsDirs {
			os.RemoveAll(d)
		}
	}
	return errors.Join(errs...)
}

// detachLoops detaches the loop devices backed by dir's disk images
// (DiskModeLoop), found in /sys/block/loop*/loop/backing_file.
func detachLoops(ctx context.Context, dir string, out io.Writer) error {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		back := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if !isDiskImage(dir, back) {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		if o, err := exec.CommandContext(ctx, "losetup", "--detach", dev).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s (%s): %w: %s", dev, back, err, strings.TrimSpace(string(o))))
		} else {
			fmt.Fprintf(out, "shoal-qa: detached %s\n", dev)
		}
	}
	return errors.Join(errs...)
}

// isDiskImage reports whether path is a disk image of the cluster in dir,
// dir/nodes/NODE/disks/diskK.img.
func isDiskImage(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	if err != nil || !filepath.IsAbs(path) {
		return false
	}
	p := strings.Split(rel, "/")
	return len(p) == 4 && p[0] == "nodes" && p[2] == "disks" && strings.HasPrefix(p[3], "disk") && strings.HasSuffix(p[3], ".img")
}

// unmountAll lazily unmounts our mounts under dir, deepest first; with
// fuse false it leaves FUSE mounts for their servers to unmount.
func unmountAll(dir string, out io.Writer, fuse bool) error {
	var errs []error
	for round := 0; round < 5; round++ {
		mps := ourMounts(dir, fuse)
		if len(mps) == 0 {
			break
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			} else {
				fmt.Fprintf(out, "shoal-qa: unmounted %s\n", mp)
			}
		}
	}
	if left := ourMounts(dir, fuse); len(left) > 0 {
		errs = append(errs, fmt.Errorf("mounts survive: %v", left))
	}
	return errors.Join(errs...)
}

// isDiskServer reports whether pid runs the fusedisk verb.
func isDiskServer(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 1 && args[1] == "fusedisk"
}

// ourMounts returns, deepest first, the harness's mount points under dir
// (anywhere if dir is ""): faultdisk FUSE mounts (if fuse), the shq-TAG-ns
// bind mounts and the namespace files in them.
func ourMounts(dir string, fuse bool) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		mp := unescapeMount(fields[4])
		sep := 6
		for sep < len(fields) && fields[sep] != "-" {
			sep++
		}
		if sep+2 >= len(fields) {
			continue
		}
		fstype, source := fields[sep+1], fields[sep+2]
		isFUSE := fstype == "fuse.faultdisk" || source == "shoal-qa-faultdisk"
		if isFUSE && !fuse {
			continue
		}
		// Only our kinds of mount, even under dir: a mistaken --dir must not
		// unmount someone else's file systems.
		ours := isFUSE || isNSDir(mp) || isNSDir(filepath.Dir(mp))
		if ours && (dir == "" || strings.HasPrefix(mp, dir+"/")) {
			mps = append(mps, mp)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return strings.Count(mps[i], "/") > strings.Count(mps[j], "/") })
	return mps
}

// looksLikeClusterDir reports whether dir has the harness's layout, so a
// mistaken --dir loses no file.
func looksLikeClusterDir(dir string) bool {
	for _, sub := range []string{"switch", "nodes"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// isNSDir reports whether p is a directory of persisted namespace files,
// DIR/shq-TAG-ns.
func isNSDir(p string) bool {
	b := filepath.Base(p)
	return strings.HasPrefix(b, "shq-") && strings.HasSuffix(b, "-ns")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
