package replvol_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/patterncheck"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

const (
	mib    = 1 << 20
	volume = 32 * mib
)

var (
	vsdID = chunkstore.ID{0x5d}
	quiet = slog.New(slog.DiscardHandler)
)

// newCluster starts n loopback nodes; cleanup checks every store.
func newCluster(t *testing.T, n int) *loopcluster.Cluster {
	return loopcluster.ForTest(t, loopcluster.Config{Nodes: n, DiskSize: 64 * mib})
}

// newest is the highest epoch each test opened: only that Volume's view
// is checked in cleanup (a later owner may have restamped what an older
// one saw, e.g. dropping a dead node at failover).
var newest sync.Map // *testing.T → uint64

func open(t *testing.T, pool replvol.Pool, epoch uint64, local string) *replvol.Volume {
	t.Helper()
	return openWith(t, replvol.Config{Pool: pool, Epoch: epoch, LocalNode: local})
}

// openWith is open with more of the Config set (VSD, Size and Log are
// filled in).
func openWith(t *testing.T, cfg replvol.Config) *replvol.Volume {
	t.Helper()
	cfg.VSD, cfg.Size, cfg.Log = vsdID, volume, quiet
	epoch := cfg.Epoch
	v, err := replvol.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cur, ok := newest.Load(t); !ok || cur.(uint64) < epoch {
		newest.Store(t, epoch)
	}
	t.Cleanup(func() {
		if cur, _ := newest.Load(t); cur.(uint64) == epoch {
			if err := v.Check(context.Background()); err != nil {
				t.Errorf("volume check (epoch %d): %v", epoch, err)
			}
		}
		v.Close()
	})
	return v
}

// dev adapts a Volume to patterncheck.Device.
type dev struct{ v *replvol.Volume }

func (d dev) ReadAt(p []byte, off int64) error { return d.v.ReadAt(context.Background(), p, off) }
func (d dev) WriteAt(p []byte, off int64, fua bool) error {
	return d.v.WriteAt(context.Background(), p, off, fua)
}
func (d dev) Flush() error { return d.v.Flush(context.Background()) }

