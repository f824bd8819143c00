package claim

import "fmt"

// Outcome is where a Proposal stands.
type Outcome int

// Outcomes of a Proposal.
const (
	// Pending: the current round waits for more replies.
	Pending Outcome = iota
	// Decided: a majority accepted Result.Holder at the epoch (it may not
	// be the holder the proposal wanted: then the epoch is taken).
	Decided
	// Retry: the round was pre-empted by a higher ballot (or its value
	// could not win); start a new round, after a random back-off.
	Retry
	// Superseded: a majority has moved to Result.HigherEpoch or above.
	Superseded
	// Contended: no new proposal can win the epoch: whatever holder it
	// proposed, too many voters hold another holder or have moved past it.
	Contended
	// Open: a read-only proposal found no value accepted at the epoch by
	// the majority it reached; no holder is decided at this epoch.
	Open
)

func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case Decided:
		return "decided"
	case Retry:
		return "retry"
	case Superseded:
		return "superseded"
	case Contended:
		return "contended"
	case Open:
		return "open"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is the outcome of a Proposal.
type Result struct {
	Outcome     Outcome
	Holder      string // Decided: the holder decided at the epoch
	HigherEpoch uint64 // Superseded: the highest epoch seen
}

// Send is one message a Proposal wants sent: exactly one of Prepare and
// Accept is set.
type Send struct {
	To      string
	Prepare *PrepareRequest
	Accept  *AcceptRequest
}

// Proposal is the proposer's side of single-decree Paxos for one
// (resource, epoch), as a pure state machine: it does no I/O and keeps no
// time. A driver (Proposer, or the simulation) sends what it returns,
// feeds replies back, and calls NextRound after a Retry or a timeout.
// Replies to an earlier round are ignored. Not safe for concurrent use.
type Proposal struct {
	resource, want string
	epoch          uint64
	node           string
	inc            uint64
	voters         VoterSet

	round    uint64 // last round number used
	seen     uint64 // highest round number seen in any reply
	ballot   Ballot
	phase    int // 0 prepare, 1 accept, 2 done
	promised map[string]Reply
	accepted map[string]bool
	refused  map[string]Reply
	value    string
	result   Result

	// What the proposal learned of the epoch, across rounds. Both only
	// grow: an acceptor's holder at an epoch never changes once set, and
	// an acceptor never goes back to a lower epoch.
	holds map[string]string // acceptor → holder it accepted at the epoch
	stale map[string]uint64 // acceptor → its higher epoch
}

const (
	phasePrepare = iota
	phaseAccept
	phaseDone
)

// NewProposal proposes want as the holder of (resource, epoch) on behalf of
// node (incarnation inc). An empty want makes a read-only proposal: it
// completes a value already accepted at the epoch, or reports Open.
// firstRound is the lowest round number to use (0 is fine).
func NewProposal(resource string, epoch uint64, want, node string, inc uint64, voters VoterSet, firstRound uint64) (*Proposal, error) {
	if err := (PrepareRequest{Resource: resource, Epoch: epoch, Ballot: Ballot{Round: 1, Node: node}}).Validate(); err != nil {
		return nil, err
	}
	if want != "" {
		if err := ValidHolder(want); err != nil {
			return nil, err
		}
	}
	if voters.Len() == 0 {
		return nil, fmt.Errorf("propose %q epoch %d: %w: the voter set is empty", resource, epoch, ErrNotVoter)
	}
	return &Proposal{resource: resource, want: want, epoch: epoch, node: node, inc: inc, voters: voters, round: firstRound,
		holds: map[string]string{}, stale: map[string]uint64{}}, nil
}

// Ballot is the current round's ballot.
func (p *Proposal) Ballot() Ballot { return p.ballot }

// Round is the highest round number this proposal used or saw; a driver
// starts its next proposal above it.
func (p *Proposal) Round() uint64 { return max(p.round, p.seen) }

// Result is the current result.
func (p *Proposal) Result() Result { return p.result }

// NextRound starts a new round with a ballot above every ballot seen and
// returns the prepares to send to every voter.
func (p *Proposal) NextRound() []Send {
	p.round = max(p.round, p.seen) + 1
	p.ballot = Ballot{Round: p.round, Node: p.node, Inc: p.inc}
	p.phase = phasePrepare
	p.promised = map[string]Reply{}
	p.accepted = map[string]bool{}
	p.refused = map[string]Reply{}
	p.value = ""
	p.result = Result{}
	out := make([]Send, 0, p.voters.Len())
	for _, id := range p.voters.IDs() {
		q := PrepareRequest{Resource: p.resource, Epoch: p.epoch, Ballot: p.ballot}
		out = append(out, Send{To: id, Prepare: &q})
	}
	return out
}

