package replvol_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-hci/shoal/scribe/fiobench"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/patterncheck"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// holders returns the nodes holding a chunk of extent e.
func holders(c *loopcluster.Cluster, e uint64) []string {
	var out []string
	for _, n := range c.Nodes() {
		for _, s := range c.Stores(n) {
			if _, ok := s.Info(chunkstore.ChunkKey{VSD: vsdID, Extent: e}); ok {
				out = append(out, n)
			}
		}
	}
	return out
}

func TestChecksumFailureServedFromOtherReplicaAndRepaired(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	w := open(t, c.Pool(""), 1, "")
	data := make([]byte, 3*4096)
	for i := range data {
		data[i] = byte(i*7 + i/4096)
	}
	if err := w.WriteAt(ctx, data, 0, true); err != nil {
		t.Fatal(err)
	}
	w.Close()
	hs := holders(c, 0)
	if len(hs) != 2 {
		t.Fatalf("extent 0 on %v, want 2 nodes", hs)
	}
	key := chunkstore.ChunkKey{VSD: vsdID, Extent: 0}
	if err := c.Corrupt(hs[0], key, 1); err != nil {
		t.Fatal(err)
	}
	// The owner reads its local replica first: the rotten one.
	v := open(t, c.Pool(hs[0]), 2, hs[0])
	got := make([]byte, len(data))
	if err := v.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with one rotten copy: err %v, equal %v", err, bytes.Equal(got, data))
	}
	// The rotten copy was rewritten: its store checks clean.
	for _, s := range c.Stores(hs[0]) {
		if err := s.Check(ctx); err != nil {
			t.Fatalf("rotten copy not repaired: %v", err)
		}
	}
	// Both copies rotten: an I/O error, never the bad bytes.
	for _, h := range hs {
		if err := c.Corrupt(h, key, 2); err != nil {
			t.Fatal(err)
		}
	}
	err := v.ReadAt(ctx, got[:4096], 2*4096)
	if err == nil || !errors.Is(err, chunkstore.ErrChecksum) {
		t.Fatalf("read with every copy rotten: %v, want a checksum error", err)
	}
	// Overwriting the block heals both copies.
	if err := v.WriteAt(ctx, data[8192:], 8192, true); err != nil {
		t.Fatal(err)
	}
}

// TestNodeCutOff: the owner cannot reach one node, then two; new extents
// go to the reachable nodes and need two of them; a degraded write needs
// the drop registered on a majority of nodes (refused while the owner
// reaches only itself), then goes on.
func TestNodeCutOff(t *testing.T) {
	c := newCluster(t, 3)
	ctx := context.Background()
	pool := c.Pool("node1")
	pool.Cut("node3", true)
	v := open(t, pool, 1, "node1")
	block := bytes.Repeat([]byte{0x11}, 4096)
	for e := range int64(8) {
		if err := v.WriteAt(ctx, block, e*mib, false); err != nil {
			t.Fatal(err)
		}
	}
	for e := range uint64(8) {
		if hs := holders(c, e); len(hs) != 2 || hs[0] != "node1" || hs[1] != "node2" {
			t.Fatalf("extent %d on %v, want node1 and node2", e, hs)
		}
	}
	pool.Cut("node2", true)
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{0x22}, 4096), 0, true); !errors.Is(err, replvol.ErrNoMajority) {
		t.Fatalf("degraded write reaching only the owner: %v, want ErrNoMajority", err)
	}
	if err := v.WriteAt(ctx, block, 20*mib, false); !errors.Is(err, nbd.ErrNoSpace) {
		t.Fatalf("new extent with one node reachable: %v, want ErrNoSpace", err)
	}
	pool.Cut("node3", false)
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{0x22}, 4096), 0, true); err != nil {
		t.Fatalf("degraded write: %v", err)
	}
	// The flush fails on node2, which drops it from every extent.
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := v.Status(); len(st.Degraded) != 8 {
		t.Fatalf("status with node2 cut off: %d degraded extents, want 8", len(st.Degraded))
	}
	v.Close()
	pool.Cut("node2", false)
	v2 := open(t, c.Pool("node2"), 2, "node2")
	got := make([]byte, 4096)
	if err := v2.ReadAt(ctx, got, 0); err != nil || got[0] != 0x22 {
		t.Fatalf("after reopen extent 0 reads %#x (err %v), want the degraded write 0x22", got[0], err)
	}
}

