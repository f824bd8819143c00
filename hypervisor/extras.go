package hypervisor

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
)

// More fields of a vm/<name> record, beside those of VMRecord: direct
// kernel boot (the test guest, until images are stored in scribe), the
// kind of the next stop, and what the guest agent reports.
const (
	FieldKernel    = "kernel"     // desired: kernel path present on every node, "" for none
	FieldInitrd    = "initrd"     // desired: initrd path, needs a kernel
	FieldAppend    = "append"     // desired: kernel command line, needs a kernel
	FieldStopForce = "stop_force" // desired: "1" makes the next stop skip the ACPI power button
	FieldAgentSeen = "agent_seen" // status: host time (RFC 3339) of the agent's last heartbeat, at most every AgentReportEvery
	FieldGuestIPs  = "guest_ips"  // status: JSON ["eth0 10.0.2.15/24", …] as the agent reports them
	FieldBootFrom  = "boot_from"  // desired: BootFromCDROM or BootFromDisk, "" for the default (CD-ROM first)
)

// Values of FieldBootFrom: which boots first when a VM has a CD-ROM.
const (
	BootFromCDROM = "cdrom"
	BootFromDisk  = "disk"
)

// Boot is a VM's direct kernel boot, from the record's kernel, initrd
// and append fields. The zero value boots from the disks or the CD-ROM.
type Boot struct {
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	Append string `json:"append,omitempty"`
	// From says what boots first when the VM has a CD-ROM: BootFromCDROM
	// ("" too) or BootFromDisk.
	From string `json:"from,omitempty"`
}

// ParseBoot decodes the boot fields of the record under key: paths must
// be absolute, and initrd and append need a kernel.
func ParseBoot(key string, fields map[string]string) (Boot, error) {
	b := Boot{Kernel: fields[FieldKernel], Initrd: fields[FieldInitrd], Append: fields[FieldAppend], From: fields[FieldBootFrom]}
	if err := b.Validate(); err != nil {
		return Boot{}, fmt.Errorf("%w %s: %v", ErrBadRecord, key, err)
	}
	return b, nil
}

// Validate checks b without touching the files.
func (b Boot) Validate() error {
	for _, p := range []string{b.Kernel, b.Initrd} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("boot file %q is not an absolute path", p)
		}
	}
	if b.Kernel == "" && (b.Initrd != "" || b.Append != "") {
		return fmt.Errorf("initrd and append need a kernel")
	}
	if strings.ContainsRune(b.Append, '\n') {
		return fmt.Errorf("append holds a newline")
	}
	if b.From != "" && b.From != BootFromCDROM && b.From != BootFromDisk {
		return fmt.Errorf("boot_from %q is not %s or %s", b.From, BootFromCDROM, BootFromDisk)
	}
	return nil
}

// Fields encodes b.
func (b Boot) Fields() map[string]string {
	return map[string]string{FieldKernel: b.Kernel, FieldInitrd: b.Initrd, FieldAppend: b.Append, FieldBootFrom: b.From}
}

// MACFor is the MAC address of NIC index of the VM with ID id: the same
// on every node for the VM's life (the CLI stores it at create).
func MACFor(id string, index int) string { return qemu.MACFor(id, index).String() }

// NetworkDefault and NetworkNone are the networks `shoal vm create
// --net` takes: the node's LAN side, or no NIC.
const (
	NetworkDefault = "default"
	NetworkNone    = "none"
)

// spec builds the QEMU spec of r on this node.
func (h *Hypervisor) spec(r VMRecord, b Boot) qemu.Spec {
	s := qemu.Spec{ID: r.ID, Name: r.Name, CPUs: r.CPUs, MemoryMiB: r.MemoryMiB,
		Kernel: b.Kernel, Initrd: b.Initrd, Append: b.Append}
	for _, d := range r.Disks {
		s.Disks = append(s.Disks, qemu.Disk{NBDSocket: h.cfg.NBDSocket, NBDExport: d.VSD, Format: d.Format, ReadOnly: d.ReadOnly})
	}
	if r.CDROM != "" {
		s.CDROMDisk = &qemu.Disk{NBDSocket: h.cfg.NBDSocket, NBDExport: r.CDROM, ReadOnly: true}
		s.DiskFirst = b.From == BootFromDisk
	}
	for _, n := range r.NICs {
		nic := qemu.NIC{Kind: qemu.NICUser, MAC: n.MAC}
		if h.cfg.Bridge != "" {
			nic = qemu.NIC{Kind: qemu.NICTap, Bridge: h.cfg.Bridge, MAC: n.MAC}
		}
		s.NICs = append(s.NICs, nic)
	}
	return s
}
