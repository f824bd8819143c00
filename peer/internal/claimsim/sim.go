package claimsim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"

	"github.com/shoal-hci/shoal/peer/internal/claim"
)

// Options configure one run. Zero fields are drawn from the seed.
type Options struct {
	Seed      uint64
	Voters    int    // acceptors (and nodes); 0: 3 to 5
	Clients   int    // proposing clients; 0: 2 to 5
	Resources int    // 0: 1 or 2
	BoltDir   string // non-empty: each acceptor keeps a bbolt file here (slow); else a MemStore
	// Trace, when set, receives one line per event (for debugging a seed).
	Trace func(string)

	amnesia  bool // tests of the checker: acceptors lose their store at restart
	changeBy int  // tests of the checker: 2 changes the voters by two nodes at once
}

// Report summarises a run.
type Report struct {
	Seed       uint64
	Voters     int
	Clients    int
	Events     int
	Decided    int // (resource, epoch) pairs decided
	Wins       int // proposals that won for their proposer
	Crashes    int
	Partitions int
	Outcomes   map[string]int // proposal outcomes (and "timeout" for rounds that timed out)
	// VoterChange is how many nodes the voter set changes by during the run
	// (0: none): proposers hold the old or the new set at random.
	VoterChange int
	EndTime     int64
}

func (r Report) String() string {
	return fmt.Sprintf("seed=%d voters=%d clients=%d events=%d decided=%d wins=%d crashes=%d partitions=%d outcomes=%v t=%d",
		r.Seed, r.Voters, r.Clients, r.Events, r.Decided, r.Wins, r.Crashes, r.Partitions, r.Outcomes, r.EndTime)
}

// Timing, in ticks (think milliseconds).
const (
	maxDelay     = 40
	roundTimeout = 4*maxDelay + 20
	maxBackoff   = 2 * roundTimeout
	chaosTime    = 6000
	liveBound    = 200_000 // after the heal
	maxAttempts  = 6
)

type evKind int

const (
	evRequest evKind = iota
	evReply
	evTimer
	evStart
	evCrash
	evRestart
	evPartition
	evHeal
	evEndChaos
)

type event struct {
	at   int64
	seq  uint64
	kind evKind
	// request/reply
	client, cgen int
	node         int
	send         claim.Send
	reply        claim.Reply
	tgen         int
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type node struct {
	id    string
	up    bool
	store claim.Store
	acc   *claim.Acceptor
	path  string
}

type client struct {
	idx, node int
	res       string
	voters    claim.VoterSet
	gen       int // bumped when its node crashes
	tgen      int // bumped each time a timer is set
	inc       uint64
	p         *claim.Proposal
	want      string
	epoch     uint64
	roundAt   int64
	lastRound uint64
	known     uint64 // highest epoch this client knows of
	attempts  int
	wins      int
	goal      int
	done      bool
	final     bool // the liveness probe after the heal
}

// pickVoters gives c the voter set its node believes in: during a change,
// old or new at random, except that a node outside the old set knows it
// was just added (or is about to be removed) and uses the full set.
func (s *sim) pickVoters(c *client) {
	c.voters = s.sets[0]
	if len(s.sets) > 1 && s.sets[1].Contains(s.nodes[c.node].id) && s.rng.IntN(2) == 0 {
		c.voters = s.sets[1]
	}
}

type reKey struct {
	res   string
	epoch uint64
}

type chosen struct {
	holder string
	at     int64
}

type sim struct {
	opt      Options
	rng      *rand.Rand
	now      int64
	seq      uint64
	q        eventQueue
	nodes    []*node
	clients  []*client
	sets     []claim.VoterSet // the voter sets in use: all nodes, and during a change all but the last changeBy
	changeBy int
	cut      map[[2]int]bool
	chaos    bool
	loss     float64
	dup      float64
	crashP   float64
	rep      Report
	err      error

	perAcceptor map[string]string          // acceptor|res|epoch → holder
	acceptedBy  map[string]map[string]bool // res|epoch|holder → acceptors
	chosen      map[reKey]chosen
}

// Run simulates one seed and returns the first violation found, if any.
func Run(opt Options) (Report, error) {
	s := &sim{
		opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, 0xc1a1)), cut: map[[2]int]bool{}, chaos: true,
		perAcceptor: map[string]string{}, acceptedBy: map[string]map[string]bool{}, chosen: map[reKey]chosen{},
	}
	s.rep.Seed = opt.Seed
	s.rep.Outcomes = map[string]int{}
	if err := s.setup(); err != nil {
		return s.rep, err
	}
	for s.q.Len() > 0 && s.err == nil {
		e := heap.Pop(&s.q).(*event)
		s.now = e.at
		s.rep.Events++
		s.handle(e)
		if !s.chaos && s.now > chaosTime+liveBound {
			s.fail("liveness: clients not done %d ticks after the heal: %s", liveBound, s.pending())
		}
	}
	s.rep.EndTime = s.now
	s.rep.Decided = len(s.chosen)
	if s.err == nil {
		for _, c := range s.clients {
			if !c.done {
				s.fail("liveness: client %d never finished (queue drained): %s", c.idx, s.pending())
				break
			}
		}
	}
	for _, n := range s.nodes {
		if err := n.store.Check(); err != nil && s.err == nil {
			s.fail("store of %s: %v", n.id, err)
		}
		if b, ok := n.store.(*claim.BoltStore); ok && n.up {
			b.Close()
		}
	}
	return s.rep, s.err
}

