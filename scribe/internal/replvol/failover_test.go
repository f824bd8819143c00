package replvol_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
	"github.com/shoal-hci/shoal/scribe/internal/patterncheck"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// TestFailoverOwnerDiesHoldingReplicas: the owner's node holds replicas of
// most extents and dies; a new owner on another node opens the VSD at once
// and reads every acknowledged write (the survivors' copies are current:
// no drop beyond them was registered), writes on, and drops the dead node.
// After it returns, an owner preferring its stale copies still reads the
// newest data.
func TestFailoverOwnerDiesHoldingReplicas(t *testing.T) {
	for _, nodes := range []int{3, 4} {
		t.Run(string(rune('0'+nodes))+"nodes", func(t *testing.T) {
			c := newCluster(t, nodes)
			v := open(t, c.Pool("node1"), 1, "node1")
			r := rand.New(rand.NewPCG(seed(t), 2))
			const blocks = 12 * mib / 4096 // 12 extents
			ck, err := patterncheck.New(patterncheck.Config{Blocks: blocks, Seed: 11})
			if err != nil {
				t.Fatal(err)
			}
			scribble(t, ck, dev{v}, r, blocks, 600)
			if err := ck.Flush(dev{v}); err != nil {
				t.Fatal(err)
			}
			scribble(t, ck, dev{v}, r, blocks, 200) // FUA ones acknowledged, the rest pending
			held := 0
			for _, s := range c.Stores("node1") {
				held += len(s.Chunks(vsdID))
			}
			if held == 0 {
				t.Fatal("the owner's node holds no replica: the scenario needs it to")
			}
			// The owner's node dies (with the Volume on it).
			if err := c.Stop("node1"); err != nil {
				t.Fatal(err)
			}
			v.Close()

			v2 := open(t, c.Pool("node3"), 2, "node3")
			if st := v2.Status(); len(st.Unavailable) != 0 {
				t.Fatalf("%d extents unavailable after the owner died; want none: %+v", len(st.Unavailable), st.Unavailable)
			}
			if err := ck.Verify(dev{v2}); err != nil {
				t.Fatal(err)
			}
			scribble(t, ck, dev{v2}, r, blocks, 300)
			if err := ck.Flush(dev{v2}); err != nil {
				t.Fatal(err)
			}
			if err := ck.Verify(dev{v2}); err != nil {
				t.Fatal(err)
			}
			st := v2.Status()
			if len(st.Degraded) == 0 {
				t.Fatalf("no degraded extent after failover with node1 dead: %+v", st)
			}
			for _, d := range st.Degraded {
				for _, rep := range d.Replicas {
					if rep.Node == "node1" {
						t.Fatalf("extent %d still lists dead node1 as a replica after writes and a flush", d.Extent)
					}
				}
			}
			v2.Close()

			// node1 returns stale; an owner on it prefers its own copies.
			if err := c.Start("node1"); err != nil {
				t.Fatal(err)
			}
			v3 := open(t, c.Pool("node1"), 3, "node1")
			if err := ck.Verify(dev{v3}); err != nil {
				t.Fatal(err)
			}
			if st3 := v3.Status(); len(st3.Unavailable) != 0 || st3.StaleCopies == 0 {
				t.Fatalf("owner on the returned node: %+v; want nothing unavailable and node1's stale copies counted", st3)
			}
		})
	}
}

