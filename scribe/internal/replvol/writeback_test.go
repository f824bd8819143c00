package replvol_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// holdPool's replicas hold every write until release is closed, and
// report each held write on held.
type holdPool struct {
	replvol.Pool
	held    chan struct{}
	release chan struct{}
}

func (p *holdPool) Replica(node string) (replvol.Replica, error) {
	r, err := p.Pool.Replica(node)
	if err != nil {
		return nil, err
	}
	return holdReplica{r, p}, nil
}

type holdReplica struct {
	replvol.Replica
	p *holdPool
}

func (r holdReplica) Write(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) error {
	r.p.held <- struct{}{}
	<-r.p.release
	return r.Replica.Write(ctx, disk, key, epoch, st, off, p, fua)
}

// TestWriteBackAcknowledgesBeforeReplicas: with WriteBack a write returns
// while every replica still holds it back; reads and block status of its
// blocks wait for it and see it; Flush waits for it; both replicas end up
// equal (cleanup's Check).
func TestWriteBackAcknowledgesBeforeReplicas(t *testing.T) {
	c := newCluster(t, 3)
	h := &holdPool{Pool: c.Pool("node1"), held: make(chan struct{}, 8), release: make(chan struct{})}
	v := openWith(t, replvol.Config{Pool: h, Epoch: 1, LocalNode: "node1", WriteBack: true})
	ctx := context.Background()
	data := bytes.Repeat([]byte{0x3c}, 8192)
	// Returns at once, though no replica has the data: the holdReplicas
	// block the background write until release.
	if err := v.WriteAt(ctx, data, 2*mib-4096, false); err != nil {
		t.Fatalf("write-back write: %v", err)
	}
	<-h.held // the write reached a replica's Write and is held there
	got := make([]byte, 8192)
	read := make(chan error, 1)
	go func() { read <- v.ReadAt(ctx, got, 2*mib-4096) }()
	status := make(chan []nbd.Extent, 1)
	go func() {
		es, err := v.BlockStatus(ctx, 2*mib-4096, 8192, 8)
		if err != nil {
			t.Error(err)
		}
		status <- es
	}()
	flushed := make(chan error, 1)
	go func() { flushed <- v.Flush(ctx) }()
	close(h.release)
	if err := <-read; err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read of a write-back write: %v, first byte %#x; want %#x", err, got[0], data[0])
	}
	if es := <-status; len(es) == 0 || es[0].Hole || es[0].Length != 8192 {
		t.Fatalf("block status of a write-back write: %+v, want 8192 bytes of data", es)
	}
	if err := <-flushed; err != nil {
		t.Fatalf("flush: %v", err)
	}
	// The write was placed on two nodes; both have it after the flush.
	for _, e := range []uint64{1, 2} {
		n := 0
		for _, node := range c.Nodes() {
			for _, s := range c.Stores(node) {
				for _, ck := range s.Chunks(vsdID) {
					if ck.Key.Extent == e {
						n++
					}
				}
			}
		}
		if n != 2 {
			t.Fatalf("extent %d has %d copies after the flush, want 2", e, n)
		}
	}
}

// TestWriteBackFailureReportedByFlush: a write-back write that no replica
// takes is acknowledged, and the next Flush fails (EIO); the flush after
// that succeeds.
func TestWriteBackFailureReportedByFlush(t *testing.T) {
	c := newCluster(t, 3)
	pool := c.Pool("node1")
	v := openWith(t, replvol.Config{Pool: pool, Epoch: 1, LocalNode: "node1", WriteBack: true})
	ctx := context.Background()
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, true); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		pool.Cut(n, true)
	}
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 0, false); err != nil {
		t.Fatalf("write-back write with every node cut off: %v, want it acknowledged", err)
	}
	err := v.Flush(ctx)
	if err == nil || errors.Is(err, nbd.ErrReadOnly) {
		t.Fatalf("flush after a lost write-back write: %v, want an I/O error", err)
	}
	for _, n := range c.Nodes() {
		pool.Cut(n, false)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatalf("second flush: %v, want the failure reported once", err)
	}
}

// TestWriteBackFencedOwner: an owner fenced by a newer one gets its next
// write-back write acknowledged, but the write never lands; its Flush
// fails with EPERM (ErrFenced) and so does every write after it.
func TestWriteBackFencedOwner(t *testing.T) {
	c := newCluster(t, 3)
	old := openWith(t, replvol.Config{Pool: c.Pool("node1"), Epoch: 1, LocalNode: "node1", WriteBack: true})
	ctx := context.Background()
	data := bytes.Repeat([]byte{1}, 8192)
	if err := old.WriteAt(ctx, data, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := old.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	nw := open(t, c.Pool("node2"), 2, "node2")
	if err := old.WriteAt(ctx, bytes.Repeat([]byte{9}, 4096), 0, false); err != nil {
		t.Fatalf("stale owner's first write-back write: %v, want it acknowledged (it cannot know yet)", err)
	}
	if err := old.Flush(ctx); !errors.Is(err, nbd.ErrReadOnly) || !errors.Is(err, replvol.ErrFenced) {
		t.Fatalf("stale owner's flush: %v, want ErrReadOnly and ErrFenced", err)
	}
	if err := old.WriteAt(ctx, bytes.Repeat([]byte{9}, 4096), 4096, false); !errors.Is(err, replvol.ErrFenced) {
		t.Fatalf("stale owner's write after its flush failed: %v, want ErrFenced", err)
	}
	got := make([]byte, 8192)
	if err := nw.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("new owner reads %v... (err %v), want the old owner's flushed data", got[:4], err)
	}
}

