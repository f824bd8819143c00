package hypervisor

import "fmt"

// Formats of what a VM disk or an image holds (VMDisk.Format, and the
// format field of an uploaded image's VSD record).
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
	FormatISO   = "iso"
)

// OwnedDiskName is the VSD `vm create --disk SIZE` makes for the VM's
// n-th disk (from 0): <vm>-disk<n>.
func OwnedDiskName(vm string, n int) string { return fmt.Sprintf("%s-disk%d", vm, n) }

// UsesVSD reports whether r uses the VSD name as a disk or its CD-ROM.
func (r VMRecord) UsesVSD(name string) bool {
	if r.CDROM == name {
		return true
	}
	for _, d := range r.Disks {
		if d.VSD == name {
			return true
		}
	}
	return false
}