// seed returns SHOAL_SEED or a random seed, logged.
func seed(t *testing.T) uint64 {
	s := rand.Uint64()
	if e := os.Getenv("SHOAL_SEED"); e != "" {
		var err error
		if s, err = strconv.ParseUint(e, 10, 64); err != nil {
			t.Fatalf("SHOAL_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with SHOAL_SEED=%d)", s, s)
	return s
}

// scribble writes n random blocks through ck.
func scribble(t *testing.T, ck *patterncheck.Checker, d patterncheck.Device, r *rand.Rand, blocks int64, n int) {
	t.Helper()
	for range n {
		if err := ck.Write(d, r.Int64N(blocks), r.IntN(4) == 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteReadTrimReopen(t *testing.T) {
	c := newCluster(t, 3)
	pool := c.Pool("node1")
	v := open(t, pool, 1, "node1")
	r := rand.New(rand.NewPCG(seed(t), 1))
	const blocks = volume / 4096
	ck, err := patterncheck.New(patterncheck.Config{Blocks: blocks, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	scribble(t, ck, dev{v}, r, blocks, 800)
	if err := ck.Flush(dev{v}); err != nil {
		t.Fatal(err)
	}
	if err := ck.Verify(dev{v}); err != nil {
		t.Fatal(err)
	}
	st := v.Status()
	if len(st.Degraded) != 0 || st.Extents == 0 || st.BytesUsed == 0 {
		t.Fatalf("status after healthy writes: %+v", st)
	}
	// Every extent has two replicas on distinct nodes.
	perNode := map[string]int{}
	for _, node := range c.Nodes() {
		for _, s := range c.Stores(node) {
			perNode[node] += len(s.Chunks(vsdID))
		}
	}
	total := 0
	for _, n := range perNode {
		total += n
	}
	if total != 2*st.Extents || len(perNode) != 3 {
		t.Fatalf("chunks per node %v for %d extents, want 2 per extent over 3 nodes", perNode, st.Extents)
	}

	// Trim the second extent whole and half of the third.
	if err := v.Trim(context.Background(), mib, mib+mib/2, false); err != nil {
		t.Fatal(err)
	}
	got, err := v.BlockStatus(context.Background(), mib, 2*mib, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || !got[0].Hole || got[0].Length < mib+mib/2 {
		t.Fatalf("block status after trim: %+v", got)
	}
	buf := make([]byte, mib)
	if err := v.ReadAt(context.Background(), buf, mib); err != nil || !bytes.Equal(buf, make([]byte, mib)) {
		t.Fatalf("trimmed extent reads non-zero (err %v)", err)
	}
	if err := v.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	snapshot := make([]byte, volume)
	if err := v.ReadAt(context.Background(), snapshot, 0); err != nil {
		t.Fatal(err)
	}
	v.Close()

	// A new owner at a higher epoch on another node finds everything.
	v2 := open(t, c.Pool("node2"), 2, "node2")
	got2 := make([]byte, volume)
	if err := v2.ReadAt(context.Background(), got2, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got2, snapshot) {
		t.Fatal("the new owner reads other data than the old one wrote")
	}
	if st2 := v2.Status(); st2.Extents != st.Extents-1 || len(st2.Degraded) != 0 {
		t.Fatalf("reopened status %+v, want %d extents (one trimmed away), none degraded", st2, st.Extents-1)
	}
}

func TestStaleEpochOwnerIsFenced(t *testing.T) {
	c := newCluster(t, 3)
	old := open(t, c.Pool("node1"), 1, "node1")
	data := bytes.Repeat([]byte{1}, 8192)
	if err := old.WriteAt(context.Background(), data, 0, true); err != nil {
		t.Fatal(err)
	}
	nw := open(t, c.Pool("node2"), 2, "node2")
	// The old owner can neither overwrite an extent nor create one.
	for _, off := range []int64{0, 5 * mib} {
		err := old.WriteAt(context.Background(), bytes.Repeat([]byte{9}, 4096), off, false)
		if !errors.Is(err, nbd.ErrReadOnly) || !errors.Is(err, replvol.ErrFenced) {
			t.Fatalf("old owner write at %d: %v, want ErrReadOnly and ErrFenced", off, err)
		}
	}
	if err := old.Trim(context.Background(), 0, 4096, false); !errors.Is(err, replvol.ErrFenced) {
		t.Fatalf("old owner trim: %v, want ErrFenced", err)
	}
	got := make([]byte, 8192)
	if err := nw.ReadAt(context.Background(), got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("new owner reads %v... (err %v), want the old owner's acknowledged data", got[:4], err)
	}
	// Opening at an older epoch than a node has seen fails.
	if _, err := replvol.Open(context.Background(), replvol.Config{VSD: vsdID, Size: volume, Epoch: 1, Pool: c.Pool("")}); !errors.Is(err, replvol.ErrFenced) {
		t.Fatalf("open at a stale epoch: %v, want ErrFenced", err)
	}
}

// TestReplicaDownThenStale: a node dies, writes go on degraded, the node
// comes back stale; neither the running owner nor a new one serves its
// copies, and with only stale copies reachable reads fail instead.
func TestReplicaDownThenStale(t *testing.T) {
	c := newCluster(t, 3)
	v := open(t, c.Pool("node1"), 1, "node1")
	r := rand.New(rand.NewPCG(seed(t), 2))
	const blocks = volume / 4096
	ck, _ := patterncheck.New(patterncheck.Config{Blocks: blocks, Seed: 3})
	scribble(t, ck, dev{v}, r, blocks, 600)
	if err := ck.Flush(dev{v}); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("node2"); err != nil {
		t.Fatal(err)
	}
	// Overwrite every block so every extent node2 held is now stale there.
	for b := range int64(blocks) {
		if err := ck.Write(dev{v}, b, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := ck.Flush(dev{v}); err != nil {
		t.Fatal(err)
	}
	st := v.Status()
	if len(st.Degraded) == 0 {
		t.Fatalf("no degraded extent with node2 down: %+v", st)
	}
	for _, d := range st.Degraded {
		if len(d.Missing) == 0 || d.Missing[0].Node != "node2" || len(d.Replicas) != 1 {
			t.Fatalf("degraded extent %+v, want one replica left and node2 missing", d)
		}
	}
	if err := c.Start("node2"); err != nil {
		t.Fatal(err)
	}
	// The running owner keeps node2 out even though it answers again.
	if err := ck.Verify(dev{v}); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	v.Close()

	// A new owner that prefers node2's copies still gets the new data.
	v2 := open(t, c.Pool("node2"), 2, "node2")
	if err := ck.Verify(dev{v2}); err != nil {
		t.Fatal(err)
	}
	if st2 := v2.Status(); len(st2.Degraded) != len(st.Degraded) || st2.StaleCopies == 0 {
		t.Fatalf("new owner status %+v; want the %d degraded extents and node2's stale copies", st2, len(st.Degraded))
	}
	snapshot := make([]byte, volume)
	if err := v2.ReadAt(context.Background(), snapshot, 0); err != nil {
		t.Fatal(err)
	}
	v2.Close()

	// Only node2 (stale) and node3 reachable: extents whose current copy
	// was on node1 alone fail; nothing returns node2's old data.
	if err := c.Stop("node1"); err != nil {
		t.Fatal(err)
	}
	v3 := open(t, c.Pool("node3"), 3, "node3")
	buf := make([]byte, 4096)
	var unavailable int
	for b := range int64(blocks) {
		err := v3.ReadAt(context.Background(), buf, b*4096)
		if errors.Is(err, replvol.ErrUnavailable) {
			unavailable++
			continue
		}
		if err != nil {
			t.Fatalf("block %d: %v", b, err)
		}
		if !bytes.Equal(buf, snapshot[b*4096:(b+1)*4096]) {
			t.Fatalf("block %d: read data that is not the newest (a stale replica was served)", b)
		}
	}
	if unavailable == 0 {
		t.Fatal("with node1 down every block read fine; those whose only current copy is on node1 must fail")
	}
	t.Logf("%d of %d blocks unavailable with node1 down and node2 stale", unavailable, blocks)
}

// TestRescanAfterNodeReturns: an extent whose only current copy is on a
// node that is down at Open (a registered drop names it alone) is
// unavailable; once the node is back, Rescan makes it available.
func TestRescanAfterNodeReturns(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	pool := c.Pool("node2")
	v := open(t, pool, 1, "node2")
	old := bytes.Repeat([]byte{0x5a}, 8*mib)
	if err := v.WriteAt(ctx, old, 0, true); err != nil {
		t.Fatal(err)
	}
	// node1 drops out of this owner's view: every extent it held is
	// dropped from it (registered on node2 and node3) by the new writes.
	pool.Cut("node1", true)
	data := bytes.Repeat([]byte{0xa5}, 8*mib)
	if err := v.WriteAt(ctx, data, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	v.Close()
	pool.Cut("node1", false)
	// The owner's node holds a replica of every extent it placed, so
	// those that node1 dropped out of live on node2 alone.
	if err := c.Stop("node2"); err != nil {
		t.Fatal(err)
	}
	// node1's stale copies must not be served where node2 holds the only
	// current copy.
	v2 := open(t, c.Pool("node1"), 2, "node1")
	st := v2.Status()
	if len(st.Unavailable) == 0 {
		t.Fatal("no extent unavailable with node2 (the only current copy of some) down at open")
	}
	got := make([]byte, len(data))
	for e := range int64(8) {
		err := v2.ReadAt(ctx, got[:mib], e*mib)
		if err != nil && !errors.Is(err, replvol.ErrUnavailable) {
			t.Fatalf("extent %d: %v", e, err)
		}
		if err == nil && !bytes.Equal(got[:mib], data[:mib]) {
			t.Fatalf("extent %d: stale data served", e)
		}
	}
	if err := c.Start("node2"); err != nil {
		t.Fatal(err)
	}
	left, err := v2.Rescan(ctx)
	if err != nil || left != 0 {
		t.Fatalf("rescan: %d extents left unavailable, err %v", left, err)
	}
	if err := v2.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after rescan: err %v, equal %v", err, bytes.Equal(got, data))
	}
	// Node2 was fenced by the rescan: a request at the first owner's
	// epoch fails there.
	checked := 0
	for _, s := range c.Stores("node2") {
		for _, info := range s.Chunks(vsdID) {
			checked++
			if err := s.Write(ctx, info.Key, 1, 0, data[:4096], false); !errors.Is(err, chunkstore.ErrStaleEpoch) {
				t.Fatalf("write at epoch 1 to node2 after the rescan: %v, want ErrStaleEpoch", err)
			}
		}
	}
	if checked == 0 {
		t.Fatal("node2 holds no chunk of the VSD")
	}
}

// TestOverlappingWritesSameOnEveryReplica: two writes to the same block
// in flight at once (NBD leaves their order to the server) land in one
// order on every replica. The first write's copy to the other node is held
// back until the second's has landed there, or 200 ms pass: were the two
// not ordered, the second would land first there and last on the owner,
// and the replicas would differ (the cleanup's Check compares them).
func TestOverlappingWritesSameOnEveryReplica(t *testing.T) {
	c := newCluster(t, 3)
	g := &gatePool{Pool: c.Pool("node1"), owner: "node1", landed: make(chan struct{}), held: make(chan struct{})}
	v := open(t, g, 1, "node1")
	ctx := context.Background()
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, false); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- v.WriteAt(ctx, bytes.Repeat([]byte{7}, 4096), 0, false) }()
	<-g.held // the first write is in flight, its copy held back
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{9}, 8192), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if err := v.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{9}, 4096)) {
		t.Fatalf("read after both writes: %v, first byte %d; want the second write's 9s", err, got[0])
	}
	if err := v.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// gatePool's replicas hold back the first write of 7s to a node other than
// owner until a write of 9s has landed on such a node, or 200 ms pass.
type gatePool struct {
	*loopcluster.Pool
	owner  string
	landed chan struct{} // closed when a write of 9s has landed off the owner
	once   sync.Once
	held   chan struct{}
	hold   sync.Once
}

func (p *gatePool) Replica(node string) (replvol.Replica, error) {
	r, err := p.Pool.Replica(node)
	if err != nil {
		return nil, err
	}
	return gateReplica{r, p, node}, nil
}

type gateReplica struct {
	replvol.Replica
	p    *gatePool
	node string
}

func (r gateReplica) Write(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) error {
	if r.node != r.p.owner && p[0] == 7 {
		r.p.hold.Do(func() { close(r.p.held) })
		select {
		case <-r.p.landed:
		case <-time.After(200 * time.Millisecond):
		}
	}
	err := r.Replica.Write(ctx, disk, key, epoch, st, off, p, fua)
	if r.node != r.p.owner && p[0] == 9 {
		r.p.once.Do(func() { close(r.p.landed) })
	}
	return err
}
