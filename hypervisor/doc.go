// Package hypervisor runs the VMs placed on this node as QEMU processes,
// controls them over QMP, and reports their status into cluster state.
// It also owns placement, live migration and failover of VMs.
//
// The daemon (Hypervisor.Run) is one reconcile loop per node. Every
// second, and at once when a vm/ record or the fence changes, it reads
// the vm/<name> records, the members and the hypervisor/<node> capacity
// records from shoal peer, and for each VM:
//
//   - runs here: stop it if desired is stopped; kill it if the record was
//     removed, or another node runs it at a higher epoch, or a majority
//     read of its claim names another holder; pause it while this node
//     is fenced, and on unfence resume it only if the claim is still
//     ours at the same epoch (else kill it); write node, epoch, status
//     and what the guest agent reports.
//   - runs nowhere and desired running: every node computes the same
//     placement (Place); only the chosen node reads the claim vm/<name>
//     with a majority and claims exactly the next epoch, then starts
//     QEMU. A VM whose node failed is placed elsewhere only after
//     Config.FailoverWait since this node first saw that node failed,
//     and never within 30 s of the daemon's start or of a change of this
//     node's fence (its membership view may be stale then).
//   - live migration (migrate.go), driven through the record: the user
//     writes a request (migrate); the source names the destination
//     (migration, phase waiting); the destination starts QEMU with
//     -incoming (writable VSD disks through scribe's deferred exports,
//     NAME@incoming) and answers with its URI (migrate_incoming); the
//     source migrates in a goroutine, and in QEMU's switchover hook
//     (source paused, destination not started) claims every writable
//     disk's vsd/<name> and then vm/<name> at their next epochs with the
//     destination as holder (a failure takes the disks back and cancels).
//     The source then kills its postmigrate QEMU, writes the final
//     figures and clears the request.
//
// Invariants: only the holder of a VM's claim starts its QEMU, and it
// claims an explicit epoch (read epoch + 1), so two nodes racing cannot
// both win; a migration's destination gets the VM (and runs it) only
// after the claim was won for it while the source was paused, and a
// source resumes after a failed migration only if that claim was not
// won, or after winning it back at the next epoch; a node never resumes a VM after a fence without re-reading
// the claim; the status fields of a record are written only by the node
// running the VM (and, once, by the node that stops it).
//
// Concurrency: the loop owns all per-VM state; two goroutines (fence
// long-poll, record watch) only wake it; a stop (up to StopGrace) and a
// migration (up to 10 min) run in their own goroutines so the loop keeps
// serving other VMs. Run waits for
// all of them. QEMU processes outlive the daemon and are re-attached by
// the next one, which re-reads their claim before it trusts them.
//
// Consoles (console.go): with Config.ConsoleListen the daemon also serves
// the serial consoles of its VMs to other members on port 7950 (mutual
// TLS, members only), one goroutine per connection, all owned and
// awaited by Run; they touch no loop state, only the VM's runtime dir.
// Whoever attaches to a console (the console service or a local CLI)
// holds an exclusive flock on the VM's console.lock, so a second client
// is told the console is in use instead of hanging on QEMU's
// one-client chardev.
//
// Caveats: a node that is alive in gossip but whose hypervisor daemon is
// down still gets VMs placed on it (they wait for it); a VM whose QEMU
// keeps crashing is restarted on the same node every 5 s; a post-copy
// migration whose destination dies after the switchover loses the guest
// (it is started afresh), and so does any migration of a VM with writable
// VSD disks whose destination dies after the switchover (the disks' claims
// had moved; the guest is restarted, its disks intact).
package hypervisor
