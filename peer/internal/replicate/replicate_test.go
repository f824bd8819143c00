package replicate

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

func put(t testing.TB, s *statestore.Store, key, field, val string) {
	t.Helper()
	if _, err := s.Write(key, crdt.Op{Field: field, Set: true, Value: []byte(val)}); err != nil {
		t.Fatal(err)
	}
}

func randomWrite(t testing.TB, r *rand.Rand, s *statestore.Store) *crdt.Change {
	t.Helper()
	key := "vm/" + fmt.Sprint(r.IntN(20))
	var op crdt.Op
	switch r.IntN(6) {
	case 0, 1:
		op = crdt.Op{Field: "f" + fmt.Sprint(r.IntN(3)), Set: true, Value: []byte(fmt.Sprint(r.IntN(100)))}
	case 2:
		op = crdt.Op{Field: "s", Add: true, Elem: fmt.Sprint(r.IntN(5))}
	case 3:
		op = crdt.Op{Field: "s", Remove: true, Elem: fmt.Sprint(r.IntN(5))}
	case 4:
		op = crdt.Op{Field: "c", Incr: true, Delta: r.Int64N(7) - 3}
	case 5:
		op = crdt.Op{Delete: true}
	}
	ch, err := s.Write(key, op)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// Random writes on every node over a network that loses, duplicates,
// delays and reorders messages: everything converges once writes stop.
func TestConvergeUnderFaults(t *testing.T) {
	seed := testSeed(t)
	for i := range 8 {
		s := seed + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := rand.New(rand.NewPCG(s, 9))
				n := 3 + r.IntN(5)
				c := newCluster(t, n, s, clusterOpts{
					store: func(_ int, sc *statestore.Config) { sc.LogRetain = 5 + r.IntN(50) },
					node:  func(_ int, nc *Config) { nc.MaxMessageBytes = 200 + r.IntN(2000); nc.GCInterval = time.Second },
				})
				c.net.Loss, c.net.Dup, c.net.MaxDelay = 0.2, 0.2, 300*time.Millisecond
				c.start()
				for range 300 {
					randomWrite(t, r, c.stores[r.IntN(n)])
					time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
				}
				took := c.waitConverged(t, time.Minute)
				t.Logf("%d nodes converged %s (simulated) after the last write", n, took)
				c.stop()
			})
		})
	}
}

func TestPartitionHeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, 1, clusterOpts{})
		c.start()
		put(t, c.stores[0], "vm/shared", "name", "before")
		c.waitConverged(t, 10*time.Second)
		c.net.Partition([]string{c.ids[0]}, []string{c.ids[1], c.ids[2]})
		put(t, c.stores[0], "vm/a", "side", "one")
		put(t, c.stores[0], "vm/shared", "owner", "n0")
		put(t, c.stores[2], "vm/b", "side", "two")
		if _, err := c.stores[1].Delete("vm/shared"); err != nil {
			t.Fatal(err)
		}
		c.waitConverged(t, 10*time.Second, 1, 2)
		time.Sleep(5 * time.Second)
		if c.converged(t) {
			t.Fatal("converged across a partition")
		}
		c.net.Heal()
		c.waitConverged(t, 10*time.Second)
		for _, s := range c.stores {
			for _, k := range []string{"vm/a", "vm/b"} {
				if _, err := s.Get(k); err != nil {
					t.Errorf("%s: %s: %v", s.NodeID(), k, err)
				}
			}
		}
		c.stop()
	})
}

// A slow or hung peer never blocks local writes.
func TestSlowPeerDoesNotBlockWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, 2, clusterOpts{node: func(_ int, nc *Config) { nc.Fanout = 2 }})
		c.net.SetSlow(c.ids[1], time.Hour)
		c.start()
		for i := range 100 {
			start := time.Now()
			put(t, c.stores[0], fmt.Sprintf("vm/%d", i), "x", "y")
			if d := time.Since(start); d != 0 {
				t.Fatalf("write %d waited %s of (fake) time for a hung peer", i, d)
			}
			time.Sleep(time.Millisecond) // pushes go out one by one
		}
		c.waitConverged(t, 30*time.Second, 0, 2)
		if st := c.nodes[0].Stats(); st.PushesDropped == 0 {
			t.Errorf("no push to the hung peer was dropped: %+v", st)
		}
		c.net.SetSlow(c.ids[1], 0)
		c.stop() // cancels the pushes stuck on the hung peer
	})
}

// A node with a clock far ahead has its changes refused and flagged; it
// does not win later writes.
func TestClockFarAheadRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, 3, clusterOpts{store: func(i int, sc *statestore.Config) {
			if i == 2 {
				sc.Clock = fakeClockAhead(time.Minute)
			}
		}})
		c.start()
		put(t, c.stores[2], "vm/x", "owner", "fast")
		time.Sleep(3 * time.Second)
		put(t, c.stores[0], "vm/x", "owner", "honest")
		c.waitConverged(t, 10*time.Second, 0, 1)
		r, err := c.stores[1].Get("vm/x")
		if err != nil || string(r.Value("owner")) != "honest" {
			t.Fatalf("vm/x on n1 = %v, %v; want owner honest", r, err)
		}
		refused := c.nodes[0].Stats().ClockRefused + c.nodes[1].Stats().ClockRefused
		if refused == 0 {
			t.Error("the fast node's changes were not flagged")
		}
		c.stop()
	})
}

