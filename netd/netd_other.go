//go:build !linux

package netd

import (
	"context"
	"errors"
)

// Run needs Linux (netlink).
func (d *Daemon) Run(ctx context.Context) error {
	return errors.New("netd runs only on Linux")
}
