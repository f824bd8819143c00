//go:build !linux

package agent

import (
	"errors"
	"time"
)

// Guest is the System of the guest the agent runs in: Linux only.
type Guest struct {
	PoweroffCommand []string
	Mounts          string
}

var errNotLinux = errors.New("the shoal agent runs in Linux guests only")

func (Guest) BootID() (string, error)        { return "", errNotLinux }
func (Guest) Hostname() (string, error)      { return "", errNotLinux }
func (Guest) Uptime() (time.Duration, error) { return 0, errNotLinux }
func (Guest) Addrs() ([]Addr, error)         { return nil, errNotLinux }
func (Guest) Poweroff() error                { return errNotLinux }
func (Guest) Freeze() (int, error)           { return 0, errNotLinux }
func (Guest) Thaw() (int, error)             { return 0, errNotLinux }
