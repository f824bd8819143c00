package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// Spec is everything QEMU needs to run one VM. It is stored as spec.json
// in the VM's runtime directory; Attach compares it with the caller's.
type Spec struct {
	// ID is the VM's stable identifier (from its cluster record). MACs
	// and tap names derive from it. Required: [a-zA-Z0-9._-]{1,64}.
	ID string `json:"id"`
	// Name is the VM's human name (QEMU -name). Required.
	Name string `json:"name"`
	// UUID is the SMBIOS system UUID the guest sees; "" lets QEMU pick none.
	UUID string `json:"uuid,omitempty"`
	// CPUs is the number of vCPUs; 0 means 1.
	CPUs int `json:"cpus,omitempty"`
	// MemoryMiB is the guest RAM; 0 means 512.
	MemoryMiB int `json:"memory_mib,omitempty"`
	// Disks are attached as virtio-blk in order; the first is the boot disk.
	Disks []Disk `json:"disks,omitempty"`
	// CDROM is an ISO image path (read-only IDE CD-ROM), "" for none.
	// With a CD-ROM the VM boots from it first.
	CDROM string `json:"cdrom,omitempty"`
	// CDROMDisk is a read-only CD-ROM from an NBD export (an image stored
	// in scribe) or a file; nil for none. Exclusive with CDROM.
	CDROMDisk *Disk `json:"cdrom_disk,omitempty"`
	// DiskFirst boots the disks before the CD-ROM; false: a CD-ROM (CDROM
	// or CDROMDisk) boots first.
	DiskFirst bool `json:"disk_first,omitempty"`
	// Kernel, Initrd and Append boot a kernel directly (test guests).
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	Append string `json:"append,omitempty"`
	// NICs are virtio-net devices nic0, nic1, … in order.
	NICs []NIC `json:"nics,omitempty"`
	// VsockCID is the guest's vsock context ID (≥ 3); 0 means no vsock.
	// It is used only when the host has /dev/vhost-vsock.
	VsockCID uint32 `json:"vsock_cid,omitempty"`
}

// Disk is one virtio-blk disk: an NBD export on a UNIX socket (scribe's
// VSDs) or a local image file (tests). Exactly one of NBDSocket or File.
type Disk struct {
	NBDSocket string `json:"nbd_socket,omitempty"` // UNIX socket of the NBD server
	NBDExport string `json:"nbd_export,omitempty"` // export name
	File      string `json:"file,omitempty"`       // local image path
	Format    string `json:"format,omitempty"`     // "raw" (default) or "qcow2" (a qcow2 image file, or one stored in a VSD)
	ReadOnly  bool   `json:"read_only,omitempty"`
}

// NICKind says where a NIC's frames go.
type NICKind string

const (
	// NICTap is a tap device enslaved to a bridge (needs root).
	NICTap NICKind = "tap"
	// NICUser is QEMU's user-mode network (no root; for tests).
	NICUser NICKind = "user"
)

// NIC is one virtio-net NIC.
type NIC struct {
	Kind NICKind `json:"kind"`
	// Bridge is the bridge a tap joins (NICTap only, required).
	Bridge string `json:"bridge,omitempty"`
	// MAC is the NIC's address; "" means MACFor(ID, index).
	MAC string `json:"mac,omitempty"`
}

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,64}$`)

// Validate checks a spec without touching the host.
func (s Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	if !idPattern.MatchString(s.ID) {
		return bad("id %q must be 1-64 characters of letters, digits, '.', '_' or '-'", s.ID)
	}
	if s.Name == "" || strings.ContainsAny(s.Name, ",\n") {
		return bad("name %q must be non-empty without commas or newlines", s.Name)
	}
	if s.UUID != "" && !regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`).MatchString(s.UUID) {
		return bad("uuid %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s.UUID)
	}
	if s.CPUs < 0 || s.CPUs > 255 {
		return bad("cpus %d out of range 1-255", s.CPUs)
	}
	if s.MemoryMiB < 0 || (s.MemoryMiB > 0 && s.MemoryMiB < 16) || s.MemoryMiB > 4<<20 {
		return bad("memory %d MiB out of range 16 MiB-4 TiB", s.MemoryMiB)
	}
	for i, d := range s.Disks {
		if err := d.validate(); err != nil {
			return bad("disk %d %v", i, err)
		}
	}
	if s.CDROMDisk != nil {
		if s.CDROM != "" {
			return bad("both a CD-ROM file and a CD-ROM disk")
		}
		if err := s.CDROMDisk.validate(); err != nil {
			return bad("cdrom %v", err)
		}
	}
	if s.Initrd != "" && s.Kernel == "" || s.Append != "" && s.Kernel == "" {
		return bad("initrd and append need a kernel")
	}
	for i, n := range s.NICs {
		switch n.Kind {
		case NICTap:
			if n.Bridge == "" {
				return bad("nic %d: a tap NIC needs a bridge", i)
			}
		case NICUser:
		default:
			return bad("nic %d: kind %q is not tap or user", i, n.Kind)
		}
		if n.MAC != "" {
			hw, err := net.ParseMAC(n.MAC)
			if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
				return bad("nic %d: MAC %q is not a unicast Ethernet address", i, n.MAC)
			}
		}
	}
	if s.VsockCID != 0 && s.VsockCID < 3 {
		return bad("vsock cid %d is reserved (use ≥ 3)", s.VsockCID)
	}
	return nil
}

func (d Disk) validate() error {
	switch {
	case d.NBDSocket != "" && d.File != "":
		return fmt.Errorf("has both an NBD socket and a file")
	case d.NBDSocket != "", d.File != "":
	default:
		return fmt.Errorf("has neither an NBD socket nor a file")
	}
	if d.Format != "" && d.Format != "raw" && d.Format != "qcow2" {
		return fmt.Errorf("format %q is not raw or qcow2", d.Format)
	}
	return nil
}

// MACFor derives a NIC's MAC address from the VM ID and the NIC's index:
// locally administered, unicast, stable for the VM's life on any node.
func MACFor(vmID string, index int) net.HardwareAddr {
	h := sha256.Sum256(fmt.Appendf(nil, "shoal-mac\x00%s\x00%d", vmID, index))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// TapName is the host interface name of a VM's tap NIC (at most 15 bytes).
func TapName(vmID string, index int) string {
	h := sha256.Sum256([]byte(vmID))
	return fmt.Sprintf("sh%s.%d", hex.EncodeToString(h[:4]), index)
}

// withDefaults fills the zero values the way QEMU will run them.
func (s Spec) withDefaults() Spec {
	if s.CPUs == 0 {
		s.CPUs = 1
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 512
	}
	s.NICs = append([]NIC(nil), s.NICs...)
	for i := range s.NICs {
		if s.NICs[i].MAC == "" {
			s.NICs[i].MAC = MACFor(s.ID, i).String()
		}
	}
	return s
}
