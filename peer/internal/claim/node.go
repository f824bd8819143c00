package claim

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Claim is a holder decided for (Resource, Epoch).
type Claim struct {
	Resource string `json:"resource"`
	Epoch    uint64 `json:"epoch"`
	Holder   string `json:"holder"`
}

// ViewState says what a View knows about its epoch.
type ViewState string

// View states.
const (
	StateNone        ViewState = "none"        // no epoch was ever started
	StateHeld        ViewState = "held"        // Holder is decided at Epoch (a majority accepted it)
	StateOpen        ViewState = "open"        // Epoch was started, no holder decided
	StateContended   ViewState = "contended"   // no holder can win Epoch any more
	StateUnconfirmed ViewState = "unconfirmed" // local view: Holder accepted here, not known to be decided
)

// View is what a node knows of a resource's claim.
type View struct {
	Resource string    `json:"resource"`
	Epoch    uint64    `json:"epoch"`            // the highest epoch known started
	Holder   string    `json:"holder,omitempty"` // the holder at Epoch, if any
	State    ViewState `json:"state"`
	// Confirmed: the view came from a majority round (Read or Propose);
	// otherwise it is this node's last known view and may be stale.
	Confirmed bool `json:"confirmed"`
}

// Next is the epoch a caller claims to take the resource over: Epoch+1.
func (v View) Next() uint64 { return v.Epoch + 1 }

// Node is one node's claims: its acceptor (serving other nodes through the
// daemon), its proposer (Propose, Read, ClaimNext) and its fence. Safe for
// concurrent use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	clock    Clock
	acceptor *Acceptor
	t        Transport
	fence    *Fence
	calls    sync.WaitGroup // requests still in flight; Close waits for them

	mu      sync.Mutex
	voters  VoterSet
	gen     uint64         // bumped by SetVoters
	inUse   map[uint64]int // generation → Propose and Read calls still running with its voters
	round   uint64
	rng     *rand.Rand
	learned map[string]Claim
}

// New returns a node over store (its acceptor's memory) and t (its way to
// the other voters' acceptors). voters may be replaced later (SetVoters).
func New(cfg Config, store Store, t Transport, voters VoterSet) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Incarnation == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("claim incarnation: %w", err)
		}
		cfg.Incarnation = binary.LittleEndian.Uint64(b[:]) | 1
	}
	n := &Node{
		cfg: cfg, log: cfg.Log, clock: cfg.Clock, acceptor: NewAcceptor(store), t: t,
		voters:  voters,
		rng:     rand.New(rand.NewPCG(cfg.Incarnation, 0x5ca1ab1e)),
		learned: map[string]Claim{},
		inUse:   map[uint64]int{},
	}
	n.fence = NewFence(cfg.Self, cfg.FenceAfter, voters, cfg.Clock, cfg.Log)
	return n, nil
}

// Acceptor is the node's acceptor: the daemon serves it to other nodes.
func (n *Node) Acceptor() *Acceptor { return n.acceptor }

// Fence is the node's fence: Watch it to pause VMs and stop writes.
func (n *Node) Fence() *Fence { return n.fence }

// Check verifies the acceptor's store.
func (n *Node) Check() error { return n.acceptor.Check() }

// SetVoters replaces the voter set (see VoterSet for the rules).
func (n *Node) SetVoters(v VoterSet) {
	n.mu.Lock()
	n.voters = v
	n.gen++
	n.mu.Unlock()
	n.fence.SetVoters(v)
}

// useVoters returns the current voter set for one Propose or Read, and
// the function to call when that call ends.
func (n *Node) useVoters() (VoterSet, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	g := n.gen
	n.inUse[g]++
	return n.voters, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.inUse[g]--; n.inUse[g] == 0 {
			delete(n.inUse, g)
		}
	}
}

// VotersSettled reports whether every Propose and Read still running uses
// the current voter set: none started before the last SetVoters. Only then
// has this node fully moved to the new set (a voter change is complete
// when every voter has; see docs/claims.md).
func (n *Node) VotersSettled() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for g := range n.inUse {
		if g != n.gen {
			return false
		}
	}
	return true
}

// Voters returns the current voter set.
func (n *Node) Voters() VoterSet {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.voters
}

