package claim

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testCluster is n nodes over a MemTransport, each running its probe loop;
// call it inside a synctest bubble.
type testCluster struct {
	t      *testing.T
	tr     *MemTransport
	voters VoterSet
	nodes  map[string]*Node
	dir    string
	stop   map[string]func()
}

func newTestCluster(t *testing.T, bolt bool, ids ...string) *testCluster {
	t.Helper()
	v, err := NewVoterSet(ids...)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, tr: NewMemTransport(), voters: v, nodes: map[string]*Node{}, stop: map[string]func(){}}
	if bolt {
		c.dir = t.TempDir()
	}
	for i, id := range ids {
		c.start(id, uint64(i+1))
	}
	t.Cleanup(func() {
		for _, id := range ids {
			c.halt(id)
		}
	})
	// Let every node probe the others once all are up.
	time.Sleep(DefaultConfig("a").ProbeInterval + time.Millisecond)
	synctest.Wait()
	return c
}

func (c *testCluster) start(id string, inc uint64) {
	var s Store
	if c.dir != "" {
		bs, err := OpenBolt(filepath.Join(c.dir, id+".db"))
		if err != nil {
			c.t.Fatal(err)
		}
		s = bs
	} else {
		s = NewMemStore()
	}
	cfg := DefaultConfig(id)
	cfg.Incarnation = inc
	n, err := New(cfg, s, c.tr.From(id), c.voters)
	if err != nil {
		c.t.Fatal(err)
	}
	c.tr.Add(id, n.Acceptor())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := n.Run(ctx); err != nil {
			c.t.Errorf("node %s Run: %v", id, err)
		}
	})
	c.nodes[id] = n
	c.stop[id] = func() {
		cancel()
		wg.Wait()
		n.Close()
		if err := n.Check(); err != nil {
			c.t.Errorf("node %s check: %v", id, err)
		}
		if bs, ok := s.(*BoltStore); ok {
			bs.Close()
		}
	}
}

func (c *testCluster) halt(id string) {
	if f := c.stop[id]; f != nil {
		f()
		delete(c.stop, id)
	}
}

// restart stops node id and starts it again from its store (bolt) with a
// new incarnation.
func (c *testCluster) restart(id string, inc uint64) {
	c.halt(id)
	c.start(id, inc)
}

func TestNodeProposeReadClaimNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, false, "a", "b", "c")
		ctx := t.Context()
		got, err := c.nodes["a"].Propose(ctx, "vm/1", 1, "a")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(Claim{"vm/1", 1, "a"}, got); d != "" {
			t.Errorf("claim (-want +got):\n%s", d)
		}
		v, err := c.nodes["b"].Read(ctx, "vm/1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(View{Resource: "vm/1", Epoch: 1, Holder: "a", State: StateHeld, Confirmed: true}, v); d != "" {
			t.Errorf("read (-want +got):\n%s", d)
		}
		got, err = c.nodes["c"].ClaimNext(ctx, "vm/1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(Claim{"vm/1", 2, "c"}, got); d != "" {
			t.Errorf("claim next (-want +got):\n%s", d)
		}
		// The old owner cannot come back to its old epoch.
		if _, err := c.nodes["a"].Propose(ctx, "vm/1", 1, "a"); !errors.Is(err, ErrSuperseded) {
			t.Errorf("re-claim of epoch 1 after epoch 2: %v, want ErrSuperseded", err)
		}
		// Nor take epoch 2, which c holds.
		got, err = c.nodes["a"].Propose(ctx, "vm/1", 2, "a")
		if !errors.Is(err, ErrTaken) || got.Holder != "c" {
			t.Errorf("claim of held epoch 2: %+v, %v; want ErrTaken naming c", got, err)
		}
		lv, err := c.nodes["c"].Local("vm/1")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(View{Resource: "vm/1", Epoch: 2, Holder: "c", State: StateHeld, Confirmed: true}, lv); d != "" {
			t.Errorf("local view (-want +got):\n%s", d)
		}
		all, err := c.nodes["b"].LocalAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0].Epoch != 2 {
			t.Errorf("LocalAll on b = %+v, want one view at epoch 2", all)
		}
	})
}

