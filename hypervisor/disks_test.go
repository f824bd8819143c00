package hypervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
)

// A VM's disks, image disks and CD-ROM image reach QEMU as NBD exports
// of the local scribe socket, in the boot order the record asks for.
func TestSpecDisksAndCDROM(t *testing.T) {
	h := newHypervisor(Config{NBDSocket: "/run/shoal/scribe.sock"}, nil, nil, nil)
	nbd := func(export string) qemu.Disk {
		return qemu.Disk{NBDSocket: "/run/shoal/scribe.sock", NBDExport: export}
	}
	base := VMRecord{Name: "inst", ID: strings.Repeat("ab", 16), CPUs: 1, MemoryMiB: 256,
		Disks: []VMDisk{{VSD: "inst-disk0", Owned: true}, {VSD: "tools", ReadOnly: true, Format: FormatQCOW2}}, CDROM: "debian.iso"}
	tools := nbd("tools")
	tools.ReadOnly, tools.Format = true, FormatQCOW2
	cd := nbd("debian.iso")
	cd.ReadOnly = true
	tests := []struct {
		name string
		rec  VMRecord
		boot Boot
		want qemu.Spec
	}{
		{"cdrom first", base, Boot{},
			qemu.Spec{ID: base.ID, Name: "inst", CPUs: 1, MemoryMiB: 256, Disks: []qemu.Disk{nbd("inst-disk0"), tools}, CDROMDisk: &cd}},
		{"disk first", base, Boot{From: BootFromDisk},
			qemu.Spec{ID: base.ID, Name: "inst", CPUs: 1, MemoryMiB: 256, Disks: []qemu.Disk{nbd("inst-disk0"), tools}, CDROMDisk: &cd, DiskFirst: true}},
		{"no cdrom", VMRecord{Name: "a", ID: base.ID, CPUs: 2, MemoryMiB: 64, Disks: []VMDisk{{VSD: "a-0"}}}, Boot{From: BootFromDisk},
			qemu.Spec{ID: base.ID, Name: "a", CPUs: 2, MemoryMiB: 64, Disks: []qemu.Disk{nbd("a-0")}}},
	}
	for _, tt := range tests {
		got := h.spec(tt.rec, tt.boot)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: spec (-want +got):\n%s", tt.name, diff)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestDiskRecordFields(t *testing.T) {
	r := VMRecord{Name: "v", ID: strings.Repeat("cd", 16), Desired: DesiredRunning, CPUs: 1, MemoryMiB: 64,
		Disks: []VMDisk{{VSD: "v-disk0", Owned: true}, {VSD: "img", ReadOnly: true, Format: FormatQCOW2}}, CDROM: "iso", NICs: []VMNIC{}}
	got, err := ParseVMRecord("vm/v", r.DesiredFields())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	f := r.DesiredFields()
	f[FieldDisks] = `[{"vsd":"img","format":"vmdk"}]`
	if _, err := ParseVMRecord("vm/v", f); !errors.Is(err, ErrBadRecord) {
		t.Errorf("disk format vmdk: %v, want ErrBadRecord", err)
	}
	if _, err := ParseBoot("vm/v", map[string]string{FieldBootFrom: "floppy"}); !errors.Is(err, ErrBadRecord) {
		t.Errorf("boot_from floppy: %v, want ErrBadRecord", err)
	}
	if !r.UsesVSD("iso") || !r.UsesVSD("img") || r.UsesVSD("other") {
		t.Errorf("UsesVSD wrong for %+v", r)
	}
	if OwnedDiskName("web1", 2) != "web1-disk2" {
		t.Errorf("OwnedDiskName = %q", OwnedDiskName("web1", 2))
	}
}
