package testguest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrNoPackage is returned when a Debian package can be neither found in
// the cache nor downloaded.
var ErrNoPackage = errors.New("debian package unavailable")

// Kernel is an unpacked Debian kernel.
type Kernel struct {
	Version string // like 6.1.0-56-amd64
	Vmlinuz string // path of the kernel image
	Modules string // lib/modules/VERSION
}

// DefaultCacheDir is where packages are kept: $SHOAL_QA_CACHE, else
// /var/cache/shoal-qa as root, else the user cache dir.
func DefaultCacheDir() string {
	if d := os.Getenv("SHOAL_QA_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/shoal-qa"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "shoal-qa")
	}
	return filepath.Join(os.TempDir(), "shoal-qa")
}

var kernelPkg = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-amd64)`)

// FetchKernel returns the current Debian kernel (the one
// linux-image-amd64 depends on), unpacked in cacheDir.
func FetchKernel(ctx context.Context, cacheDir string) (Kernel, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return Kernel{}, fmt.Errorf("%w: apt-cache depends linux-image-amd64: %v", ErrNoPackage, err)
	}
	m := kernelPkg.FindStringSubmatch(string(out))
	if m == nil {
		return Kernel{}, fmt.Errorf("%w: no kernel in `apt-cache depends linux-image-amd64`: %q", ErrNoPackage, out)
	}
	root, err := unpack(ctx, cacheDir, m[1])
	if err != nil {
		return Kernel{}, err
	}
	version := strings.TrimPrefix(m[1], "linux-image-")
	k := Kernel{Version: version, Vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+version), Modules: filepath.Join(root, "lib", "modules", version)}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return Kernel{}, fmt.Errorf("%w: %s has no kernel image: %v", ErrNoPackage, m[1], err)
	}
	return k, nil
}

// FetchBusybox returns the path of busybox from busybox-static.
func FetchBusybox(ctx context.Context, cacheDir string) (string, error) {
	root, err := unpack(ctx, cacheDir, "busybox-static")
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "busybox")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: busybox-static has no bin/busybox: %v", ErrNoPackage, err)
	}
	return p, nil
}

// unpack downloads pkg's .deb into cacheDir/debs (unless there) and
// unpacks it into cacheDir/root/pkg (unless done).
func unpack(ctx context.Context, cacheDir, pkg string) (string, error) {
	root := filepath.Join(cacheDir, "root", pkg)
	if _, err := os.Stat(filepath.Join(root, ".done")); err == nil {
		return root, nil
	}
	debs := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoPackage, err)
	}
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		if len(m) == 0 {
			return ""
		}
		return m[len(m)-1]
	}
	deb := find()
	if deb == "" {
		cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%w: apt-get download %s (run as root, or fill %s with `make deps`): %v\n%s", ErrNoPackage, pkg, debs, err, out)
		}
		if deb = find(); deb == "" {
			return "", fmt.Errorf("%w: apt-get download %s left no .deb in %s", ErrNoPackage, pkg, debs)
		}
	}
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoPackage, err)
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: dpkg-deb -x %s: %v\n%s", ErrNoPackage, deb, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".done"), nil, 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return "", err
	}
	return root, nil
}