func TestNodeRaceOneWinner(t *testing.T) {
	for range 20 {
		synctest.Test(t, func(t *testing.T) {
			c := newTestCluster(t, false, "a", "b", "c")
			ids := []string{"a", "b", "c"}
			claims := make([]Claim, 3)
			errs := make([]error, 3)
			var wg sync.WaitGroup
			for i, id := range ids {
				wg.Go(func() { claims[i], errs[i] = c.nodes[id].Propose(t.Context(), "vm/1", 1, id) })
			}
			wg.Wait()
			winners := 0
			for i := range ids {
				switch {
				case errs[i] == nil:
					winners++
				case errors.Is(errs[i], ErrTaken):
				default:
					t.Errorf("%s: unexpected error %v", ids[i], errs[i])
				}
			}
			if winners != 1 {
				t.Errorf("%d winners, want exactly 1: %+v %v", winners, claims, errs)
			}
			for i := range ids {
				if claims[i] != claims[0] {
					t.Errorf("nodes disagree on the holder: %+v", claims)
				}
			}
		})
	}
}

func TestNodePartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, false, "a", "b", "c")
		c.tr.Partition([]string{"a"}, []string{"b", "c"})

		// Before its fence window passes, a tries and finds no majority.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := c.nodes["a"].Propose(ctx, "vm/1", 1, "a")
		cancel()
		if !errors.Is(err, ErrNoQuorum) {
			t.Errorf("minority propose: %v, want ErrNoQuorum", err)
		}
		// Then it fences itself and refuses at once.
		time.Sleep(DefaultConfig("a").FenceDeadline())
		synctest.Wait()
		if !c.nodes["a"].Fence().State().Fenced {
			t.Error("a is not fenced after its fence deadline")
		}
		if _, err := c.nodes["a"].Propose(t.Context(), "vm/1", 1, "a"); !errors.Is(err, ErrFenced) {
			t.Errorf("fenced propose: %v, want ErrFenced", err)
		}
		for _, id := range []string{"b", "c"} {
			if c.nodes[id].Fence().State().Fenced {
				t.Errorf("%s in the majority is fenced", id)
			}
		}
		if _, err := c.nodes["b"].Propose(t.Context(), "vm/1", 1, "b"); err != nil {
			t.Errorf("majority propose: %v", err)
		}

		c.tr.Heal()
		time.Sleep(time.Second)
		synctest.Wait()
		if c.nodes["a"].Fence().State().Fenced {
			t.Error("a still fenced after the partition healed")
		}
		v, err := c.nodes["a"].Read(t.Context(), "vm/1")
		if err != nil {
			t.Fatal(err)
		}
		if v.Holder != "b" || v.Epoch != 1 {
			t.Errorf("a reads %+v after heal, want b at epoch 1", v)
		}
	})
}

func TestNodeAcceptorRestartKeepsPromise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, true, "a", "b", "c")
		c.tr.SetDown("c", true)
		if _, err := c.nodes["a"].Propose(t.Context(), "vm/1", 1, "a"); err != nil {
			t.Fatal(err)
		}
		// b restarts from its bbolt file; a goes away; c comes back and
		// tries to take epoch 1 for itself with b and c only.
		c.restart("b", 99)
		c.tr.Add("b", c.nodes["b"].Acceptor())
		c.tr.SetDown("a", true)
		c.tr.SetDown("c", false)
		time.Sleep(time.Second)
		synctest.Wait()
		got, err := c.nodes["c"].Propose(t.Context(), "vm/1", 1, "c")
		if !errors.Is(err, ErrTaken) || got.Holder != "a" {
			t.Errorf("claim after b restarted: %+v, %v; want ErrTaken naming a", got, err)
		}
	})
}

func TestNodeRemovedVoterCannotPropose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, false, "a", "b", "c")
		v, err := NewVoterSet("a", "b")
		if err != nil {
			t.Fatal(err)
		}
		c.nodes["c"].SetVoters(v)
		if _, err := c.nodes["c"].Propose(t.Context(), "vm/1", 1, "c"); !errors.Is(err, ErrNotVoter) {
			t.Errorf("removed node proposes: %v, want ErrNotVoter", err)
		}
	})
}