// TestNBDPatternNodeKilledMidWrite drives the Volume through the NBD
// server with four concurrent clients writing patterns, kills a replica
// node in the middle, keeps writing, and verifies every acknowledged
// write: at once, after the node returns stale, and through a new owner.
func TestNBDPatternNodeKilledMidWrite(t *testing.T) {
	for _, wb := range []bool{false, true} {
		t.Run(map[bool]string{false: "WriteThrough", true: "WriteBack"}[wb], func(t *testing.T) {
			nbdPatternNodeKilledMidWrite(t, wb)
		})
	}
}

func nbdPatternNodeKilledMidWrite(t *testing.T, writeBack bool) {
	c := newCluster(t, 3)
	v := openWith(t, replvol.Config{Pool: c.Pool("node1"), Epoch: 1, LocalNode: "node1", WriteBack: writeBack})
	sock := serve(t, v)
	const workers, blocksEach, writes = 4, 1024, 600
	sd := seed(t)
	checkers := make([]*patterncheck.Checker, workers)
	clients := make([]*nbd.Client, workers)
	for i := range workers {
		cl, err := nbd.Dial(context.Background(), "unix", sock, "vsd")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		clients[i] = cl
		checkers[i], _ = patterncheck.New(patterncheck.Config{Blocks: blocksEach, Seed: sd + uint64(i)})
	}
	halfway := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := offsetDev{clients[i], int64(i) * blocksEach * 4096}
			r := rand.New(rand.NewPCG(sd, uint64(i)))
			for n := range writes {
				if i == 0 && n == writes/2 {
					once.Do(func() { close(halfway) })
				}
				if err := checkers[i].Write(d, r.Int64N(blocksEach), r.IntN(8) == 0); err != nil {
					errs[i] = err
					return
				}
			}
			errs[i] = checkers[i].Flush(d)
		}()
	}
	<-halfway
	if err := c.Stop("node2"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	verify := func(when string, dev func(i int) patterncheck.Device) {
		t.Helper()
		for i := range workers {
			if err := checkers[i].Verify(dev(i)); err != nil {
				t.Fatalf("%s, worker %d: %v", when, i, err)
			}
		}
	}
	nbdDev := func(i int) patterncheck.Device { return offsetDev{clients[i], int64(i) * blocksEach * 4096} }
	verify("node2 down", nbdDev)
	if len(v.Status().Degraded) == 0 {
		t.Fatal("no degraded extent after node2 was killed mid-write")
	}
	if err := c.Start("node2"); err != nil {
		t.Fatal(err)
	}
	verify("node2 back", nbdDev)
	if err := v.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, cl := range clients {
		cl.Close()
	}
	v.Close()
	v2 := open(t, c.Pool("node2"), 2, "node2")
	verify("new owner preferring node2", func(i int) patterncheck.Device { return offsetDev{dev{v2}, int64(i) * blocksEach * 4096} })
}

// offsetDev shifts a device by off bytes.
type offsetDev struct {
	d   patterncheck.Device
	off int64
}

func (o offsetDev) ReadAt(p []byte, off int64) error { return o.d.ReadAt(p, o.off+off) }
func (o offsetDev) WriteAt(p []byte, off int64, fua bool) error {
	return o.d.WriteAt(p, o.off+off, fua)
}
func (o offsetDev) Flush() error { return o.d.Flush() }

// serve exports v as "vsd" on a UNIX socket.
func serve(t *testing.T, v *replvol.Volume) string {
	t.Helper()
	uri, stop, err := fiobench.ServeNBD(context.Background(), t.TempDir(), "vsd", v, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return uri[strings.Index(uri, "socket=")+len("socket="):]
}
