// Package hypervisor runs the VMs placed on this node as QEMU processes,
// controls them over QMP, and reports their status into cluster state.
// It also owns placement, live migration and failover of VMs.
package hypervisor