// TestFailoverDeadOwnerHeldOnlyNewestCopy: a replica node died earlier
// and the owner dropped it (registered), wrote on alone for those extents,
// then the owner's node died while the dropped node came back. The new
// owner must fail exactly the extents whose only current copy was on the
// dead owner's node (EIO), never serve the returned node's stale copy, and
// serve every other extent correctly.
func TestFailoverDeadOwnerHeldOnlyNewestCopy(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	v := open(t, c.Pool("node1"), 1, "node1")
	old := bytes.Repeat([]byte{0x01}, volume)
	if err := v.WriteAt(ctx, old, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("node2"); err != nil {
		t.Fatal(err)
	}
	newer := bytes.Repeat([]byte{0x02}, volume)
	if err := v.WriteAt(ctx, newer, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	onlyOwner := map[int64]bool{}
	for _, d := range v.Status().Degraded {
		if len(d.Replicas) == 1 && d.Replicas[0].Node == "node1" {
			onlyOwner[int64(d.Extent)] = true
		}
	}
	if len(onlyOwner) == 0 {
		t.Fatal("no extent left only on the owner's node: the scenario needs some")
	}
	if err := c.Start("node2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("node1"); err != nil {
		t.Fatal(err)
	}
	v.Close()

	v2 := open(t, c.Pool("node2"), 2, "node2") // prefers node2's stale copies
	buf := make([]byte, mib)
	for e := range int64(volume / mib) {
		err := v2.ReadAt(ctx, buf, e*mib)
		switch {
		case onlyOwner[e]:
			if !errors.Is(err, replvol.ErrUnavailable) {
				t.Fatalf("extent %d (newest copy only on the dead owner): %v, want ErrUnavailable", e, err)
			}
		case err != nil:
			t.Fatalf("extent %d: %v", e, err)
		case !bytes.Equal(buf, newer[:mib]):
			t.Fatalf("extent %d: read data that is not the newest", e)
		}
	}
	if got := v2.Status().Unavailable; len(got) != len(onlyOwner) {
		t.Fatalf("%d extents unavailable, want %d", len(got), len(onlyOwner))
	}
	// Writes to the unavailable extents fail too: nothing overwrites the
	// dead owner's newest copy with a mix.
	for e := range onlyOwner {
		if err := v2.WriteAt(ctx, buf[:4096], e*mib, true); !errors.Is(err, replvol.ErrUnavailable) {
			t.Fatalf("write to unavailable extent %d: %v", e, err)
		}
		break
	}
}

// stampCrash is a Pool whose replicas fail every SetStamp once armed: an
// owner that dies after registering a drop and before stamping.
type stampCrash struct {
	*loopcluster.Pool
	armed atomic.Bool
}

func (p *stampCrash) Replica(node string) (replvol.Replica, error) {
	r, err := p.Pool.Replica(node)
	if err != nil {
		return nil, err
	}
	return crashReplica{r, p}, nil
}

type crashReplica struct {
	replvol.Replica
	p *stampCrash
}

func (r crashReplica) SetStamp(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, fua bool) error {
	if r.p.armed.Load() {
		return errors.New("owner killed before stamping")
	}
	return r.Replica.SetStamp(ctx, disk, key, epoch, st, fua)
}

// TestCrashBetweenRegisterAndStamp: the owner registered the drop of a
// replica on a majority, then died before stamping the survivor. A new
// owner that reaches the survivor serves it (the acknowledged data, or the
// write in flight); one that cannot reach it fails the extent (EIO), never
// serving the dropped copy as current.
func TestCrashBetweenRegisterAndStamp(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	pool := &stampCrash{Pool: c.Pool("node1")}
	v := open(t, pool, 1, "node1")
	acked := bytes.Repeat([]byte{0xa1}, mib)
	var ext int64 = -1
	var hs []string
	for e := range int64(8) {
		if err := v.WriteAt(ctx, acked, e*mib, true); err != nil {
			t.Fatal(err)
		}
		if hs = holders(c, uint64(e)); slices.Contains(hs, "node1") {
			ext = e
			break
		}
	}
	if ext < 0 || len(hs) != 2 {
		t.Fatalf("no extent of the first 8 on node1 and another (last on %v)", hs)
	}
	other := hs[0]
	if other == "node1" {
		other = hs[1]
	}
	pool.Cut(other, true)
	pool.armed.Store(true)
	inflight := bytes.Repeat([]byte{0xb2}, mib)
	if err := v.WriteAt(ctx, inflight, ext*mib, true); err == nil {
		t.Fatal("a write whose drop was never stamped was acknowledged")
	}
	v.Close()
	pool.Cut(other, false)

	// The survivor (node1) is reachable: served, the dropped copy not.
	third := "node2"
	if other == "node2" {
		third = "node3"
	}
	v2 := open(t, c.Pool(third), 2, third)
	got := make([]byte, mib)
	if err := v2.ReadAt(ctx, got, ext*mib); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, acked) && !bytes.Equal(got, inflight) {
		t.Fatal("read neither the acknowledged write nor the one in flight")
	}
	if st := v2.Status(); st.StaleCopies == 0 {
		t.Fatalf("the dropped copy on %s is not counted stale: %+v", other, st)
	}
	v2.Close()

	// The survivor is down: the registered drop names it alone, so the
	// extent is unavailable rather than served from the dropped copy.
	if err := c.Stop("node1"); err != nil {
		t.Fatal(err)
	}
	v3 := open(t, c.Pool(other), 3, other)
	if err := v3.ReadAt(ctx, got, ext*mib); !errors.Is(err, replvol.ErrUnavailable) {
		t.Fatalf("read with the registered survivor down: %v, want ErrUnavailable", err)
	}
}

// TestFenceSurvivesRestart: after a new owner opened the VSD, every node
// restarts; the old owner can still not allocate a chunk on any of them
// (the fence epoch is kept in the generation register).
func TestFenceSurvivesRestart(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	old := open(t, c.Pool(""), 1, "")
	if err := old.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, true); err != nil {
		t.Fatal(err)
	}
	nw := open(t, c.Pool(""), 2, "")
	nw.Close()
	for _, n := range c.Nodes() {
		if err := c.Stop(n); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes() {
		for _, s := range c.Stores(n) {
			err := s.Write(ctx, chunkstore.ChunkKey{VSD: vsdID, Extent: 9}, 1, 0, make([]byte, 4096), false)
			if !errors.Is(err, chunkstore.ErrStaleEpoch) {
				t.Fatalf("%s: new chunk at the old epoch after a restart: %v, want ErrStaleEpoch", n, err)
			}
		}
	}
	if err := old.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 9*mib, false); !errors.Is(err, replvol.ErrFenced) {
		t.Fatalf("old owner's new extent after restarts: %v, want ErrFenced", err)
	}
}

