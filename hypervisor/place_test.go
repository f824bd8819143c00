package hypervisor

import (
	"errors"
	"testing"
)

func TestPlace(t *testing.T) {
	vm := func(name, node, status, group string, mem, cpus int) VMRecord {
		return VMRecord{Name: name, Node: node, Status: status, AntiAffinity: group, MemoryMiB: mem, CPUs: cpus}
	}
	three := []Candidate{{ID: "a", MemoryMiB: 4096, CPUs: 4}, {ID: "b", MemoryMiB: 4096, CPUs: 4}, {ID: "c", MemoryMiB: 4096, CPUs: 4}}
	tests := []struct {
		name  string
		vm    VMRecord
		cands []Candidate
		vms   []VMRecord
		want  string // "" means ErrNoPlacement
	}{
		{"empty cluster: lowest ID", vm("x", "", "", "", 512, 1), three, nil, "a"},
		{"least vCPU load", vm("x", "", "", "", 512, 1), three,
			[]VMRecord{vm("p", "a", "running", "", 512, 2), vm("q", "b", "running", "", 512, 1)}, "c"},
		{"stopped VMs do not count", vm("x", "", "", "", 512, 1), three,
			[]VMRecord{vm("p", "a", "stopped", "", 512, 2)}, "a"},
		{"itself does not count", vm("x", "", "", "", 512, 1), three,
			[]VMRecord{vm("x", "a", "running", "", 512, 2)}, "a"},
		{"anti-affinity beats load", vm("x", "", "", "web", 512, 1), three,
			[]VMRecord{vm("p", "a", "running", "web", 512, 1), vm("q", "b", "running", "web", 512, 1), vm("r", "c", "running", "", 512, 4)}, "c"},
		{"not enough memory anywhere", vm("x", "", "", "", 8192, 1), three, nil, ""},
		{"memory full on one node", vm("x", "", "", "", 2048, 1),
			[]Candidate{{ID: "a", MemoryMiB: 4096, CPUs: 8}, {ID: "b", MemoryMiB: 4096, CPUs: 1}},
			[]VMRecord{vm("p", "a", "running", "", 3072, 1)}, "b"},
		{"unknown memory is not checked", vm("x", "", "", "", 8192, 1), []Candidate{{ID: "z"}}, nil, "z"},
		{"no candidates", vm("x", "", "", "", 512, 1), nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(tt.vm, tt.cands, tt.vms)
			if tt.want == "" {
				if !errors.Is(err, ErrNoPlacement) {
					t.Errorf("Place = %q, %v; want ErrNoPlacement", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Place = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseBoot(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]string
		ok     bool
	}{
		{"none", map[string]string{}, true},
		{"kernel only", map[string]string{FieldKernel: "/k"}, true},
		{"all", map[string]string{FieldKernel: "/k", FieldInitrd: "/i", FieldAppend: "console=ttyS0"}, true},
		{"relative kernel", map[string]string{FieldKernel: "k"}, false},
		{"initrd without kernel", map[string]string{FieldInitrd: "/i"}, false},
		{"append without kernel", map[string]string{FieldAppend: "quiet"}, false},
		{"newline in append", map[string]string{FieldKernel: "/k", FieldAppend: "a\nb"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBoot("vm/x", tt.fields)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadRecord) {
				t.Fatalf("ParseBoot = %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				got, err := ParseBoot("vm/x", b.Fields())
				if err != nil || got != b {
					t.Errorf("round trip = %+v, %v; want %+v", got, err, b)
				}
			}
		})
	}
}