// A node offline while many records change catches up after restart,
// through a snapshot when the logs were compacted.
func TestCatchUpAfterOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, 4, clusterOpts{store: func(_ int, sc *statestore.Config) { sc.LogRetain = 100 }})
		c.start()
		c.net.Remove(c.ids[2])
		c.cancels[2]()
		for i := range 2000 {
			put(t, c.stores[i%2], fmt.Sprintf("vm/%d", i%700), "i", fmt.Sprint(i))
		}
		c.waitConverged(t, 30*time.Second, 0, 1)
		c.net.Add(c.ids[2], c.nodes[2])
		c.startNode(2)
		c.waitConverged(t, 30*time.Second)
		if st := c.nodes[2].Stats(); st.Snapshots == 0 {
			t.Errorf("caught up without a snapshot past compaction: %+v", st)
		}
		c.stop()
	})
}

// A node silent past the rejoin horizon is reset from a snapshot when it
// returns, and records deleted meanwhile do not come back.
func TestRejoinPastHorizon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, 5, clusterOpts{
			store: func(_ int, sc *statestore.Config) { sc.RejoinHorizon = time.Minute },
			node:  func(_ int, nc *Config) { nc.GCInterval = 5 * time.Second },
		})
		c.start()
		put(t, c.stores[0], "vm/doomed", "name", "d")
		put(t, c.stores[0], "vm/keep", "name", "k")
		c.waitConverged(t, 10*time.Second)
		c.net.Partition([]string{c.ids[2]}) // n2 drops off the network, keeps running
		if _, err := c.stores[0].Delete("vm/doomed"); err != nil {
			t.Fatal(err)
		}
		put(t, c.stores[2], "vm/doomed", "owner", "stale") // n2's stale write
		time.Sleep(3 * time.Minute)
		for _, s := range c.stores[:2] {
			if es, _ := s.Dump(); len(es) != 1 {
				t.Fatalf("%s: tombstone not collected past the horizon: %d records", s.NodeID(), len(es))
			}
		}
		for _, s := range c.stores[:2] {
			if must, _ := s.MustResync(c.ids[2], c.stores[2].Origin()); !must {
				t.Fatalf("%s: n2 not marked for resync", s.NodeID())
			}
		}
		c.net.Heal()
		c.waitConverged(t, 30*time.Second)
		if st := c.nodes[2].Stats(); st.Resets != 1 {
			t.Errorf("n2 resets = %d, want 1", st.Resets)
		}
		for _, s := range c.stores {
			if _, err := s.Get("vm/doomed"); !errors.Is(err, statestore.ErrNotFound) {
				t.Errorf("%s: deleted record came back: %v", s.NodeID(), err)
			}
			if _, err := s.Get("vm/keep"); err != nil {
				t.Errorf("%s: vm/keep: %v", s.NodeID(), err)
			}
		}
		c.stop()
	})
}

// A node removed from the cluster and added again reloads from a
// snapshot and converges; what was deleted meanwhile stays deleted.
func TestRemovedAndReAdded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 3, 6, clusterOpts{node: func(_ int, nc *Config) { nc.GCInterval = time.Second }})
		c.start()
		put(t, c.stores[0], "vm/doomed", "name", "d")
		put(t, c.stores[1], "vm/keep", "name", "k")
		c.waitConverged(t, 10*time.Second)
		c.setMember(2, false)
		time.Sleep(3 * time.Second) // n0 and n1 drop n2 from their members
		if _, err := c.stores[0].Delete("vm/doomed"); err != nil {
			t.Fatal(err)
		}
		put(t, c.stores[2], "vm/doomed", "owner", "stale")
		time.Sleep(5 * time.Second) // tombstone collected without n2
		if es, _ := c.stores[0].Dump(); len(es) != 1 {
			t.Fatalf("n0 holds %d records, want only vm/keep", len(es))
		}
		c.setMember(2, true)
		c.waitConverged(t, 30*time.Second)
		if st := c.nodes[2].Stats(); st.Resets != 1 {
			t.Errorf("n2 resets = %d, want 1", st.Resets)
		}
		for _, s := range c.stores {
			if _, err := s.Get("vm/doomed"); !errors.Is(err, statestore.ErrNotFound) {
				t.Errorf("%s: deleted record came back: %v", s.NodeID(), err)
			}
			if _, err := s.Get("vm/keep"); err != nil {
				t.Errorf("%s: vm/keep: %v", s.NodeID(), err)
			}
		}
		c.stop()
	})
}
