package qemu

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Accel is a QEMU accelerator.
type Accel string

const (
	AccelKVM Accel = "kvm"
	AccelTCG Accel = "tcg"
)

// Host is what this machine offers QEMU (see ProbeHost).
type Host struct {
	QEMU  string // binary path
	Accel Accel  // kvm only where it really runs guest code
	// AccelReason says why Accel was chosen (for the log).
	AccelReason string
	Vsock       bool // /dev/vhost-vsock exists
}

// Files of a VM's runtime directory.
const (
	fileSpec    = "spec.json"
	filePID     = "pid"
	fileQMP     = "qmp.sock"
	fileSerial  = "serial.sock"
	fileConsole = "console.log"
	fileAgent   = "agent.sock"
	fileLog     = "qemu.log"
	fileStopped = "stopped"
)

// AgentPort is the virtio-serial port name the guest agent opens.
const AgentPort = "org.shoal.agent.0"

// AgentSocket is the host end of the agent's virtio-serial port: QEMU
// listens on it, the agent link connects (one client at a time).
func AgentSocket(dir string) string { return filepath.Join(dir, fileAgent) }

// SerialSocket is the serial console: QEMU listens, one client at a time.
func SerialSocket(dir string) string { return filepath.Join(dir, fileSerial) }

// ConsoleLog is everything the serial console printed.
func ConsoleLog(dir string) string { return filepath.Join(dir, fileConsole) }

// QMPSocket is the VM's QMP monitor.
func QMPSocket(dir string) string { return filepath.Join(dir, fileQMP) }

// opt escapes a value for QEMU's comma-separated option syntax.
func opt(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// blockdev is the -blockdev options of d as block node node: the
// protocol node (nbd or file) and, for qcow2, a format node on top; a raw
// NBD export is used directly, a raw file through a raw format node.
func blockdev(node string, d Disk) []string {
	ro := ""
	if d.ReadOnly {
		ro = ",read-only=on"
	}
	format := d.Format
	if format == "" {
		format = "raw"
	}
	if d.NBDSocket != "" {
		nbd := fmt.Sprintf("server.type=unix,server.path=%s,export=%s,cache.direct=on%s", opt(d.NBDSocket), opt(d.NBDExport), ro)
		if format == "raw" {
			return []string{"-blockdev", fmt.Sprintf("driver=nbd,node-name=%s,%s", node, nbd)}
		}
		return []string{"-blockdev", fmt.Sprintf("driver=nbd,node-name=%s-nbd,%s", node, nbd),
			"-blockdev", fmt.Sprintf("driver=%s,node-name=%s,file=%s-nbd%s", format, node, node, ro)}
	}
	return []string{"-blockdev", fmt.Sprintf("driver=file,node-name=%s-file,filename=%s%s", node, opt(d.File), ro),
		"-blockdev", fmt.Sprintf("driver=%s,node-name=%s,file=%s-file%s", format, node, node, ro)}
}

// Args is the qemu-system-x86_64 command line (without the binary) for
// spec on host, with its runtime files in dir. incoming adds
// "-incoming defer" for a migration destination.
func Args(spec Spec, host Host, dir string, incoming bool) []string {
	s := spec.withDefaults()
	accel := host.Accel
	if accel == "" {
		accel = AccelTCG
	}
	a := []string{
		"-name", "guest=" + s.Name + ",debug-threads=on",
		"-machine", "q35",
		"-accel", string(accel),
		"-smp", fmt.Sprint(s.CPUs),
		"-m", fmt.Sprintf("%dM", s.MemoryMiB),
		"-nodefaults", "-no-user-config", "-no-shutdown",
		"-display", "none", "-vga", "none",
		"-chardev", "socket,id=qmp,path=" + opt(QMPSocket(dir)) + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=serial0,path=" + opt(SerialSocket(dir)) + ",server=on,wait=off,logfile=" + opt(ConsoleLog(dir)) + ",logappend=on",
		"-serial", "chardev:serial0",
		"-device", "pvpanic",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=agent0,path=" + opt(AgentSocket(dir)) + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent0,name=" + AgentPort,
	}
	if s.UUID != "" {
		a = append(a, "-uuid", s.UUID)
	}
	// Boot order: a CD-ROM first unless DiskFirst, then the disks in
	// order. Indexes start at 1: with -kernel, QEMU's linuxboot option
	// ROM takes bootindex 0.
	cd := s.CDROMDisk
	if s.CDROM != "" {
		cd = &Disk{File: s.CDROM}
	}
	cdBoot, diskBoot := 1, 1
	switch {
	case cd != nil && s.DiskFirst:
		cdBoot = 1 + len(s.Disks)
	case cd != nil:
		diskBoot = 2
	}
	if cd != nil {
		ro := *cd
		ro.ReadOnly = true
		a = append(a, blockdev("cd0", ro)...)
		a = append(a, "-device", fmt.Sprintf("ide-cd,drive=cd0,id=cd0,bootindex=%d", cdBoot))
	}
	for i, d := range s.Disks {
		node := fmt.Sprintf("disk%d", i)
		a = append(a, blockdev(node, d)...)
		a = append(a, "-device", fmt.Sprintf("virtio-blk-pci,drive=%s,id=vd%d,bootindex=%d", node, i, diskBoot+i))
	}
	for i, n := range s.NICs {
		nd := fmt.Sprintf("net%d", i)
		switch n.Kind {
		case NICTap:
			a = append(a, "-netdev", fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", nd, TapName(s.ID, i)))
		default:
			a = append(a, "-netdev", "user,id="+nd)
		}
		a = append(a, "-device", fmt.Sprintf("virtio-net-pci,netdev=%s,id=nic%d,mac=%s", nd, i, n.MAC))
	}
	if s.Kernel != "" {
		a = append(a, "-kernel", s.Kernel)
		if s.Initrd != "" {
			a = append(a, "-initrd", s.Initrd)
		}
		if s.Append != "" {
			a = append(a, "-append", s.Append)
		}
	}
	if host.Vsock && s.VsockCID != 0 {
		a = append(a, "-device", fmt.Sprintf("vhost-vsock-pci,id=vsock0,guest-cid=%d", s.VsockCID))
	}
	if incoming {
		a = append(a, "-incoming", "defer")
	}
	return a
}
