package replicate

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/hlc"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomised tests (0: from SHOAL_SEED or random)")

func testSeed(t testing.TB) uint64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		if e := os.Getenv("SHOAL_SEED"); e != "" {
			s, _ = strconv.ParseUint(e, 10, 64)
		}
	}
	if s == 0 {
		s = rand.Uint64()
	}
	t.Logf("seed %d (replay with -seed=%d or SHOAL_SEED=%d)", s, s, s)
	return s
}

// cluster is N stores and nodes on one MemNetwork, running until stop.
type cluster struct {
	ids    []string
	stores []*statestore.Store
	nodes  []*Node
	net    *MemNetwork

	mu      sync.Mutex
	members map[string]bool // live members seen by Peers

	cancels []context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

type clusterOpts struct {
	store func(i int, c *statestore.Config)
	node  func(i int, c *Config)
}

func newCluster(t testing.TB, n int, seed uint64, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{net: NewMemNetwork(seed), members: map[string]bool{}}
	dir := t.TempDir()
	for i := range n {
		id := fmt.Sprintf("n%03d", i)
		c.ids = append(c.ids, id)
		c.members[id] = true
	}
	for i, id := range c.ids {
		sc := statestore.Config{Path: filepath.Join(dir, id+".db"), NodeID: id, NoSync: true, Logger: slog.New(slog.DiscardHandler)}
		if o.store != nil {
			o.store(i, &sc)
		}
		s, err := statestore.Open(sc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Check(); err != nil {
				t.Errorf("Check %s: %v", id, err)
			}
			s.Close()
		})
		if err := s.SetMembers(c.ids); err != nil {
			t.Fatal(err)
		}
		nc := Config{
			Store: s, Transport: c.net.Transport(id), Peers: c.peersOf(id),
			PullInterval: 100 * time.Millisecond, Seed: seed + uint64(i), Logger: slog.New(slog.DiscardHandler),
		}
		if o.node != nil {
			o.node(i, &nc)
		}
		nd, err := New(nc)
		if err != nil {
			t.Fatal(err)
		}
		c.stores = append(c.stores, s)
		c.nodes = append(c.nodes, nd)
		c.net.Add(id, nd)
	}
	t.Cleanup(c.stop) // before the stores close, even when a test fails
	return c
}

func (c *cluster) peersOf(self string) func() []string {
	return func() []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		var out []string
		for _, id := range c.ids {
			if id != self && c.members[id] {
				out = append(out, id)
			}
		}
		return out
	}
}

// start runs every node; stop cancels and waits.
func (c *cluster) start() {
	for i := range c.nodes {
		c.startNode(i)
	}
}

func (c *cluster) startNode(i int) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancels = append(c.cancels, cancel)
	c.wg.Go(func() { c.nodes[i].Run(ctx) })
}

func (c *cluster) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	for _, cancel := range c.cancels {
		cancel()
	}
	c.wg.Wait()
	c.net.Close()
}

// converged reports whether every store listed has the same version
// vector and digest.
func (c *cluster) converged(t testing.TB, idx ...int) bool {
	t.Helper()
	if len(idx) == 0 {
		for i := range c.stores {
			idx = append(idx, i)
		}
	}
	vv0, err := c.stores[idx[0]].VV()
	if err != nil {
		t.Fatal(err)
	}
	d0, _ := c.stores[idx[0]].Digest()
	for _, i := range idx[1:] {
		vv, _ := c.stores[i].VV()
		d, _ := c.stores[i].Digest()
		if !vv.Equal(vv0) || d != d0 {
			return false
		}
	}
	return true
}

// waitConverged advances (fake) time in steps until converged or limit.
func (c *cluster) waitConverged(t testing.TB, limit time.Duration, idx ...int) time.Duration {
	t.Helper()
	if len(idx) == 0 {
		for i := range c.stores {
			idx = append(idx, i)
		}
	}
	start := time.Now()
	for !c.converged(t, idx...) {
		if time.Since(start) > limit {
			for _, i := range idx {
				vv, _ := c.stores[i].VV()
				d, _ := c.stores[i].Digest()
				t.Logf("%s: %v %x %+v", c.ids[i], vv, d[:6], c.nodes[i].Stats())
			}
			t.Fatalf("not converged after %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func fakeClockAhead(d time.Duration) *hlc.Clock {
	return hlc.NewClock(func() time.Time { return time.Now().Add(d) }, 0)
}

// setMember removes node i from (or returns it to) the cluster: the
// member lists of the others, and it is cut off from them meanwhile.
func (c *cluster) setMember(i int, in bool) {
	c.mu.Lock()
	c.members[c.ids[i]] = in
	c.mu.Unlock()
	if in {
		c.net.Heal()
	} else {
		c.net.Partition([]string{c.ids[i]}) // and cut off from the others
	}
}
