package qemu

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden command lines in testdata/")

func TestSpecValidate(t *testing.T) {
	ok := Spec{ID: "vm-1", Name: "web", UUID: "5c1e8a2b-3d4f-4a6b-8c9d-0e1f2a3b4c5d", CPUs: 2, MemoryMiB: 1024,
		Disks: []Disk{{NBDSocket: "/run/shoal/scribe.sock", NBDExport: "vsd-1"}, {File: "/tmp/x.qcow2", Format: "qcow2"}},
		NICs:  []NIC{{Kind: NICTap, Bridge: "br-lan"}, {Kind: NICUser, MAC: "52:54:00:12:34:56"}}}
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   string // substring of the error, "" for valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"zero defaults", func(s *Spec) { s.CPUs, s.MemoryMiB, s.UUID = 0, 0, "" }, ""},
		{"empty id", func(s *Spec) { s.ID = "" }, "id"},
		{"id with slash", func(s *Spec) { s.ID = "../etc" }, "id"},
		{"name with comma", func(s *Spec) { s.Name = "a,b" }, "name"},
		{"bad uuid", func(s *Spec) { s.UUID = "nope" }, "uuid"},
		{"negative cpus", func(s *Spec) { s.CPUs = -1 }, "cpus"},
		{"tiny memory", func(s *Spec) { s.MemoryMiB = 4 }, "memory"},
		{"disk both", func(s *Spec) { s.Disks[0].File = "/x" }, "both"},
		{"disk neither", func(s *Spec) { s.Disks[0] = Disk{} }, "neither"},
		{"nbd qcow2", func(s *Spec) { s.Disks[0].Format = "qcow2" }, ""},
		{"nbd vmdk", func(s *Spec) { s.Disks[0].Format = "vmdk" }, "format"},
		{"nbd cdrom", func(s *Spec) { s.CDROMDisk = &Disk{NBDSocket: "/s", NBDExport: "iso"} }, ""},
		{"cdrom both kinds", func(s *Spec) { s.CDROM, s.CDROMDisk = "/x.iso", &Disk{NBDSocket: "/s", NBDExport: "iso"} }, "both"},
		{"cdrom disk neither", func(s *Spec) { s.CDROMDisk = &Disk{} }, "cdrom"},
		{"file vmdk", func(s *Spec) { s.Disks[1].Format = "vmdk" }, "format"},
		{"initrd without kernel", func(s *Spec) { s.Initrd = "/i" }, "kernel"},
		{"tap without bridge", func(s *Spec) { s.NICs[0].Bridge = "" }, "bridge"},
		{"unknown nic", func(s *Spec) { s.NICs[0].Kind = "macvtap" }, "kind"},
		{"multicast mac", func(s *Spec) { s.NICs[1].MAC = "01:00:5e:00:00:01" }, "MAC"},
		{"reserved cid", func(s *Spec) { s.VsockCID = 2 }, "cid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.Disks = append([]Disk(nil), ok.Disks...)
			s.NICs = append([]NIC(nil), ok.NICs...)
			tt.mutate(&s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrInvalidSpec mentioning %q", err, tt.want)
			}
		})
	}
}

func TestMACAndTapNames(t *testing.T) {
	seen := map[string]bool{}
	for _, id := range []string{"vm-1", "vm-2", "a"} {
		for i := range 4 {
			mac := MACFor(id, i)
			if mac[0]&0x01 != 0 || mac[0]&0x02 == 0 {
				t.Errorf("MACFor(%q, %d) = %s: want unicast, locally administered", id, i, mac)
			}
			if seen[mac.String()] {
				t.Errorf("MACFor(%q, %d) = %s repeats", id, i, mac)
			}
			seen[mac.String()] = true
			if again := MACFor(id, i); again.String() != mac.String() {
				t.Errorf("MACFor(%q, %d) not stable: %s then %s", id, i, mac, again)
			}
			if n := TapName(id, i); len(n) > 15 {
				t.Errorf("TapName(%q, %d) = %q: longer than IFNAMSIZ-1", id, i, n)
			}
		}
	}
}

// The command lines are golden files: run with -update after a deliberate change.
func TestArgsGolden(t *testing.T) {
	tests := []struct {
		name     string
		spec     Spec
		host     Host
		incoming bool
	}{
		{"nbd-tap-kvm", Spec{ID: "vm-1", Name: "web", UUID: "5c1e8a2b-3d4f-4a6b-8c9d-0e1f2a3b4c5d", CPUs: 2, MemoryMiB: 2048,
			Disks: []Disk{{NBDSocket: "/run/shoal/scribe.sock", NBDExport: "vsd-1"}},
			CDROM: "/var/lib/shoal/images/debian,12.iso",
			NICs:  []NIC{{Kind: NICTap, Bridge: "br-lan"}}, VsockCID: 1234},
			Host{Accel: AccelKVM, Vsock: true}, false},
		{"testguest-user-tcg-incoming", Spec{ID: "t", Name: "t",
			Disks:  []Disk{{File: "/tmp/d.qcow2", Format: "qcow2", ReadOnly: true}},
			Kernel: "/k/vmlinuz", Initrd: "/k/initrd", Append: "console=ttyS0 quiet",
			NICs: []NIC{{Kind: NICUser, MAC: "52:54:00:00:00:01"}}, VsockCID: 5},
			Host{Accel: AccelTCG}, true},
		{"nbd-cdrom-first", Spec{ID: "vm-2", Name: "inst",
			Disks:     []Disk{{NBDSocket: "/run/shoal/scribe.sock", NBDExport: "inst-disk0"}},
			CDROMDisk: &Disk{NBDSocket: "/run/shoal/scribe.sock", NBDExport: "debian-12.iso"},
			NICs:      []NIC{{Kind: NICUser}}},
			Host{Accel: AccelTCG}, false},
		{"nbd-qcow2-disk-first", Spec{ID: "vm-3", Name: "app",
			Disks: []Disk{{NBDSocket: "/run/shoal/scribe.sock", NBDExport: "app-disk0"},
				{NBDSocket: "/run/shoal/scribe.sock", NBDExport: "tools.qcow2", Format: "qcow2", ReadOnly: true}},
			CDROMDisk: &Disk{NBDSocket: "/run/shoal/scribe.sock", NBDExport: "drivers"}, DiskFirst: true},
			Host{Accel: AccelTCG}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.spec.Validate(); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(Args(tt.spec, tt.host, "/run/shoal/vm/"+tt.spec.ID, tt.incoming), "\n") + "\n"
			path := filepath.Join("testdata", tt.name+".args")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("command line (-want +got):\n%s", diff)
			}
		})
	}
}
