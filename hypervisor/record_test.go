package hypervisor

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sampleRecord() VMRecord {
	return VMRecord{Name: "web1", ID: "0123456789abcdef0123456789abcdef", Desired: DesiredRunning,
		CPUs: 2, MemoryMiB: 2048, Disks: []VMDisk{{VSD: "web1-0"}}, CDROM: "debian-12.iso",
		NICs: []VMNIC{{Network: "default", MAC: "02:11:22:33:44:55"}}, AntiAffinity: "web",
		Node: "3f2a", Epoch: 7, Status: "migrating",
		Migration: &MigrationStatus{To: "9c1b", Phase: "active", Transferred: 10, Remaining: 20, Total: 30}}
}

func TestVMRecordRoundTrip(t *testing.T) {
	for _, r := range []VMRecord{sampleRecord(), {Name: "a", ID: strings.Repeat("f", 32), Desired: DesiredStopped, CPUs: 1, MemoryMiB: 16}} {
		fields := r.DesiredFields()
		maps.Copy(fields, r.StatusFields())
		got, err := ParseVMRecord(RecordPrefix+r.Name, fields)
		if err != nil {
			t.Fatal(err)
		}
		want := r
		if want.Disks == nil {
			want.Disks = []VMDisk{}
		}
		if want.NICs == nil {
			want.NICs = []VMNIC{}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestParseVMRecordRejects(t *testing.T) {
	base := sampleRecord().DesiredFields()
	tests := []struct {
		name  string
		key   string
		field string
		value string
	}{
		{"bad key", "vm/Web_1", "", ""},
		{"other prefix", "vsd/web1", "", ""},
		{"short id", "", FieldID, "abc"},
		{"desired paused", "", FieldDesired, "paused"},
		{"zero cpus", "", FieldCPUs, "0"},
		{"cpus text", "", FieldCPUs, "two"},
		{"tiny memory", "", FieldMemoryMiB, "8"},
		{"disks not json", "", FieldDisks, "web1-0"},
		{"disk without vsd", "", FieldDisks, `[{}]`},
		{"nic multicast", "", FieldNICs, `[{"network":"default","mac":"01:00:5e:00:00:01"}]`},
		{"nic no network", "", FieldNICs, `[{"mac":"02:00:00:00:00:01"}]`},
		{"epoch negative", "", FieldEpoch, "-1"},
		{"migration garbage", "", FieldMigration, "{"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := maps.Clone(base)
			key := "vm/web1"
			if tt.key != "" {
				key = tt.key
			}
			if tt.field != "" {
				f[tt.field] = tt.value
			}
			if _, err := ParseVMRecord(key, f); !errors.Is(err, ErrBadRecord) {
				t.Errorf("ParseVMRecord = %v, want ErrBadRecord", err)
			}
		})
	}
}

func FuzzParseVMRecord(f *testing.F) {
	s := sampleRecord()
	fields := s.DesiredFields()
	maps.Copy(fields, s.StatusFields())
	f.Add("vm/web1", fields[FieldCPUs], fields[FieldMemoryMiB], fields[FieldDisks], fields[FieldNICs], fields[FieldEpoch], fields[FieldMigration])
	f.Add("vm/x", "1", "16", "", "", "", "")
	f.Add("vm/", "-1", "99999999999", "[", "[{}]", "x", "null")
	f.Fuzz(func(t *testing.T, key, cpus, mem, disks, nics, epoch, migration string) {
		in := map[string]string{FieldID: s.ID, FieldDesired: "running", FieldCPUs: cpus, FieldMemoryMiB: mem,
			FieldDisks: disks, FieldNICs: nics, FieldEpoch: epoch, FieldMigration: migration}
		r, err := ParseVMRecord(key, in)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to something that parses the same.
		out := r.DesiredFields()
		maps.Copy(out, r.StatusFields())
		again, err := ParseVMRecord(key, out)
		if err != nil {
			t.Fatalf("re-encoded record does not parse: %v", err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("re-encode changed the record (-first +second):\n%s", diff)
		}
	})
}
