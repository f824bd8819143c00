package claim

import (
	"testing"
)

// cluster3 drives proposals by hand against three acceptors.
type handCluster struct {
	t      *testing.T
	voters VoterSet
	acc    map[string]*Acceptor
}

func newHandCluster(t *testing.T, ids ...string) *handCluster {
	v, err := NewVoterSet(ids...)
	if err != nil {
		t.Fatal(err)
	}
	c := &handCluster{t: t, voters: v, acc: map[string]*Acceptor{}}
	for _, id := range ids {
		s := NewMemStore()
		c.acc[id] = NewAcceptor(s)
		t.Cleanup(func() { checkStore(t, s) })
	}
	return c
}

func (c *handCluster) proposal(epoch uint64, want, node string) *Proposal {
	p, err := NewProposal("vm/1", epoch, want, node, 1, c.voters, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// deliver sends every message of sends to the acceptors in to (others are
// lost) and feeds the replies back; accepts produced on the way are
// delivered to the same acceptors.
func (c *handCluster) deliver(p *Proposal, sends []Send, to ...string) Result {
	c.t.Helper()
	reach := map[string]bool{}
	for _, id := range to {
		reach[id] = true
	}
	res := p.Result()
	for len(sends) > 0 {
		s := sends[0]
		sends = sends[1:]
		if !reach[s.To] {
			continue
		}
		a := c.acc[s.To]
		if s.Prepare != nil {
			r, err := a.Prepare(*s.Prepare)
			if err != nil {
				c.t.Fatal(err)
			}
			var more []Send
			more, res = p.OnPrepare(s.To, *s.Prepare, r)
			sends = append(sends, more...)
		} else {
			r, err := a.Accept(*s.Accept)
			if err != nil {
				c.t.Fatal(err)
			}
			res = p.OnAccept(s.To, *s.Accept, r)
		}
	}
	return res
}

func TestProposalDecides(t *testing.T) {
	c := newHandCluster(t, "a", "b", "c")
	p := c.proposal(1, "a", "a")
	res := c.deliver(p, p.NextRound(), "a", "b")
	if res != (Result{Outcome: Decided, Holder: "a"}) {
		t.Fatalf("result %+v, want decided a", res)
	}
}

func TestProposalMinorityStaysPending(t *testing.T) {
	c := newHandCluster(t, "a", "b", "c")
	p := c.proposal(1, "a", "a")
	if res := c.deliver(p, p.NextRound(), "a"); res.Outcome != Pending {
		t.Fatalf("result %+v with one of three reachable, want pending", res)
	}
}

func TestProposalAdoptsAcceptedValue(t *testing.T) {
	c := newHandCluster(t, "a", "b", "c")
	pa := c.proposal(1, "a", "a")
	// a's value reaches only acceptor a: not decided.
	sends := pa.NextRound()
	if res := c.deliver(pa, sends, "a", "b"); res.Outcome != Decided {
		t.Fatalf("first proposal: %+v", res)
	}
	// b proposes itself for the same epoch and must learn a.
	pb := c.proposal(1, "b", "b")
	res := c.deliver(pb, pb.NextRound(), "b", "c")
	if res != (Result{Outcome: Decided, Holder: "a"}) {
		t.Fatalf("second proposal: %+v, want decided a (taken)", res)
	}
}

func TestProposalPreemptedThenRetries(t *testing.T) {
	c := newHandCluster(t, "a", "b", "c")
	pa := c.proposal(1, "a", "a")
	pb := c.proposal(1, "b", "b")
	sa := pa.NextRound()
	sb := pb.NextRound() // same round number, node b > a: b's ballot is higher
	if res := c.deliver(pb, sb[:0], "a"); res.Outcome != Pending {
		t.Fatal(res)
	}
	// b's prepares land first everywhere, then a's.
	for _, s := range sb {
		r, _ := c.acc[s.To].Prepare(*s.Prepare)
		pb.OnPrepare(s.To, *s.Prepare, r)
	}
	res := c.deliver(pa, sa, "a", "b", "c")
	if res.Outcome != Retry {
		t.Fatalf("pre-empted proposal: %+v, want retry", res)
	}
	res = c.deliver(pa, pa.NextRound(), "a", "b", "c")
	if res != (Result{Outcome: Decided, Holder: "a"}) {
		t.Fatalf("after retry: %+v", res)
	}
	if pa.Ballot().Round <= 1 {
		t.Errorf("retry reused round %d", pa.Ballot().Round)
	}
}

func TestProposalSuperseded(t *testing.T) {
	c := newHandCluster(t, "a", "b", "c")
	p2 := c.proposal(2, "b", "b")
	if res := c.deliver(p2, p2.NextRound(), "b", "c"); res.Outcome != Decided {
		t.Fatal(res)
	}
	p1 := c.proposal(1, "a", "a")
	res := c.deliver(p1, p1.NextRound(), "a", "b", "c")
	if res.Outcome != Superseded || res.HigherEpoch != 2 {
		t.Fatalf("stale proposal: %+v, want superseded by 2", res)
	}
}

func TestProposalContended(t *testing.T) {
	// Five acceptors; four accept four different holders at epoch 1: the
	// highest (d) is refused by three, more than five can spare.
	c := newHandCluster(t, "a", "b", "c", "d", "e")
	for _, x := range []struct{ holder, at string }{{"a", "a"}, {"b", "b"}, {"c", "c"}, {"d", "d"}} {
		if _, err := c.acc[x.at].Accept(AcceptRequest{"vm/1", 1, ballot(1, x.holder), x.holder}); err != nil {
			t.Fatal(err)
		}
	}
	p := c.proposal(1, "e", "e")
	res := c.deliver(p, p.NextRound(), "a", "b", "c", "d", "e")
	if res.Outcome != Contended {
		t.Fatalf("result %+v, want contended", res)
	}
}

func TestProposalReadOnly(t *testing.T) {
	c := newHandCluster(t, "a", "b", "c")
	p := c.proposal(1, "", "a")
	if res := c.deliver(p, p.NextRound(), "a", "b", "c"); res.Outcome != Open {
		t.Fatalf("read of an empty epoch: %+v, want open", res)
	}
	// A value accepted by one acceptor only is completed by the read.
	if _, err := c.acc["c"].Accept(AcceptRequest{"vm/1", 1, ballot(5, "c"), "c"}); err != nil {
		t.Fatal(err)
	}
	// The first round meets c's higher promise and stays pending; the next
	// round goes above it and completes c's value.
	p = c.proposal(1, "", "a")
	if res := c.deliver(p, p.NextRound(), "b", "c"); res.Outcome != Pending {
		t.Fatalf("read below c's promise: %+v, want pending", res)
	}
	if res := c.deliver(p, p.NextRound(), "b", "c"); res != (Result{Outcome: Decided, Holder: "c"}) {
		t.Fatalf("read completing c: %+v", res)
	}
}

func TestProposalIgnoresForeignReplies(t *testing.T) {
	c := newHandCluster(t, "a", "b", "c")
	p := c.proposal(1, "a", "a")
	sends := p.NextRound()
	q := *sends[0].Prepare
	ok := Reply{OK: true, Record: Record{Epoch: 1, Promised: q.Ballot}}
	// From a non-voter, for another ballot, twice from the same voter: none
	// of these make a majority.
	p.OnPrepare("x", q, ok)
	other := q
	other.Ballot.Round++
	p.OnPrepare("b", other, Reply{OK: true, Record: Record{Epoch: 1, Promised: other.Ballot}})
	p.OnPrepare("a", q, ok)
	more, res := p.OnPrepare("a", q, ok)
	if len(more) != 0 || res.Outcome != Pending {
		t.Fatalf("proposal advanced on foreign or duplicate replies: %d sends, %+v", len(more), res)
	}
}