// TestWriteBackCloseDrains: Close waits for the writes it acknowledged, so
// the next owner reads them even without a Flush; many concurrent writes
// beyond the write-back limits all land.
func TestWriteBackCloseDrains(t *testing.T) {
	c := newCluster(t, 3)
	v := openWith(t, replvol.Config{Pool: c.Pool("node1"), Epoch: 1, LocalNode: "node1", WriteBack: true})
	ctx := context.Background()
	const writers, each = 8, 40 // 320 writes of 64 KiB, five times what write-back holds
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				off := int64(w*each+i) % (volume / (64 << 10)) * (64 << 10)
				if err := v.WriteAt(ctx, bytes.Repeat([]byte{byte(w*each + i)}, 64<<10), off, false); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := make([]byte, volume)
	if err := v.ReadAt(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.WriteAt(ctx, make([]byte, 4096), 0, false); !errors.Is(err, replvol.ErrClosed) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}
	v2 := open(t, c.Pool("node2"), 2, "node2")
	got := make([]byte, volume)
	if err := v2.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the next owner reads other data than the closed one acknowledged (err %v)", err)
	}
}

// syncProbe is a disk that knows which of its completed writes no device
// sync has covered yet (a sync covers the writes completed before it
// started), and that can slow its writes down.
type syncProbe struct {
	chunkstore.Device
	mu        sync.Mutex
	completed int // writes completed
	covered   int // writes covered by a sync that succeeded
	slow      *atomic.Bool
}

func (d *syncProbe) WriteAt(p []byte, off int64) (int, error) {
	if d.slow.Load() {
		time.Sleep(20 * time.Millisecond) // a slow disk: the Sync overtakes the write on the wire
	}
	n, err := d.Device.WriteAt(p, off)
	d.mu.Lock()
	d.completed++
	d.mu.Unlock()
	return n, err
}

func (d *syncProbe) Sync() error {
	d.mu.Lock()
	upTo := d.completed
	d.mu.Unlock()
	err := d.Device.Sync()
	if err == nil {
		d.mu.Lock()
		d.covered = max(d.covered, upTo)
		d.mu.Unlock()
	}
	return err
}

func (d *syncProbe) unsynced() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.completed - d.covered
}

// TestFlushCoversWritesInFlight: Flush sends its Syncs right behind
// write-back writes still on their way to slow remote disks, without
// waiting for their responses; when it returns, every write has been
// synced on every disk all the same (the chunk service answers a Sync
// only after the changes received before it).
func TestFlushCoversWritesInFlight(t *testing.T) {
	var (
		mu     sync.Mutex
		probes []*syncProbe
		slow   atomic.Bool
	)
	c := loopcluster.ForTest(t, loopcluster.Config{Nodes: 3, DiskSize: 64 * mib, WrapDevice: func(node string, d chunkstore.Device) chunkstore.Device {
		p := &syncProbe{Device: d, slow: &atomic.Bool{}}
		if node != "node1" {
			p.slow = &slow
		}
		mu.Lock()
		probes = append(probes, p)
		mu.Unlock()
		return p
	}})
	v := openWith(t, replvol.Config{Pool: c.Pool("node1"), Epoch: 1, LocalNode: "node1", WriteBack: true})
	ctx := context.Background()
	// Place the extents first (placement syncs on its own).
	for e := range int64(4) {
		if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), e*4*mib, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	slow.Store(true)
	for i := range int64(16) {
		if err := v.WriteAt(ctx, bytes.Repeat([]byte{byte(i)}, 4096), (i%4)*4*mib+(i+1)*8192, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	slow.Store(false)
	mu.Lock()
	defer mu.Unlock()
	for i, p := range probes {
		if n := p.unsynced(); n != 0 {
			t.Errorf("disk %d: %d completed writes not synced when Flush returned", i, n)
		}
	}
}

// TestWriteDeferred: WriteDeferred orders a write-back write and leaves
// taking it to the replicas to its caller (rest): until rest runs, no
// replica has it, while a read of its blocks and a Flush wait for it;
// once rest runs, both see it and both replicas hold it. A write that
// write-back does not hold (over 128 KiB) is done at once, with no rest.
func TestWriteDeferred(t *testing.T) {
	c := newCluster(t, 3)
	h := &holdPool{Pool: c.Pool("node1"), held: make(chan struct{}, 8), release: make(chan struct{})}
	close(h.release) // hold nothing: count the writes reaching replicas
	v := openWith(t, replvol.Config{Pool: h, Epoch: 1, LocalNode: "node1", WriteBack: true})
	ctx := context.Background()
	data := bytes.Repeat([]byte{0x5a}, 8192)
	rest, err := v.WriteDeferred(ctx, data, 2*mib-4096)
	if err != nil || rest == nil {
		t.Fatalf("WriteDeferred: rest %v, err %v; want work left and no error", rest != nil, err)
	}
	clear(data[:4096]) // the caller may reuse its buffer at once
	if n := len(h.held); n != 0 {
		t.Fatalf("%d replica writes before rest ran, want 0", n)
	}
	got := make([]byte, 8192)
	read := make(chan error, 1)
	go func() { read <- v.ReadAt(ctx, got, 2*mib-4096) }()
	flushed := make(chan error, 1)
	go func() { flushed <- v.Flush(ctx) }()
	rest()
	if err := <-flushed; err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := <-read; err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, 8192)) {
		t.Fatalf("read of a deferred write: %v, first byte %#x; want 0x5a", err, got[0])
	}
	// Two extents, two replicas each.
	if n := len(h.held); n != 4 {
		t.Fatalf("%d replica writes after rest, want 4 (2 pieces x 2 replicas)", n)
	}
	big := bytes.Repeat([]byte{7}, 256<<10)
	rest, err = v.WriteDeferred(ctx, big, 0)
	if err != nil || rest != nil {
		t.Fatalf("WriteDeferred of 256 KiB: rest %v, err %v; want it written through", rest != nil, err)
	}
	got = make([]byte, len(big))
	if err := v.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read of a written-through WriteDeferred: %v", err)
	}
}

