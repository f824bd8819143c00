package hypervisor

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// HostPrefix is the cluster-state prefix of the records in which every
// hypervisor announces its capacity: hypervisor/<node ID>, fields memory_mib
// and cpus. Placement only picks nodes that have one.
const HostPrefix = "hypervisor/"

// Fields of a hypervisor/<node> record.
const (
	FieldHostMemoryMiB = "memory_mib"
	FieldHostCPUs      = "cpus"
)

// Candidate is a node placement may pick: an alive, admitted member that
// runs a hypervisor and is not a witness.
type Candidate struct {
	ID        string
	MemoryMiB int // 0: unknown, not checked
	CPUs      int // 0: unknown
}

// active reports whether a VM in status st occupies its node.
func active(st string) bool {
	switch st {
	case "", string(statusStopped):
		return false
	}
	return true
}

// Place picks the node for vm among cands, given every VM record (the
// node and status fields say what runs where). It is deterministic, so
// nodes with the same view pick the same node: nodes without enough
// free memory are out; then fewer VMs of vm's anti-affinity group, then
// fewer vCPUs per CPU in use, then more free memory, then the lower ID.
func Place(vm VMRecord, cands []Candidate, vms []VMRecord) (string, error) {
	type load struct {
		mem, cpus, group int
	}
	loads := map[string]*load{}
	for _, c := range cands {
		loads[c.ID] = &load{}
	}
	for _, o := range vms {
		l := loads[o.Node]
		if l == nil || o.Name == vm.Name || !active(o.Status) {
			continue
		}
		l.mem += o.MemoryMiB
		l.cpus += o.CPUs
		if vm.AntiAffinity != "" && o.AntiAffinity == vm.AntiAffinity {
			l.group++
		}
	}
	var fit []Candidate
	for _, c := range cands {
		if c.MemoryMiB == 0 || c.MemoryMiB-loads[c.ID].mem >= vm.MemoryMiB {
			fit = append(fit, c)
		}
	}
	if len(fit) == 0 {
		return "", fmt.Errorf("%w: vm %s needs %d MiB and no node of %d has that much free", ErrNoPlacement, vm.Name, vm.MemoryMiB, len(cands))
	}
	free := func(c Candidate) int { return c.MemoryMiB - loads[c.ID].mem }
	perCPU := func(c Candidate) float64 { return float64(loads[c.ID].cpus) / float64(max(c.CPUs, 1)) }
	slices.SortFunc(fit, func(a, b Candidate) int {
		return cmp.Or(
			cmp.Compare(loads[a.ID].group, loads[b.ID].group),
			cmp.Compare(perCPU(a), perCPU(b)),
			cmp.Compare(free(b), free(a)),
			strings.Compare(a.ID, b.ID))
	})
	return fit[0].ID, nil
}
