package agent

import "time"

// System is what the agent reads and does in the guest. Guest is the
// running Linux system; tests pass a fake.
type System interface {
	BootID() (string, error)
	Hostname() (string, error)
	Uptime() (time.Duration, error)
	// Addrs returns the addresses of every interface but loopback.
	Addrs() ([]Addr, error)
	// Poweroff starts powering the guest off; it may not return.
	Poweroff() error
	// Freeze freezes every mounted writable file system that supports it
	// and returns how many it froze. On error nothing stays frozen.
	Freeze() (int, error)
	// Thaw thaws every frozen file system (also those frozen by an
	// earlier agent) and returns how many it thawed.
	Thaw() (int, error)
}
