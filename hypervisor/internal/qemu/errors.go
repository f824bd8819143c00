package qemu

import "errors"

var (
	// ErrInvalidSpec is wrapped by every Spec validation error.
	ErrInvalidSpec = errors.New("invalid vm spec")
	// ErrNotRunning means the VM's QEMU process is gone.
	ErrNotRunning = errors.New("qemu process is not running")
	// ErrSpecMismatch means a running QEMU was started from a different
	// spec than the caller expects: restart it to apply the new one.
	ErrSpecMismatch = errors.New("running qemu has a different spec")
	// ErrNoQEMU means the QEMU binary is missing.
	ErrNoQEMU = errors.New("qemu-system-x86_64 not found (install qemu-system-x86)")
	// ErrMigration is wrapped when QEMU reports a failed or cancelled migration.
	ErrMigration = errors.New("migration failed")
	// ErrAfterSwitchover is wrapped when a migration failed after the
	// switchover hook ran (the claim has moved): the source is paused,
	// and whether it may resume is the caller's decision.
	ErrAfterSwitchover = errors.New("after switchover")
)
