// Package qa is the multi-node test harness: clusters of real shoal
// processes, fault injection, checkers and scenarios. Scenarios are behind
// the qa build tag. This package also holds the repository's guardrail tests.
//
// NewCluster(t, Options) brings up a process-level cluster for a test (one
// network and mount namespace per node on a bridge, the real shoal daemons,
// FUSE data disks that can fail) and removes it in t.Cleanup; its methods
// inject faults (Kill, Restart, Freeze, Thaw, Cut, Heal, Partition,
// HealPartition, DiskFail, DiskFull, DiskHeal, AddNode) and run commands
// inside a node (Exec). It needs root and skips the test otherwise. The
// shoal-qa command (qa/cmd/shoal-qa) offers the same over separate
// invocations; docs/qa.md describes both.
//
// NewVMCluster(t, VMOptions) does the same one level up: copies of the
// built appliance image (BuildImage builds it once per test process, via
// make image's cache) booted in QEMU on a userspace switch with DHCP;
// its methods pull cables, partition, kill, add nodes and run commands
// inside a node through the QEMU guest agent (`shoal-qa vm` offers the
// same from a shell).
package qa
