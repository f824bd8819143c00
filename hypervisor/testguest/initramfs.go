package testguest

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Initramfs describes a guest's root file system: busybox (linked as
// /bin/sh), the kernel modules to load in order, files copied from the
// host and scripts given inline. Build writes it as a newc cpio archive.
type Initramfs struct {
	Kernel  Kernel
	Busybox string   // host path of a static busybox
	Modules []string // modules to load at boot, in this order (dependencies are added)
	// Files maps guest paths to host paths (copied, mode kept).
	Files map[string]string
	// Scripts maps guest paths to contents, installed executable (0755).
	Scripts map[string]string
	// Init is the guest's /init (run by the kernel as PID 1). It finds
	// the module list in /etc/modules.order: one path a line, relative to
	// /lib/modules, in load order (see LoadModules).
	Init string
}

// LoadModules is the shell line an Init uses to load the modules named
// in Initramfs.Modules, dependencies first.
const LoadModules = `for m in $(cat /etc/modules.order); do insmod /lib/modules/$m || echo "insmod $m failed"; done`

// InitPreamble begins an Init: busybox applets on PATH, proc, sys, dev,
// tmpfs on /run and /tmp, the modules loaded, loopback up.
const InitPreamble = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
` + LoadModules + `
ip link set lo up
`

// Build writes the initramfs (an uncompressed newc cpio) to out.
func (s Initramfs) Build(out string) error {
	if s.Init == "" {
		return fmt.Errorf("build initramfs %s: no /init script given", out)
	}
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
	file("init", []byte(s.Init), 0o755)
	for g, body := range s.Scripts {
		file(g, []byte(body), 0o755)
	}

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
		fi, err := os.Stat(h)
		if err != nil {
			return fmt.Errorf("read %s for the guest: %w", h, err)
		}
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
		return fmt.Errorf("write initramfs %s: %w", out, err)
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