// localHoldPool holds the writes of node1's own replica (the one outside
// the network) while hold is set, reporting each on held; the other
// nodes' replicas are the real chunk-service clients.
type localHoldPool struct {
	replvol.Pool
	hold    atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func (p *localHoldPool) Replica(node string) (replvol.Replica, error) {
	r, err := p.Pool.Replica(node)
	if err != nil || node != "node1" {
		return r, err
	}
	return localHoldReplica{r, p}, nil
}

type localHoldReplica struct {
	replvol.Replica
	p *localHoldPool
}

func (r localHoldReplica) Write(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) error {
	if r.p.hold.Load() {
		r.p.held <- struct{}{}
		<-r.p.release
	}
	return r.Replica.Write(ctx, disk, key, epoch, st, off, p, fua)
}

// syncSignal is a disk that reports every device sync on synced.
type syncSignal struct {
	chunkstore.Device
	synced chan struct{}
}

func (d *syncSignal) Sync() error {
	err := d.Device.Sync()
	select {
	case d.synced <- struct{}{}:
	default:
	}
	return err
}

// TestFlushSyncsRemotesDuringLocalWrite: a Flush sends its Syncs to the
// other nodes as soon as the write-back writes are on the wire, without
// waiting for this node's own write of them (its Sync waits for that):
// the remote replica syncs while the local write is still held, and when
// Flush returns every disk has synced every write.
func TestFlushSyncsRemotesDuringLocalWrite(t *testing.T) {
	var (
		mu      sync.Mutex
		probes  []*syncProbe
		remotes = make(chan struct{}, 64)
	)
	c := loopcluster.ForTest(t, loopcluster.Config{Nodes: 3, DiskSize: 64 * mib, WrapDevice: func(node string, d chunkstore.Device) chunkstore.Device {
		p := &syncProbe{Device: d, slow: &atomic.Bool{}}
		mu.Lock()
		probes = append(probes, p)
		mu.Unlock()
		if node == "node1" {
			return p
		}
		return &syncSignal{Device: p, synced: remotes}
	}})
	h := &localHoldPool{Pool: c.Pool("node1"), held: make(chan struct{}, 1), release: make(chan struct{})}
	v := openWith(t, replvol.Config{Pool: h, Epoch: 1, LocalNode: "node1", WriteBack: true})
	ctx := context.Background()
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 8192), 0, true); err != nil { // place the extent
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for len(remotes) > 0 {
		<-remotes
	}
	h.hold.Store(true)
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 4096, false); err != nil {
		t.Fatal(err)
	}
	<-h.held // this node's write is in progress (held), the remote's sent
	flushed := make(chan error, 1)
	go func() { flushed <- v.Flush(ctx) }()
	select {
	case <-remotes:
	case err := <-flushed:
		t.Fatalf("flush returned (%v) while this node's write was held", err)
	case <-time.After(10 * time.Second):
		t.Error("no remote replica synced within 10 s while this node's write was held: the Flush waited for it first")
	}
	h.hold.Store(false)
	close(h.release)
	if err := <-flushed; err != nil {
		t.Fatalf("flush: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, p := range probes {
		if n := p.unsynced(); n != 0 {
			t.Errorf("disk %d: %d completed writes not synced when Flush returned", i, n)
		}
	}
	got := make([]byte, 4096)
	if err := v.ReadAt(ctx, got, 4096); err != nil || got[0] != 2 {
		t.Fatalf("read after flush: %v, byte %#x; want 0x02", err, got[0])
	}
}
