package claim

import "errors"

// Sentinel errors. Match them with errors.Is; the returned errors wrap them
// with the resource and epoch concerned.
var (
	// ErrInvalid: a request or record failed validation; nothing changed.
	ErrInvalid = errors.New("invalid claim request")
	// ErrTaken: another holder was decided for this (resource, epoch).
	// The returned Claim names it. Claim a higher epoch to take over.
	ErrTaken = errors.New("claim epoch taken by another holder")
	// ErrSuperseded: a majority of voters has moved to a higher epoch of the
	// resource; this epoch can never be decided again.
	ErrSuperseded = errors.New("claim epoch superseded by a higher epoch")
	// ErrContended: acceptors hold different holders for this epoch (or have
	// moved past it) so that no new proposal can win it; claim the next one.
	ErrContended = errors.New("claim epoch contended: no new proposal can win it")
	// ErrNoQuorum: no majority of voters answered before the deadline. The
	// outcome is unknown (the claim may have been decided without this node
	// hearing of it): Read before acting, never assume either way.
	ErrNoQuorum = errors.New("no majority of voters reachable")
	// ErrFenced: this node has not heard from a majority of voters within
	// the fence window; it refuses to propose until it has.
	ErrFenced = errors.New("node is fenced: no majority of voters seen recently")
	// ErrNotVoter: the voter set is empty or the message came from outside it.
	ErrNotVoter = errors.New("not in the voter set")
	// ErrCorrupt: a stored record failed validation (see Check).
	ErrCorrupt = errors.New("corrupt claim store")
)
