package claim

import "time"

// Clock is the time source of Proposer and Fence. Tests inject a fake or
// run inside testing/synctest.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that fires once after d and a stop func.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// RealClock is the wall clock.
var RealClock Clock = realClock{}