// Propose asks the voters to decide holder for (resource, epoch). It returns
// the decided claim and nil when holder won; the claim of the winner and
// ErrTaken when another holder was decided at epoch; ErrSuperseded when a
// majority is at a higher epoch; ErrContended when no holder can win epoch;
// ErrFenced, ErrNotVoter or ErrNoQuorum when it could not run.
func (n *Node) Propose(ctx context.Context, resource string, epoch uint64, holder string) (Claim, error) {
	if err := (AcceptRequest{Resource: resource, Epoch: epoch, Ballot: Ballot{Round: 1, Node: n.cfg.Self}, Holder: holder}).Validate(); err != nil {
		return Claim{}, fmt.Errorf("propose %q epoch %d: %w", resource, epoch, err)
	}
	voters, done := n.useVoters()
	defer done()
	if !voters.Contains(n.cfg.Self) {
		return Claim{}, fmt.Errorf("propose %q epoch %d: %w: this node %s is not a voter (removed, or not admitted yet)", resource, epoch, ErrNotVoter, n.cfg.Self)
	}
	if s := n.fence.Evaluate(); s.Fenced {
		return Claim{}, fmt.Errorf("propose %q epoch %d: %w (heard %d of %d needed)", resource, epoch, ErrFenced, s.Heard, s.Need)
	}
	res, err := n.run(ctx, resource, epoch, holder, voters)
	if err != nil {
		return Claim{}, fmt.Errorf("propose %q epoch %d: %w", resource, epoch, err)
	}
	c := Claim{Resource: resource, Epoch: epoch, Holder: res.Holder}
	switch res.Outcome {
	case Decided:
		n.learn(c)
		if res.Holder != holder {
			return c, fmt.Errorf("propose %q epoch %d: %w: %s holds it", resource, epoch, ErrTaken, res.Holder)
		}
		return c, nil
	case Superseded:
		return Claim{}, fmt.Errorf("propose %q epoch %d: %w: a majority is at epoch %d or above", resource, epoch, ErrSuperseded, res.HigherEpoch)
	case Contended:
		return Claim{}, fmt.Errorf("propose %q epoch %d: %w", resource, epoch, ErrContended)
	}
	return Claim{}, fmt.Errorf("propose %q epoch %d: unexpected outcome %v", resource, epoch, res.Outcome)
}

// ClaimNext takes resource over for this node: it reads the current epoch
// with a majority and proposes the next one with itself as holder. This is
// what failover does once the old holder's fence deadline has passed.
func (n *Node) ClaimNext(ctx context.Context, resource string) (Claim, error) {
	v, err := n.Read(ctx, resource)
	if err != nil {
		return Claim{}, err
	}
	if v.State == StateHeld && v.Holder == n.cfg.Self {
		return Claim{Resource: resource, Epoch: v.Epoch, Holder: v.Holder}, nil
	}
	return n.Propose(ctx, resource, v.Next(), n.cfg.Self)
}

// Read returns the resource's claim as a majority sees it: Epoch is at
// least every epoch decided before Read began (linearizable), and a Holder
// with StateHeld is decided at Epoch. It may complete a half-done proposal
// of Epoch to find out. It works while fenced.
func (n *Node) Read(ctx context.Context, resource string) (View, error) {
	if err := ValidResource(resource); err != nil {
		return View{}, fmt.Errorf("read claim: %w", err)
	}
	voters, done := n.useVoters()
	defer done()
	if voters.Len() == 0 {
		return View{}, fmt.Errorf("read claim %q: %w: the voter set is empty", resource, ErrNotVoter)
	}
	ctx, cancel := n.deadline(ctx)
	defer cancel()
	for {
		replies, err := n.collectReads(ctx, resource, voters)
		if err != nil {
			return View{}, fmt.Errorf("read claim %q: %w", resource, err)
		}
		var top uint64
		for _, r := range replies {
			top = max(top, r.Record.Epoch)
		}
		if top == 0 {
			return View{Resource: resource, State: StateNone, Confirmed: true}, nil
		}
		count := map[string]int{}
		for _, r := range replies {
			if a := r.Record.Accepted; a != nil && a.Epoch == top {
				count[a.Holder]++
			}
		}
		for h, c := range count {
			if c >= voters.Majority() {
				n.learn(Claim{Resource: resource, Epoch: top, Holder: h})
				return View{Resource: resource, Epoch: top, Holder: h, State: StateHeld, Confirmed: true}, nil
			}
		}
		res, err := n.run(ctx, resource, top, "", voters)
		if err != nil {
			return View{}, fmt.Errorf("read claim %q: %w", resource, err)
		}
		switch res.Outcome {
		case Decided:
			n.learn(Claim{Resource: resource, Epoch: top, Holder: res.Holder})
			return View{Resource: resource, Epoch: top, Holder: res.Holder, State: StateHeld, Confirmed: true}, nil
		case Open:
			return View{Resource: resource, Epoch: top, State: StateOpen, Confirmed: true}, nil
		case Contended:
			return View{Resource: resource, Epoch: top, State: StateContended, Confirmed: true}, nil
		}
		// Superseded: the epoch moved while we looked; look again.
	}
}

