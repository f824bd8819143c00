package chunksvc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// gateDevice is a memDevice whose next write, once armed, waits for
// release; it logs the order of write ends and syncs.
type gateDevice struct {
	memDevice
	mu      sync.Mutex
	armed   bool
	held    chan struct{} // closed when the armed write has started
	release chan struct{}
	log     []string
	synced  chan struct{} // receives on every Sync
}

func (d *gateDevice) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	hold := d.armed
	d.armed = false
	d.mu.Unlock()
	if hold {
		close(d.held)
		<-d.release
	}
	n, err := d.memDevice.WriteAt(p, off)
	if hold {
		d.mu.Lock()
		d.log = append(d.log, "held write done")
		d.mu.Unlock()
	}
	return n, err
}

func (d *gateDevice) Sync() error {
	d.mu.Lock()
	d.log = append(d.log, "sync")
	d.mu.Unlock()
	select {
	case d.synced <- struct{}{}:
	default:
	}
	return nil
}

// TestSyncCoversChangesInProgress sends a write and, right behind it on
// the same connection, a Sync, while the write's device write is held:
// the Sync must not sync the device (nor answer) before the write is
// done, or the owner's FLUSH would acknowledge a write that is not
// durable.
func TestSyncCoversChangesInProgress(t *testing.T) {
	dev := &gateDevice{memDevice: memDevice{b: make([]byte, 4<<20)}, held: make(chan struct{}), release: make(chan struct{}), synced: make(chan struct{}, 1)}
	if _, err := chunkstore.Format(dev, chunkstore.FormatOptions{DiskID: chunkstore.ID{7}, ChunkSize: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	store, err := chunkstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv := &Server{cfg: ServerConfig{MaxInFlight: 4, Log: slog.New(slog.DiscardHandler)}, local: Local([]*chunkstore.Store{store})}
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.serveStream(context.Background(), server, srv.cfg.Log)
		server.Close()
	}()
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(dev.release) }) }
	defer func() { release(); client.Close(); <-done }()

	key := chunkstore.ChunkKey{VSD: chunkstore.ID{1}, Extent: 2}
	data := bytes.Repeat([]byte{0xab}, 4096)
	// Place the chunk first, so the held write is the data write.
	in := encodeReq(request{op: opWrite, id: 1, disk: chunkstore.ID{7}, key: key, epoch: 1, off: 0, count: 4096}, data)
	go client.Write(in)
	if id, st := readResp(t, client); id != 1 || st != stOK {
		t.Fatalf("first write: response %d status %d", id, st)
	}
	<-dev.synced // a chunk's placement syncs; drain it
	dev.mu.Lock()
	dev.armed, dev.log = true, nil
	dev.mu.Unlock()

	in = append(encodeReq(request{op: opWrite, id: 2, disk: chunkstore.ID{7}, key: key, epoch: 1, off: 8192, count: 4096}, data),
		encodeReq(request{op: opSync, id: 3}, nil)...)
	go client.Write(in)
	<-dev.held
	select {
	case <-dev.synced:
		t.Fatal("the device was synced while a write received before the Sync was still in progress")
	case <-time.After(200 * time.Millisecond): // a wrong Sync has had its chance
	}
	release()
	var ids []uint64
	for range 2 {
		id, st := readResp(t, client)
		if st != stOK {
			t.Fatalf("response %d: status %d", id, st)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	dev.mu.Lock()
	log := slices.Clone(dev.log)
	dev.mu.Unlock()
	if !slices.Equal(ids, []uint64{2, 3}) || len(log) < 2 || log[0] != "held write done" || !slices.Contains(log[1:], "sync") {
		t.Fatalf("responses %v, device log %v: want the held write done before the sync", ids, log)
	}
}

// readResp reads one response and skips its body.
func readResp(t *testing.T, c net.Conn) (uint64, uint8) {
	t.Helper()
	hdr := make([]byte, respHeaderSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	r, err := decodeResponse(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(binary.LittleEndian.Uint32(hdr))); err != nil {
		t.Fatal(err)
	}
	return r.id, r.status
}

// TestChangesWait checks the tracker on its own: a wait covers the
// changes numbered up to its mark, whatever order they end in, and not
// the ones after.
func TestChangesWait(t *testing.T) {
	c := newChanges()
	a, b := c.begin(), c.begin()
	m := c.mark()
	later := c.begin()
	waited := make(chan struct{})
	go func() { c.wait(m); close(waited) }()
	c.end(b)
	select {
	case <-waited:
		t.Fatal("wait returned with an earlier change still running")
	case <-time.After(50 * time.Millisecond):
	}
	c.end(a)
	<-waited // later is still running: it must not hold the wait
	c.end(later)
	c.wait(c.mark())
}

// TestSyncOnlyBehind: a change is served on the reader (no hand-off)
// when exactly one Sync header is buffered behind it, and not when more,
// less, or another request is, or when it is not a change.
func TestSyncOnlyBehind(t *testing.T) {
	hdr := func(o op) []byte {
		b := make([]byte, reqHeaderSize)
		(&request{op: o, id: 9}).encode(b)
		return b
	}
	tests := []struct {
		name string
		cur  op
		next []byte
		want bool
	}{
		{"write, then a sync", opWrite, hdr(opSync), true},
		{"zero, then a sync", opZero, hdr(opSync), true},
		{"write, then a read", opWrite, hdr(opRead), false},
		{"write, then a sync and more", opWrite, append(hdr(opSync), hdr(opSync)...), false},
		{"write, then part of a sync", opWrite, hdr(opSync)[:reqHeaderSize-1], false},
		{"write, then garbage", opWrite, make([]byte, reqHeaderSize), false},
		{"read, then a sync", opRead, hdr(opSync), false},
		{"write, nothing behind", opWrite, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(append([]byte{0}, tt.next...)))
			r.ReadByte() // fill the buffer with what follows
			if got := syncOnlyBehind(r, tt.cur); got != tt.want {
				t.Errorf("syncOnlyBehind = %v, want %v", got, tt.want)
			}
			if r.Buffered() != len(tt.next) {
				t.Errorf("%d bytes buffered after the peek, want %d", r.Buffered(), len(tt.next))
			}
		})
	}
}
