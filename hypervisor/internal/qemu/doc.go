// Package qemu turns a VM Spec into a qemu-system-x86_64 command line,
// runs it as a process that outlives the daemon, re-attaches to it after
// a daemon restart, reports its status and live-migrates it.
//
// Runtime directory: every VM has its own directory (on a node
// /run/shoal/vm/<id>/) holding spec.json (the Spec it was started with),
// pid, qmp.sock (QMP monitor), serial.sock (serial console, one client at
// a time), console.log (everything the serial console printed, written by
// QEMU itself so it survives daemon restarts), agent.sock (the
// virtio-serial port org.shoal.agent.0 for the guest agent), qemu.log
// (QEMU's stderr) and, once the daemon has asked QEMU to exit, a
// "stopped" marker. The directory is the VM's identity on the host:
// Attach needs only it and the Spec the caller expects.
//
// Invariants:
//   - QEMU runs in its own session (setsid), so a daemon crash or restart
//     never takes it down; only Stop, Kill or the guest ends it.
//   - QEMU runs with -no-shutdown: a guest that powers off leaves the
//     process in the "shutdown" state until Stop makes it quit, so a clean
//     power-off and a crash stay distinguishable. A process that is gone
//     without the "stopped" marker crashed.
//   - A VM value owns one QMP connection; QEMU accepts a single QMP
//     client, so only one VM value per directory may exist at a time.
//
// Concurrency: VM methods are safe for concurrent use (the QMP client
// matches replies by id). A VM has one goroutine watching the process
// (a pidfd); Close stops it and waits, without stopping QEMU.
//
// Migration: Migrate copies memory to a destination QEMU started with
// Incoming. With pause-before-switchover the source stops its vCPUs,
// drains and flushes its disks, then waits; Migrate calls the caller's
// Switchover hook exactly there (the daemon takes the VM's claim at a
// higher epoch), and only then lets QEMU send the device state and start
// the destination. If the hook fails the migration is cancelled and the
// source resumes. If the migration fails after the hook (destination
// lost), QEMU restarts the source by itself; Migrate pauses it again at
// once and returns ErrAfterSwitchover — for those milliseconds the guest
// runs on a claim that has moved, which the storage epoch fences.
//
// Caveats: the accelerator is probed (ProbeHost), never assumed; /dev/kvm
// can exist and still be unusable. MACs are derived from the VM ID
// (MACFor), so they are stable for the VM's life on every node.
// console.log is not rotated.
package qemu
