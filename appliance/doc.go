// Package appliance is the node as a whole: the composition root that reads
// the node's configuration and flags, turns them into each subsystem's
// Config and runs it. It also holds first-boot setup, the API and web UI,
// and rolling upgrades. Only appliance/cmd imports it.
package appliance
