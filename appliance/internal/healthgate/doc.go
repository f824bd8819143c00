// Package healthgate is the node's health gate: the list of checks that
// `shoal health` (shoal-health.service) runs before boot-complete.target,
// so that systemd-bless-boot marks a freshly booted slot good only when the
// node works.
//
// The checks are a list (Checks) that later issues extend: each says
// whether it applies to this node (a check for a daemon applies only when
// the daemon's unit is installed) and runs once. Today: the state
// partition is mounted on /var; every installed shoal daemon unit is
// active; the peer, asked over its local API, is a member that is alive
// and hears at least one other alive member (when there are others), or
// is unclaimed and announcing, or waits for admission. Still to come:
// storage resynced.
//
// Wait retries every check until all pass or ctx ends; it never decides
// to reboot (boot-complete.target's job timeout does that).
package healthgate
