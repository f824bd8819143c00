package claim

import (
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Node.
type Config struct {
	// Self is this node's ID, as it appears in the voter set. Required.
	Self string
	// Log receives the node's logs. Nil discards them.
	Log *slog.Logger
	// Clock is the time source. Nil means the wall clock.
	Clock Clock
	// FenceAfter is how long the node may go without hearing from a
	// majority of voters before it fences itself. Zero means 3 s.
	FenceAfter time.Duration
	// ProbeInterval is how often Run pings every voter (and the timeout of
	// each ping). Zero means FenceAfter/6.
	ProbeInterval time.Duration
	// RoundTimeout is how long one Paxos round waits for a majority before
	// it starts a new round. Zero means 1 s.
	RoundTimeout time.Duration
	// BackoffMax bounds the random pause before a pre-empted round is
	// retried (it breaks duels between proposers). Zero means 50 ms.
	BackoffMax time.Duration
	// ProposeTimeout bounds Propose and Read when ctx has no deadline.
	// Zero means 10 s.
	ProposeTimeout time.Duration
	// OnDecided, if set, is called when this node learns that a holder was
	// decided at an epoch above every one it knew for that resource (as a
	// proposer, or by a Read). It runs synchronously on the caller's
	// goroutine, outside the node's locks: keep it short. The peer daemon
	// records holders in the cluster state for display with it.
	OnDecided func(Claim)
	// Incarnation makes this process's ballots unique even after a restart
	// that lost the round counter. Zero means a random number (the right
	// choice outside tests).
	Incarnation uint64
}

// DefaultConfig returns the defaults for node self.
func DefaultConfig(self string) Config {
	return Config{
		Self:           self,
		FenceAfter:     3 * time.Second,
		ProbeInterval:  500 * time.Millisecond,
		RoundTimeout:   time.Second,
		BackoffMax:     50 * time.Millisecond,
		ProposeTimeout: 10 * time.Second,
	}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Self)
	if c.FenceAfter == 0 {
		c.FenceAfter = d.FenceAfter
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = c.FenceAfter / 6
	}
	if c.RoundTimeout == 0 {
		c.RoundTimeout = d.RoundTimeout
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = d.BackoffMax
	}
	if c.ProposeTimeout == 0 {
		c.ProposeTimeout = d.ProposeTimeout
	}
	if c.Clock == nil {
		c.Clock = RealClock
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks the config.
func (c Config) Validate() error {
	if err := ValidHolder(c.Self); err != nil {
		return fmt.Errorf("claim config: self: %w", err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"fence_after", c.FenceAfter}, {"probe_interval", c.ProbeInterval}, {"round_timeout", c.RoundTimeout}, {"backoff_max", c.BackoffMax}, {"propose_timeout", c.ProposeTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("claim config: %s is negative (%v); use a positive duration or 0 for the default", d.name, d.v)
		}
	}
	f := c.withDefaults()
	if f.ProbeInterval >= f.FenceAfter {
		return fmt.Errorf("claim config: probe_interval %v must be shorter than fence_after %v", f.ProbeInterval, f.FenceAfter)
	}
	return nil
}

// FenceDeadline is the longest time, measured on the isolated node's own
// clock, between its last contact with a majority and the moment it reports
// itself fenced: FenceAfter plus one probe tick and one ping timeout.
// Survivors must not claim its resources before this (plus clock-rate
// margin and the time local subscribers need to act) has passed since they
// stopped answering it; see docs/claims.md.
func (c Config) FenceDeadline() time.Duration {
	f := c.withDefaults()
	return f.FenceAfter + 2*f.ProbeInterval
}

// FailoverWait is how long survivors wait, after they stopped answering a
// lost node, before they claim its resources: FenceDeadline plus 10 % for
// the two clocks running at different rates. Add the time the lost node's
// subscribers need to act (pausing VMs) if that matters to the caller.
func (c Config) FailoverWait() time.Duration {
	d := c.FenceDeadline()
	return d + d/10
}
