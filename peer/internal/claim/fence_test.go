package claim

import (
	"log/slog"
	"testing"
	"time"
)

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) NewTimer(time.Duration) (<-chan time.Time, func() bool) {
	return make(chan time.Time), func() bool { return true }
}

func TestFence(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	voters, err := NewVoterSet("a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFence("a", 3*time.Second, voters, clk, slog.New(slog.DiscardHandler))
	ch, stop := f.Watch()
	defer stop()
	expect := func(what string, fenced bool) {
		t.Helper()
		if s := f.Evaluate(); s.Fenced != fenced {
			t.Errorf("%s: fenced = %v, want %v (%+v)", what, s.Fenced, fenced, s)
		}
	}
	latest := func() FenceState {
		t.Helper()
		select {
		case s := <-ch:
			return s
		default:
			t.Fatal("no fence state on the watch channel")
			return FenceState{}
		}
	}
	if s := latest(); !s.Fenced {
		t.Errorf("initial watch state %+v, want fenced (nobody heard yet)", s)
	}
	expect("at start", true)
	f.Heard("b")
	expect("heard b", false)
	if s := latest(); s.Fenced || s.Heard != 2 || s.Need != 2 {
		t.Errorf("watch after hearing b: %+v", s)
	}
	f.Heard("x") // not a voter: does not count
	clk.now = clk.now.Add(2 * time.Second)
	expect("2 s later", false)
	clk.now = clk.now.Add(time.Second)
	expect("3 s later", true)
	s := latest()
	if !s.Fenced || !s.Since.Equal(clk.now) {
		t.Errorf("watch after the window: %+v, want fenced since %v", s, clk.now)
	}
	f.Heard("c")
	expect("heard c", false)

	// Self alone is a majority of one.
	one, err := NewVoterSet("a")
	if err != nil {
		t.Fatal(err)
	}
	f.SetVoters(one)
	clk.now = clk.now.Add(time.Hour)
	expect("single voter", false)
	// A node that is not a voter, or an empty set, is always fenced.
	f.SetVoters(VoterSet{})
	expect("no voters", true)
}