// Local is this node's last known view of resource, without asking anyone:
// the highest of what it learned from majority rounds and what its own
// acceptor holds. Cheap, possibly stale; for display.
func (n *Node) Local(resource string) (View, error) {
	if err := ValidResource(resource); err != nil {
		return View{}, fmt.Errorf("local claim: %w", err)
	}
	r, err := n.acceptor.Read(ReadRequest{Resource: resource})
	if err != nil {
		return View{}, fmt.Errorf("local claim %q: %w", resource, err)
	}
	n.mu.Lock()
	c, ok := n.learned[resource]
	n.mu.Unlock()
	rec := r.Record
	if ok && c.Epoch >= rec.Epoch {
		return View{Resource: resource, Epoch: c.Epoch, Holder: c.Holder, State: StateHeld, Confirmed: true}, nil
	}
	v := View{Resource: resource, Epoch: rec.Epoch, State: StateNone}
	if rec.Epoch > 0 {
		v.State = StateOpen
		if a := rec.Accepted; a != nil && a.Epoch == rec.Epoch {
			v.Holder, v.State = a.Holder, StateUnconfirmed
		}
	}
	return v, nil
}

// LocalAll is Local for every resource this node knows of, sorted.
func (n *Node) LocalAll() ([]View, error) {
	names, err := n.acceptor.Store().Resources()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, s := range names {
		seen[s] = true
	}
	n.mu.Lock()
	for s := range n.learned {
		seen[s] = true
	}
	n.mu.Unlock()
	out := make([]View, 0, len(seen))
	for s := range seen {
		v, err := n.Local(s)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Resource < out[j].Resource })
	return out, nil
}

func (n *Node) learn(c Claim) {
	n.mu.Lock()
	old, ok := n.learned[c.Resource]
	news := !ok || old.Epoch < c.Epoch
	if news {
		n.learned[c.Resource] = c
	}
	n.mu.Unlock()
	if news && n.cfg.OnDecided != nil {
		n.cfg.OnDecided(c)
	}
}

func (n *Node) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.ProposeTimeout)
}

// run drives a Proposal round after round until it ends or ctx does.
func (n *Node) run(ctx context.Context, resource string, epoch uint64, want string, voters VoterSet) (Result, error) {
	ctx, cancel := n.deadline(ctx)
	defer cancel()
	n.mu.Lock()
	first := n.round
	n.mu.Unlock()
	p, err := NewProposal(resource, epoch, want, n.cfg.Self, n.cfg.Incarnation, voters, first)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		n.mu.Lock()
		n.round = max(n.round, p.Round())
		n.mu.Unlock()
	}()
	for {
		res, err := n.round1(ctx, p)
		if err != nil {
			return Result{}, err
		}
		if res.Outcome != Pending && res.Outcome != Retry {
			return res, nil
		}
		if res.Outcome == Retry {
			n.mu.Lock()
			d := time.Duration(n.rng.Int64N(int64(n.cfg.BackoffMax) + 1))
			n.mu.Unlock()
			if err := n.sleep(ctx, d); err != nil {
				return Result{}, err
			}
		}
	}
}

func (n *Node) sleep(ctx context.Context, d time.Duration) error {
	c, stop := n.clock.NewTimer(d)
	defer stop()
	select {
	case <-ctx.Done():
		return noQuorum(ctx)
	case <-c:
		return nil
	}
}

func noQuorum(ctx context.Context) error {
	return fmt.Errorf("%w: %w", ErrNoQuorum, context.Cause(ctx))
}

type callResult struct {
	s   Send
	r   Reply
	err error
}

