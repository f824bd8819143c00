package scribe

import "time"

// SetIncomingTiming shortens the deferred exports' wait for a test; the
// returned func restores the defaults.
func SetIncomingTiming(wait, poll time.Duration) (restore func()) {
	old := incomingTiming.Swap(&incomingTimes{wait: wait, poll: poll})
	return func() { incomingTiming.Store(old) }
}
