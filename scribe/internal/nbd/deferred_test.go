package nbd_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// deferBackend is a DeferredWriter: WriteDeferred stores the data at once
// and leaves a rest that waits for gate, then reports on ran.
type deferBackend struct {
	*nbd.MemoryBackend
	gate chan struct{}
	ran  chan int64

	mu       sync.Mutex
	deferred []int64 // offsets of WriteDeferred calls
	through  []int64 // offsets of WriteAt calls
}

func (d *deferBackend) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	d.mu.Lock()
	d.through = append(d.through, off)
	d.mu.Unlock()
	return d.MemoryBackend.WriteAt(ctx, p, off, fua)
}

func (d *deferBackend) WriteDeferred(ctx context.Context, p []byte, off int64) (func(), error) {
	d.mu.Lock()
	d.deferred = append(d.deferred, off)
	d.mu.Unlock()
	if err := d.MemoryBackend.WriteAt(ctx, p, off, false); err != nil {
		return nil, err
	}
	return func() {
		<-d.gate
		d.ran <- off
	}, nil
}

func (d *deferBackend) calls() (deferred, through []int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int64(nil), d.deferred...), append([]int64(nil), d.through...)
}

// TestDeferredWriteRunsAfterReply: a WRITE without FUA served by a worker
// (another request came with it) goes to WriteDeferred, is answered
// before its rest runs, and its rest runs once; a FUA write and a lone
// write (served by the reading goroutine, which must go back to reading)
// go to WriteAt.
func TestDeferredWriteRunsAfterReply(t *testing.T) {
	d := &deferBackend{MemoryBackend: nbd.NewMemoryBackend(1 << 20), gate: make(chan struct{}), ran: make(chan int64, 4)}
	srv := newServer(t, d)
	c := dial(t, srv)
	c.handshake(false)
	const fua = 1
	go c.write(cat(request(0, tCmdWrite, 1, 4096, 4, []byte("abcd")), request(fua, tCmdWrite, 2, 8192, 4, []byte("efgh"))))
	got := map[uint64]bool{}
	for range 2 {
		rep, err := c.reply(0)
		if err != nil || rep.errno != 0 {
			t.Fatalf("write reply %+v: %v", rep, err)
		}
		got[rep.cookie] = true
	}
	// Both answered while the deferred write's rest still waits for gate.
	if !got[1] || !got[2] {
		t.Fatalf("replies for cookies %v, want 1 and 2", got)
	}
	deferred, through := d.calls()
	if diff := cmp.Diff([]int64{4096}, deferred); diff != "" {
		t.Errorf("WriteDeferred calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{8192}, through); diff != "" {
		t.Errorf("WriteAt calls (-want +got):\n%s", diff)
	}
	close(d.gate)
	if off := <-d.ran; off != 4096 {
		t.Errorf("rest ran for offset %d, want 4096", off)
	}
	// A lone write, on a second connection (the first may still count
	// the finished rest in flight for a moment): served inline, through
	// WriteAt.
	c = dial(t, srv)
	c.handshake(false)
	go c.write(request(0, tCmdWrite, 3, 12288, 4, []byte("ijkl")))
	if rep, err := c.reply(0); err != nil || rep.errno != 0 || rep.cookie != 3 {
		t.Fatalf("lone write reply %+v: %v", rep, err)
	}
	go c.write(request(0, tCmdRead, 4, 4096, 12288, nil))
	rep, err := c.reply(12288)
	if err != nil || rep.errno != 0 {
		t.Fatalf("read reply %+v: %v", rep, err)
	}
	want := make([]byte, 12288)
	copy(want, "abcd")
	copy(want[4096:], "efgh")
	copy(want[8192:], "ijkl")
	if !bytes.Equal(rep.data, want) {
		t.Errorf("read back other data than written")
	}
	deferred, through = d.calls()
	if len(deferred) != 1 || len(through) != 2 {
		t.Errorf("after the lone write: %d deferred and %d WriteAt calls, want 1 and 2", len(deferred), len(through))
	}
	select {
	case off := <-d.ran:
		t.Errorf("a rest ran again (offset %d)", off)
	default:
	}
}
