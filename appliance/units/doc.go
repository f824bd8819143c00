// Package units holds the systemd units of the appliance, embedded in the
// shoal binary: one Type=notify unit per daemon (shoal-netd, shoal-peer,
// shoal-scribe, shoal-hypervisor; the last three ordered after
// shoal-netd), shoal-health.service, the oneshot health gate that
// boot-complete.target requires, and a boot-complete.target drop-in that
// reboots a boot whose gate never passes.
//
// `shoal install-units --root DIR` writes them into a root tree under
// usr/lib/systemd/system and enables them with symlinks under
// etc/systemd/system, as `systemctl enable` would; the image builder runs
// it on the built binary, so the units always match the binary.
//
// Invariants: the unit files here are the only source of truth; the golden
// file testdata/install.golden is the installed tree (update it with
// `go test ./appliance/units -update` and review the diff). Install is
// idempotent and touches nothing outside the files and links of its Plan.
package units