// countingPool counts the register writes and syncs sent to each node.
type countingPool struct {
	*loopcluster.Pool
	mu      sync.Mutex
	puts    map[string]int
	entries map[string]int
	syncs   map[string]int
}

func (p *countingPool) Replica(node string) (replvol.Replica, error) {
	r, err := p.Pool.Replica(node)
	if err != nil {
		return nil, err
	}
	return countingReplica{r, p, node}, nil
}

type countingReplica struct {
	replvol.Replica
	p    *countingPool
	node string
}

func (r countingReplica) Sync(ctx context.Context) error {
	r.p.mu.Lock()
	if r.p.syncs != nil {
		r.p.syncs[r.node]++
	}
	r.p.mu.Unlock()
	return r.Replica.Sync(ctx)
}

// TestFlushSyncsNodesWrittenSince: a flush syncs exactly the nodes written
// since the flush before (with locality: the owner's node and the other
// replica's), and none when nothing was written.
func TestFlushSyncsNodesWrittenSince(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	pool := &countingPool{Pool: c.Pool("node1"), puts: map[string]int{}, entries: map[string]int{}, syncs: map[string]int{}}
	v := open(t, pool, 1, "node1")
	syncs := func() map[string]int {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		out := maps.Clone(pool.syncs)
		clear(pool.syncs)
		return out
	}
	for e := range int64(4) {
		if err := v.WriteAt(ctx, bytes.Repeat([]byte{byte(e)}, 4096), e*mib, false); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{}
		for _, node := range []string{"node1", "node2", "node3"} {
			for _, st := range c.Stores(node) {
				for _, info := range st.Chunks(vsdID) {
					if info.Key.Extent == uint64(e) {
						want[node] = 1
					}
				}
			}
		}
		if len(want) != 2 || want["node1"] != 1 {
			t.Fatalf("extent %d on nodes %v, want node1 (the owner) and one other", e, want)
		}
		if err := v.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := syncs(); !maps.Equal(got, want) {
			t.Fatalf("flush after writing extent %d: syncs %v, want %v (its replicas)", e, got, want)
		}
		if err := v.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := syncs(); len(got) != 0 {
			t.Fatalf("flush with nothing written: syncs %v, want none", got)
		}
	}
}

func (r countingReplica) RegisterPut(ctx context.Context, vsd chunkstore.ID, epoch uint64, es []genreg.Entry) error {
	r.p.mu.Lock()
	r.p.puts[r.node]++
	r.p.entries[r.node] += len(es)
	r.p.mu.Unlock()
	return r.Replica.RegisterPut(ctx, vsd, epoch, es)
}

// TestDropsBatchRegisterWrites: a node holding many extents dies; its
// drops share register writes (fewer writes than extents dropped), and a
// healthy run writes the register not at all.
func TestDropsBatchRegisterWrites(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	pool := &countingPool{Pool: c.Pool("node1"), puts: map[string]int{}, entries: map[string]int{}}
	v := open(t, pool, 1, "node1")
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{7}, volume), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if pool.puts["node3"] != 0 {
		t.Fatalf("%d register writes without any failure; want none", pool.puts["node3"])
	}
	// Written again since the flush: the next flush syncs node2.
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{7}, volume), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("node2"); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil { // drops node2 from every extent
		t.Fatal(err)
	}
	dropped := len(v.Status().Degraded)
	pool.mu.Lock()
	puts, entries := pool.puts["node3"], pool.entries["node3"]
	pool.mu.Unlock()
	t.Logf("node2 died holding %d extents: %d register writes to node3 carrying %d entries", dropped, puts, entries)
	if dropped < 8 || entries < dropped || puts >= dropped {
		t.Fatalf("%d extents dropped with %d register writes of %d entries; want batches (fewer writes than extents)", dropped, puts, entries)
	}
	got := make([]byte, volume)
	if err := v.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{7}, volume)) {
		t.Fatalf("read after the drops: %v", err)
	}
}
