package claim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var flagChaosSeed = flag.Uint64("chaos-seed", 0, "run TestNodeChaos with this seed only")

// TestNodeChaos runs whole nodes (goroutines, timers, the real Read and
// ClaimNext) over a MemTransport with random latency, nodes going down and
// partitions, inside synctest. The seed picks the faults; goroutine
// scheduling still varies, so a failing seed may need a few runs. Checks:
// one holder per (resource, epoch) across every answer any node gave, and
// linearizable reads (a Read that starts after a claim returned sees at
// least its epoch).
func TestNodeChaos(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	if *flagChaosSeed != 0 {
		seeds = []uint64{*flagChaosSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { nodeChaos(t, seed) })
		})
	}
}

func nodeChaos(t *testing.T, seed uint64) {
	ids := []string{"a", "b", "c", "d", "e"}
	c := newTestCluster(t, false, ids...)
	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 7))
	c.tr.Latency = func(from, to string) time.Duration {
		rmu.Lock()
		defer rmu.Unlock()
		return time.Duration(rng.IntN(20)) * time.Millisecond
	}

	var (
		mu      sync.Mutex
		holders = map[string]string{} // resource|epoch → holder
		top     = map[string]uint64{} // resource → highest epoch a claim returned
		claims  int
		fails   = map[string]int{}
	)
	record := func(who string, cl Claim) {
		mu.Lock()
		defer mu.Unlock()
		k := fmt.Sprintf("%s|%d", cl.Resource, cl.Epoch)
		if h, ok := holders[k]; ok && h != cl.Holder {
			t.Errorf("seed %d: %s was told %s holds %s epoch %d, another node was told %s", seed, who, cl.Holder, cl.Resource, cl.Epoch, h)
		}
		holders[k] = cl.Holder
		top[cl.Resource] = max(top[cl.Resource], cl.Epoch)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	// Chaos: every 0.1 to 4 s, heal, then maybe partition or take a node down.
	wg.Go(func() {
		down := ""
		for ctx.Err() == nil {
			rmu.Lock()
			d := time.Duration(100+rng.IntN(4000)) * time.Millisecond
			rmu.Unlock()
			time.Sleep(d)
			rmu.Lock()
			r, x := rng.IntN(4), ids[rng.IntN(len(ids))]
			cut := rng.IntN(len(ids)-1) + 1
			rmu.Unlock()
			c.tr.Heal()
			if down != "" {
				c.tr.SetDown(down, false)
				down = ""
			}
			switch r {
			case 0:
				c.tr.Partition(ids[:cut], ids[cut:])
			case 1:
				c.tr.SetDown(x, true)
				down = x
			}
		}
		c.tr.Heal()
		if down != "" {
			c.tr.SetDown(down, false)
		}
	})
	for i, id := range ids {
		n := c.nodes[id]
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			for op := 0; op < 40 && ctx.Err() == nil; op++ {
				res := fmt.Sprintf("vm/%d", r.IntN(2))
				octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
				mu.Lock()
				before := top[res]
				mu.Unlock()
				switch r.IntN(3) {
				case 0:
					v, err := n.Read(octx, res)
					if err == nil {
						if v.Epoch < before {
							t.Errorf("seed %d: %s read %s at epoch %d after a claim of epoch %d had returned", seed, id, res, v.Epoch, before)
						}
						if v.State == StateHeld {
							record(id, Claim{res, v.Epoch, v.Holder})
						}
					}
				default:
					cl, err := n.ClaimNext(octx, res)
					switch {
					case err == nil:
						record(id, cl)
						mu.Lock()
						claims++
						mu.Unlock()
					case errors.Is(err, ErrTaken):
						record(id, cl)
					case errors.Is(err, ErrSuperseded), errors.Is(err, ErrContended), errors.Is(err, ErrNoQuorum), errors.Is(err, ErrFenced):
						mu.Lock()
						for _, e := range []error{ErrSuperseded, ErrContended, ErrNoQuorum, ErrFenced} {
							if errors.Is(err, e) {
								fails[e.Error()]++
							}
						}
						mu.Unlock()
					default:
						t.Errorf("seed %d: %s: unexpected error %v", seed, id, err)
					}
				}
				ocancel()
				time.Sleep(time.Duration(r.IntN(500)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	// Healed: every node can claim now.
	cancel()
	time.Sleep(DefaultConfig("a").FenceDeadline())
	for _, id := range ids {
		if _, err := c.nodes[id].ClaimNext(t.Context(), "vm/0"); err != nil {
			t.Errorf("seed %d: %s cannot claim after the heal: %v", seed, id, err)
		}
	}
	if claims == 0 {
		t.Errorf("seed %d: no claim succeeded during the chaos", seed)
	}
	t.Logf("seed %d: %d claims won, %d (resource, epoch) seen, refusals %v", seed, claims, len(holders), fails)
}