func (p *Proposal) note(from string, r Reply) {
	rec := r.Record
	switch {
	case rec.Epoch == p.epoch:
		p.seen = max(p.seen, rec.Promised.Round)
	case rec.Epoch > p.epoch:
		p.stale[from] = rec.Epoch
	}
	if a := rec.Accepted; a != nil && a.Epoch == p.epoch {
		p.holds[from] = a.Holder
	}
}

// OnPrepare feeds the reply of voter from to prepare q.
func (p *Proposal) OnPrepare(from string, q PrepareRequest, r Reply) ([]Send, Result) {
	if p.phase != phasePrepare || q.Ballot != p.ballot || q.Epoch != p.epoch || q.Resource != p.resource || !p.voters.Contains(from) || r.Validate() != nil {
		return nil, p.result
	}
	p.note(from, r)
	if !r.OK || r.Record.Epoch != p.epoch || r.Record.Promised != p.ballot {
		if _, ok := p.promised[from]; !ok {
			p.refused[from] = r
		}
		return nil, p.judgeRefusals()
	}
	delete(p.refused, from)
	p.promised[from] = r
	if len(p.promised) < p.voters.Majority() {
		return nil, p.result
	}
	var best *Accepted
	for _, pr := range p.promised {
		if a := pr.Record.Accepted; a != nil && a.Epoch == p.epoch && (best == nil || best.Ballot.Less(a.Ballot)) {
			best = a
		}
	}
	switch {
	case best != nil:
		p.value = best.Holder
	case p.want != "":
		p.value = p.want
	default:
		p.phase = phaseDone
		p.result = Result{Outcome: Open}
		return nil, p.result
	}
	p.phase = phaseAccept
	out := make([]Send, 0, p.voters.Len())
	for _, id := range p.voters.IDs() {
		q := AcceptRequest{Resource: p.resource, Epoch: p.epoch, Ballot: p.ballot, Holder: p.value}
		out = append(out, Send{To: id, Accept: &q})
	}
	return out, p.result
}

// OnAccept feeds the reply of voter from to accept q.
func (p *Proposal) OnAccept(from string, q AcceptRequest, r Reply) Result {
	if p.phase != phaseAccept || q.Ballot != p.ballot || q.Epoch != p.epoch || q.Resource != p.resource || q.Holder != p.value || !p.voters.Contains(from) || r.Validate() != nil {
		return p.result
	}
	p.note(from, r)
	a := r.Record.Accepted
	if !r.OK || a == nil || *a != (Accepted{Epoch: p.epoch, Ballot: p.ballot, Holder: p.value}) {
		if !p.accepted[from] {
			p.refused[from] = r
		}
		return p.judgeRefusals()
	}
	delete(p.refused, from)
	p.accepted[from] = true
	if len(p.accepted) >= p.voters.Majority() {
		p.phase = phaseDone
		p.result = Result{Outcome: Decided, Holder: p.value}
	}
	return p.result
}

// judgeRefusals ends the round once refusals leave no majority possible:
// Superseded when more voters than a round can spare are at a higher
// epoch; Contended when, whatever holder one proposed, more voters than
// that would refuse it (stale, or holding another holder at the epoch);
// otherwise Retry.
func (p *Proposal) judgeRefusals() Result {
	slack := p.voters.Len() - p.voters.Majority() // refusals a round survives
	var higher uint64
	for _, e := range p.stale {
		higher = max(higher, e)
	}
	counts := map[string]int{}
	total, most := 0, 0
	for id, h := range p.holds {
		if _, ok := p.stale[id]; ok {
			continue
		}
		counts[h]++
		total++
		most = max(most, counts[h])
	}
	switch {
	case len(p.stale) > slack:
		p.phase = phaseDone
		p.result = Result{Outcome: Superseded, HigherEpoch: higher}
	case len(p.stale)+total-most > slack:
		p.phase = phaseDone
		p.result = Result{Outcome: Contended}
	case len(p.refused) > slack:
		p.phase = phaseDone
		p.result = Result{Outcome: Retry}
	}
	return p.result
}
