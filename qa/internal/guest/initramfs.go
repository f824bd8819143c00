package guest

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Initramfs describes a guest's root file system.
type Initramfs struct {
	Kernel  Kernel
	Busybox string   // host path of a static busybox
	Modules []string // modules to load at boot, in this order (dependencies are added)
	// Files maps guest paths to host paths (copied, mode kept).
	Files map[string]string
	// Script is run by /init as `sh /scenario.sh` after the modules are
	// loaded and the results port is found; /init powers off after it.
	Script string
}

// initScript is the guest's /init. It exports R (the results port) and a
// `report` helper as /bin/report.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /var/lib/shoal /etc/shoal
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m || echo "insmod $m failed"; done
ip link set lo up
R=/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/virtio-ports/*; do
    [ -f "$d/name" ] && [ "$(cat $d/name)" = shoal.results ] && R=/dev/$(basename $d)
  done
  [ "$R" != /dev/null ] && break
  sleep 0.2
done
export R
report "BOOTED $(uname -r)"
sh /scenario.sh 2>&1 | tee /tmp/scenario.log
report "DONE"
sync
poweroff -f
`

const reportScript = `#!/bin/sh
echo "$*" >> "$R"
`

// Build writes the initramfs (an uncompressed newc cpio) to out.
func (s Initramfs) Build(out string) error {
	entries := map[string]cpioEntry{}
	dir := func(p string) {
		for p != "." && p != "/" && p != "" {
			if _, ok := entries[p]; !ok {
				entries[p] = cpioEntry{Mode: 0o040755}
			}
			p = path.Dir(p)
		}
	}
	file := func(guestPath string, data []byte, mode uint32) {
		guestPath = strings.TrimPrefix(guestPath, "/")
		dir(path.Dir(guestPath))
		entries[guestPath] = cpioEntry{Mode: 0o100000 | mode, Data: data}
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "sbin", "bin", "etc", "root"} {
		dir(d)
	}
	bb, err := os.ReadFile(s.Busybox)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	file("bin/busybox", bb, 0o755)
	entries["bin/sh"] = cpioEntry{Mode: 0o120777, Data: []byte("busybox")}
	file("init", []byte(initScript), 0o755)
	file("bin/report", []byte(reportScript), 0o755)
	file("scenario.sh", []byte(s.Script), 0o755)

	order, err := ModuleOrder(s.Kernel.Modules, s.Modules)
	if err != nil {
		return err
	}
	for _, rel := range order {
		b, err := os.ReadFile(filepath.Join(s.Kernel.Modules, rel))
		if err != nil {
			return err
		}
		file(path.Join("lib/modules", filepath.ToSlash(rel)), b, 0o644)
	}
	file("etc/modules.order", []byte(strings.Join(toSlash(order), "\n")+"\n"), 0o644)
	for g, h := range s.Files {
		b, err := os.ReadFile(h)
		if err != nil {
			return fmt.Errorf("read %s for the guest: %w", h, err)
		}
		fi, _ := os.Stat(h)
		file(g, b, uint32(fi.Mode().Perm()))
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := writeCPIO(w, entries); err != nil {
		f.Close()
		return fmt.Errorf("write initramfs %s: %w", out, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func toSlash(s []string) []string {
	out := make([]string, len(s))
	for i, p := range s {
		out[i] = filepath.ToSlash(p)
	}
	return out
}
