//go:build !linux

package sysmon

import "time"

// Relax returns ErrUnsupported: only Linux lets a process set another
// thread's timer slack.
func Relax(time.Duration) (int, error) { return 0, ErrUnsupported }