func (s *sim) fail(format string, a ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("seed %d t=%d: %s", s.opt.Seed, s.now, fmt.Sprintf(format, a...))
	}
}

func (s *sim) trace(format string, a ...any) {
	if s.opt.Trace != nil {
		s.opt.Trace(fmt.Sprintf("t=%d ", s.now) + fmt.Sprintf(format, a...))
	}
}

func (s *sim) pending() string {
	var b strings.Builder
	for _, c := range s.clients {
		if !c.done {
			fmt.Fprintf(&b, "[client %d on %s epoch %d want %q attempts %d wins %d] ", c.idx, s.nodes[c.node].id, c.epoch, c.want, c.attempts, c.wins)
		}
	}
	return b.String()
}

func (s *sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

func (s *sim) setup() error {
	nv := s.opt.Voters
	if nv == 0 {
		nv = 3 + s.rng.IntN(3)
	}
	nc := s.opt.Clients
	if nc == 0 {
		nc = 2 + s.rng.IntN(4)
	}
	nr := s.opt.Resources
	if nr == 0 {
		nr = 1 + s.rng.IntN(2)
	}
	s.rep.Voters, s.rep.Clients = nv, nc
	s.loss = []float64{0, 0.05, 0.2, 0.4}[s.rng.IntN(4)]
	s.dup = []float64{0, 0.05, 0.2}[s.rng.IntN(3)]
	s.crashP = []float64{0, 0.002, 0.01}[s.rng.IntN(3)]
	ids := make([]string, nv)
	for i := range nv {
		ids[i] = fmt.Sprintf("n%d", i)
		n := &node{id: ids[i], up: true}
		if s.opt.BoltDir != "" {
			n.path = filepath.Join(s.opt.BoltDir, fmt.Sprintf("seed%d-%s.db", s.opt.Seed, ids[i]))
		}
		if err := s.open(n); err != nil {
			return err
		}
		s.nodes = append(s.nodes, n)
	}
	s.changeBy = s.opt.changeBy
	if s.changeBy == 0 && s.rng.IntN(3) == 0 {
		s.changeBy = 1
	}
	s.rep.VoterChange = s.changeBy
	all, err := claim.NewVoterSet(ids...)
	if err != nil {
		return err
	}
	s.sets = []claim.VoterSet{all}
	if s.changeBy > 0 {
		old, err := claim.NewVoterSet(ids[:nv-s.changeBy]...)
		if err != nil {
			return err
		}
		s.sets = append(s.sets, old)
	}
	for i := range nc {
		c := &client{idx: i, node: s.rng.IntN(nv), res: fmt.Sprintf("vm/%d", s.rng.IntN(nr)), inc: s.rng.Uint64() | 1, goal: 1 + s.rng.IntN(2)}
		s.pickVoters(c)
		s.clients = append(s.clients, c)
		s.push(&event{at: int64(s.rng.IntN(100)), kind: evStart, client: i})
	}
	// Faults during the chaos phase.
	for t := int64(0); t < chaosTime; t += int64(200 + s.rng.IntN(800)) {
		switch s.rng.IntN(3) {
		case 0:
			s.push(&event{at: t, kind: evPartition})
		case 1:
			s.push(&event{at: t, kind: evHeal})
		case 2:
			if s.crashP > 0 {
				s.push(&event{at: t, kind: evCrash, node: s.rng.IntN(nv)})
			}
		}
	}
	s.push(&event{at: chaosTime, kind: evEndChaos})
	return nil
}

func (s *sim) open(n *node) error {
	if n.path == "" {
		if n.store == nil || s.opt.amnesia {
			n.store = claim.NewMemStore()
		}
	} else {
		b, err := claim.OpenBolt(n.path)
		if err != nil {
			return err
		}
		n.store = b
	}
	if err := n.store.Check(); err != nil {
		return fmt.Errorf("seed %d: store of %s after restart: %w", s.opt.Seed, n.id, err)
	}
	n.acc = claim.NewAcceptor(n.store)
	return nil
}

func (s *sim) linked(a, b int) bool {
	return s.nodes[a].up && s.nodes[b].up && !s.cut[[2]int{a, b}]
}

// transmit schedules delivery of e from node `from`, with loss and
// duplication while chaos lasts (duplication also after).
func (s *sim) transmit(from int, e *event) {
	if !s.nodes[from].up {
		return
	}
	if s.chaos && s.rng.Float64() < s.loss {
		return
	}
	copies := 1
	if s.rng.Float64() < s.dup {
		copies = 2
	}
	for range copies {
		d := *e
		d.at = s.now + 1 + int64(s.rng.IntN(maxDelay))
		s.push(&d)
	}
}

func (s *sim) handle(e *event) {
	switch e.kind {
	case evStart:
		c := s.clients[e.client]
		if c.gen == e.cgen && !c.done && s.nodes[c.node].up && c.p == nil {
			s.startAttempt(c)
		}
	case evRequest:
		s.onRequest(e)
	case evReply:
		s.onReply(e)
	case evTimer:
		c := s.clients[e.client]
		if c.gen != e.cgen || c.tgen != e.tgen || c.p == nil || !s.nodes[c.node].up {
			return
		}
		if c.p.Result().Outcome == claim.Pending {
			s.rep.Outcomes["timeout"]++
		}
		s.newRound(c)
	case evCrash:
		s.crash(e.node)
	case evRestart:
		s.restart(e.node)
	case evPartition:
		s.cut = map[[2]int]bool{}
		side := make([]bool, len(s.nodes))
		for i := range side {
			side[i] = s.rng.IntN(2) == 0
		}
		for a := range s.nodes {
			for b := range s.nodes {
				if side[a] != side[b] {
					s.cut[[2]int{a, b}] = true
				}
			}
		}
		s.rep.Partitions++
		s.trace("partition %v", side)
	case evHeal:
		s.cut = map[[2]int]bool{}
		s.trace("heal")
	case evEndChaos:
		s.chaos = false
		s.cut = map[[2]int]bool{}
		for i, n := range s.nodes {
			if !n.up {
				s.restart(i)
			}
		}
		s.trace("end of chaos")
	}
}

func (s *sim) crash(i int) {
	n := s.nodes[i]
	if !n.up {
		return
	}
	n.up = false
	s.rep.Crashes++
	if b, ok := n.store.(*claim.BoltStore); ok {
		b.Close()
	}
	for _, c := range s.clients {
		if c.node == i {
			c.gen++
			c.p = nil
		}
	}
	s.trace("crash %s", n.id)
	s.push(&event{at: s.now + int64(50+s.rng.IntN(1000)), kind: evRestart, node: i})
}

func (s *sim) restart(i int) {
	n := s.nodes[i]
	if n.up {
		return
	}
	if err := s.open(n); err != nil {
		s.fail("%v", err)
		return
	}
	n.up = true
	for _, c := range s.clients {
		if c.node == i {
			// The process restarted: a new incarnation that remembers no
			// rounds and no epochs.
			c.inc = s.rng.Uint64() | 1
			s.pickVoters(c)
			c.lastRound, c.known = 0, 0
			c.p = nil
			if !c.done {
				s.push(&event{at: s.now + 1, kind: evStart, client: c.idx, cgen: c.gen})
			}
		}
	}
	s.trace("restart %s", n.id)
}

// startAttempt begins a new proposal for client c.
func (s *sim) startAttempt(c *client) {
	c.want = s.nodes[c.node].id
	switch r := s.rng.IntN(10); {
	case c.final:
		c.epoch = c.known + 1
	case r < 5:
		c.epoch = c.known + 1 // claim the next epoch
	case r < 7:
		c.epoch = max(c.known, 1) // race for the epoch it knows
	case r < 8 && c.known > 1:
		c.epoch = c.known - 1 // a stale owner trying its old epoch
	default:
		c.epoch = max(c.known, 1)
		c.want = "" // a read
	}
	p, err := claim.NewProposal(c.res, c.epoch, c.want, s.nodes[c.node].id, c.inc, c.voters, c.lastRound)
	if err != nil {
		s.fail("new proposal: %v", err)
		return
	}
	c.p = p
	s.trace("client %d on %s starts %s epoch %d want %q", c.idx, s.nodes[c.node].id, c.res, c.epoch, c.want)
	s.newRound(c)
}

func (s *sim) newRound(c *client) {
	sends := c.p.NextRound()
	c.roundAt = s.now
	for _, m := range sends {
		s.sendReq(c, m)
	}
	c.tgen++
	s.push(&event{at: s.now + roundTimeout, kind: evTimer, client: c.idx, cgen: c.gen, tgen: c.tgen})
}

func (s *sim) sendReq(c *client, m claim.Send) {
	to := s.voterIndex(m.To)
	s.transmit(c.node, &event{kind: evRequest, client: c.idx, cgen: c.gen, node: to, send: m})
}

func (s *sim) voterIndex(id string) int {
	for i, n := range s.nodes {
		if n.id == id {
			return i
		}
	}
	panic("unknown voter " + id) // the voter set is built from s.nodes
}

func (s *sim) onRequest(e *event) {
	c := s.clients[e.client]
	if !s.linked(c.node, e.node) {
		return
	}
	n := s.nodes[e.node]
	var r claim.Reply
	var err error
	if e.send.Prepare != nil {
		r, err = n.acc.Prepare(*e.send.Prepare)
	} else {
		r, err = n.acc.Accept(*e.send.Accept)
		if err == nil && r.OK {
			s.observeAccept(n.id, *e.send.Accept)
		}
	}
	if err != nil {
		s.fail("acceptor %s: %v", n.id, err)
		return
	}
	if s.chaos && s.rng.Float64() < s.crashP*5 {
		// Crash after the save, before the answer leaves.
		s.crash(e.node)
		return
	}
	s.transmit(e.node, &event{kind: evReply, client: e.client, cgen: e.cgen, node: e.node, send: e.send, reply: r})
}

// observeAccept is the oracle: it sees every accept an acceptor grants.
func (s *sim) observeAccept(acc string, q claim.AcceptRequest) {
	k := fmt.Sprintf("%s|%s|%d", acc, q.Resource, q.Epoch)
	if h, ok := s.perAcceptor[k]; ok && h != q.Holder {
		s.fail("acceptor %s accepted two holders for %s epoch %d: %s and %s", acc, q.Resource, q.Epoch, h, q.Holder)
		return
	}
	s.perAcceptor[k] = q.Holder
	hk := fmt.Sprintf("%s|%d|%s", q.Resource, q.Epoch, q.Holder)
	if s.acceptedBy[hk] == nil {
		s.acceptedBy[hk] = map[string]bool{}
	}
	s.acceptedBy[hk][acc] = true
	// Decided: a majority of any voter set in use accepted it.
	decided := false
	for _, set := range s.sets {
		n := 0
		for a := range s.acceptedBy[hk] {
			if set.Contains(a) {
				n++
			}
		}
		decided = decided || n >= set.Majority()
	}
	if !decided {
		return
	}
	re := reKey{q.Resource, q.Epoch}
	if ch, ok := s.chosen[re]; ok {
		if ch.holder != q.Holder {
			s.fail("two holders decided for %s epoch %d: %s (t=%d) and %s", q.Resource, q.Epoch, ch.holder, ch.at, q.Holder)
		}
		return
	}
	s.chosen[re] = chosen{holder: q.Holder, at: s.now}
	s.trace("decided %s epoch %d holder %s", q.Resource, q.Epoch, q.Holder)
}

func (s *sim) onReply(e *event) {
	c := s.clients[e.client]
	if c.gen != e.cgen || c.p == nil || !s.linked(e.node, c.node) {
		return
	}
	from := s.nodes[e.node].id
	var res claim.Result
	if e.send.Prepare != nil {
		var more []claim.Send
		more, res = c.p.OnPrepare(from, *e.send.Prepare, e.reply)
		for _, m := range more {
			s.sendReq(c, m)
		}
	} else {
		res = c.p.OnAccept(from, *e.send.Accept, e.reply)
	}
	s.outcome(c, res)
}

func (s *sim) outcome(c *client, res claim.Result) {
	if res.Outcome == claim.Pending {
		return
	}
	p := c.p
	c.lastRound = max(c.lastRound, p.Round())
	s.rep.Outcomes[res.Outcome.String()]++
	if res.Outcome == claim.Retry {
		c.tgen++
		s.push(&event{at: s.now + 1 + int64(s.rng.IntN(maxBackoff)), kind: evTimer, client: c.idx, cgen: c.gen, tgen: c.tgen})
		return
	}
	c.p = nil
	c.tgen++ // cancel the round timer
	c.attempts++
	s.trace("client %d %s epoch %d want %q: %v %q higher=%d", c.idx, c.res, c.epoch, c.want, res.Outcome, res.Holder, res.HigherEpoch)
	switch res.Outcome {
	case claim.Decided:
		re := reKey{c.res, c.epoch}
		ch, ok := s.chosen[re]
		if !ok || ch.holder != res.Holder {
			s.fail("client %d decided %s epoch %d = %s, but the acceptors decided %+v (%v)", c.idx, c.res, c.epoch, res.Holder, ch, ok)
			return
		}
		for k, later := range s.chosen {
			if k.res == c.res && k.epoch > c.epoch && later.at < c.roundAt {
				s.fail("supersession: %s epoch %d decided by a round started at t=%d, after epoch %d was decided at t=%d", c.res, c.epoch, c.roundAt, k.epoch, later.at)
				return
			}
		}
		c.known = max(c.known, c.epoch)
		if c.want != "" && res.Holder == c.want {
			c.wins++
			s.rep.Wins++
			if c.final {
				c.done = true
				return
			}
		}
	case claim.Superseded:
		if res.HigherEpoch <= c.epoch {
			s.fail("superseded by epoch %d, not above %d", res.HigherEpoch, c.epoch)
			return
		}
		c.known = max(c.known, res.HigherEpoch)
	case claim.Contended, claim.Open:
		c.known = max(c.known, c.epoch)
	default:
		s.fail("unexpected outcome %v", res.Outcome)
		return
	}
	if c.final {
		// The liveness probe must win; retry only if a racing read or
		// completion got in the way.
		s.push(&event{at: s.now + 1, kind: evStart, client: c.idx, cgen: c.gen})
		return
	}
	if c.wins >= c.goal || c.attempts >= maxAttempts {
		c.done = true
		s.maybeFinal()
		return
	}
	s.push(&event{at: s.now + 1 + int64(s.rng.IntN(maxDelay)), kind: evStart, client: c.idx, cgen: c.gen})
}

// maybeFinal starts the liveness probe once every client is done: client
// 0 claims the next epoch alone and must win.
func (s *sim) maybeFinal() {
	for _, c := range s.clients {
		if !c.done || c.final {
			return
		}
	}
	c := s.clients[0]
	c.final, c.done = true, false
	c.attempts = 0
	s.push(&event{at: s.now + 1, kind: evStart, client: 0, cgen: c.gen})
}