func TestNodeTwoVotersNeedBoth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, false, "a", "b")
		if _, err := c.nodes["a"].Propose(t.Context(), "vm/1", 1, "a"); err != nil {
			t.Fatalf("both up: %v", err)
		}
		c.tr.SetDown("b", true)
		time.Sleep(DefaultConfig("a").FenceDeadline())
		synctest.Wait()
		if _, err := c.nodes["a"].Propose(t.Context(), "vm/1", 2, "a"); !errors.Is(err, ErrFenced) {
			t.Errorf("two voters, one down: %v, want ErrFenced", err)
		}
	})
}

func TestNodeRejectsBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, false, "a", "b", "c")
		n := c.nodes["a"]
		for _, q := range []struct {
			res    string
			epoch  uint64
			holder string
		}{{"", 1, "a"}, {"vm/1", 0, "a"}, {"vm/1", 1, ""}, {"vm 1", 1, "a"}} {
			if _, err := n.Propose(t.Context(), q.res, q.epoch, q.holder); !errors.Is(err, ErrInvalid) {
				t.Errorf("Propose(%q, %d, %q) = %v, want ErrInvalid", q.res, q.epoch, q.holder, err)
			}
		}
		if _, err := n.Read(t.Context(), "bad name"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Read of a bad name: %v, want ErrInvalid", err)
		}
		all, err := n.LocalAll()
		if err != nil || len(all) != 0 {
			t.Errorf("bad input changed state: %+v, %v", all, err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"zero durations", func(c *Config) { *c = Config{Self: "a"} }, true},
		{"no self", func(c *Config) { c.Self = "" }, false},
		{"negative", func(c *Config) { c.RoundTimeout = -1 }, false},
		{"probe too slow", func(c *Config) { c.ProbeInterval = c.FenceAfter }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig("a")
			tt.mod(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if got, want := DefaultConfig("a").FenceDeadline(), 4*time.Second; got != want {
		t.Errorf("default FenceDeadline = %v, want %v", got, want)
	}
	if got, want := DefaultConfig("a").FailoverWait(), 4400*time.Millisecond; got != want {
		t.Errorf("default FailoverWait = %v, want %v", got, want)
	}
}

// TestNodeFailoverAfterFenceDeadline follows the failover rule: the
// survivors wait the old holder's fence deadline after they lost contact
// before claiming the next epoch; by then the old holder has told its
// watchers it is fenced.
func TestNodeFailoverAfterFenceDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, false, "a", "b", "c")
		if _, err := c.nodes["a"].Propose(t.Context(), "vm/1", 1, "a"); err != nil {
			t.Fatal(err)
		}
		watch, stop := c.nodes["a"].Fence().Watch()
		defer stop()
		if s := <-watch; s.Fenced {
			t.Fatalf("a fenced while healthy: %+v", s)
		}
		c.tr.Partition([]string{"a"}, []string{"b", "c"})
		lost := time.Now()
		time.Sleep(DefaultConfig("b").FailoverWait())
		got, err := c.nodes["b"].ClaimNext(t.Context(), "vm/1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Epoch != 2 || got.Holder != "b" {
			t.Errorf("failover claim %+v, want b at epoch 2", got)
		}
		select {
		case s := <-watch:
			if !s.Fenced {
				t.Errorf("a's watcher saw %+v, want fenced", s)
			}
			if s.Since.Sub(lost) > DefaultConfig("a").FenceDeadline() {
				t.Errorf("a fenced %v after losing the majority, later than its deadline", s.Since.Sub(lost))
			}
		default:
			t.Error("a's watcher was not told it is fenced before the failover claim")
		}
	})
}

// A voter change is settled on a node only once no Propose or Read that
// started with the old set is still running.
func TestNodeVotersSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCluster(t, false, "a", "b", "c")
		a := c.nodes["a"]
		if !a.VotersSettled() {
			t.Fatal("not settled with nothing running")
		}
		c.tr.SetDown("b", true)
		c.tr.SetDown("c", true)
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := a.Read(context.Background(), "vm/1"); err != nil {
				t.Errorf("read: %v", err)
			}
		})
		time.Sleep(time.Millisecond)
		synctest.Wait() // the read waits for a majority
		v, err := NewVoterSet("a", "b", "c", "d")
		if err != nil {
			t.Fatal(err)
		}
		a.SetVoters(v)
		if a.VotersSettled() {
			t.Error("settled while a read on the old voter set runs")
		}
		c.tr.SetDown("b", false)
		wg.Wait()
		if !a.VotersSettled() {
			t.Error("not settled after the read on the old set ended")
		}
	})
}
