package scribe

import "time"

// SetIncomingTiming shortens the deferred exports' wait for a test; the
// returned func restores the defaults.
func SetIncomingTiming(wait, poll time.Duration) (restore func()) {
	w, p := incomingWait, incomingPoll
	incomingWait, incomingPoll = wait, poll
	return func() { incomingWait, incomingPoll = w, p }
}