// round1 runs one round of p; Pending means it timed out.
func (n *Node) round1(ctx context.Context, p *Proposal) (Result, error) {
	// Requests still out when the round ends are cancelled and left to
	// finish on their own (an acceptor may be in the middle of an fsync):
	// the round returns at a majority; Close waits for the stragglers.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sends := p.NextRound()
	replies := make(chan callResult, 2*len(sends))
	send := func(s Send) {
		n.calls.Add(1)
		go func() {
			defer n.calls.Done()
			var cr callResult
			cr.s = s
			if s.Prepare != nil {
				cr.r, cr.err = n.prepare(rctx, s.To, *s.Prepare)
			} else {
				cr.r, cr.err = n.accept(rctx, s.To, *s.Accept)
			}
			replies <- cr // buffered for every send of the round
		}()
	}
	for _, s := range sends {
		send(s)
	}
	timer, stop := n.clock.NewTimer(n.cfg.RoundTimeout)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return Result{}, noQuorum(ctx)
		case <-timer:
			return Result{Outcome: Pending}, nil
		case cr := <-replies:
			if cr.err != nil {
				n.log.Debug("claim request lost", "to", cr.s.To, "err", cr.err)
				continue
			}
			n.fence.Heard(cr.s.To)
			var res Result
			if cr.s.Prepare != nil {
				var more []Send
				more, res = p.OnPrepare(cr.s.To, *cr.s.Prepare, cr.r)
				for _, s := range more {
					send(s)
				}
			} else {
				res = p.OnAccept(cr.s.To, *cr.s.Accept, cr.r)
			}
			if res.Outcome != Pending {
				return res, nil
			}
		}
	}
}

func (n *Node) prepare(ctx context.Context, to string, q PrepareRequest) (Reply, error) {
	if to == n.cfg.Self {
		return n.acceptor.Prepare(q)
	}
	return n.t.Prepare(ctx, to, q)
}

func (n *Node) accept(ctx context.Context, to string, q AcceptRequest) (Reply, error) {
	if to == n.cfg.Self {
		return n.acceptor.Accept(q)
	}
	return n.t.Accept(ctx, to, q)
}

func (n *Node) read(ctx context.Context, to string, q ReadRequest) (Reply, error) {
	if to == n.cfg.Self {
		return n.acceptor.Read(q)
	}
	return n.t.Read(ctx, to, q)
}

// collectReads asks every voter for its record and returns once a
// majority answered; a round that times out is retried.
func (n *Node) collectReads(ctx context.Context, resource string, voters VoterSet) ([]Reply, error) {
	for {
		out, err := n.readRound(ctx, resource, voters)
		if err != nil || out != nil {
			return out, err
		}
	}
}

func (n *Node) readRound(ctx context.Context, resource string, voters VoterSet) ([]Reply, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan callResult, voters.Len())
	for _, id := range voters.IDs() {
		n.calls.Add(1)
		go func() {
			defer n.calls.Done()
			r, err := n.read(rctx, id, ReadRequest{Resource: resource})
			ch <- callResult{s: Send{To: id}, r: r, err: err}
		}()
	}
	timer, stop := n.clock.NewTimer(n.cfg.RoundTimeout)
	defer stop()
	var out []Reply
	for {
		select {
		case <-ctx.Done():
			return nil, noQuorum(ctx)
		case <-timer:
			return nil, nil
		case cr := <-ch:
			if cr.err != nil || cr.r.Validate() != nil {
				continue
			}
			n.fence.Heard(cr.s.To)
			out = append(out, cr.r)
			if len(out) >= voters.Majority() {
				return out, nil
			}
		}
	}
}

// Close waits for the requests that Propose and Read left in flight when
// they returned (they were cancelled). Call it after the last Propose or
// Read and before closing the store.
func (n *Node) Close() { n.calls.Wait() }

// Heard tells the fence that node answered something else (gossip, an
// API call): any proof of life from a voter counts.
func (n *Node) Heard(node string) { n.fence.Heard(node) }

// Run pings every voter each ProbeInterval and keeps the fence current
// until ctx ends; it returns nil then.
func (n *Node) Run(ctx context.Context) error {
	for {
		n.probe(ctx)
		n.fence.Evaluate()
		c, stop := n.clock.NewTimer(n.cfg.ProbeInterval)
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-c:
		}
	}
}

func (n *Node) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ProbeInterval)
	defer cancel()
	var wg sync.WaitGroup
	for _, id := range n.Voters().IDs() {
		if id == n.cfg.Self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.t.Ping(ctx, id); err == nil {
				n.fence.Heard(id)
			} else if !errors.Is(err, context.Canceled) {
				n.log.Debug("claim ping lost", "to", id, "err", err)
			}
		}()
	}
	wg.Wait()
}
