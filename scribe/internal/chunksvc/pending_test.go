package chunksvc_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/loopcluster"
)

// Wire constants the scripted peer needs (see wire.go).
const (
	reqHeader  = 128
	respHeader = 16
	stOK       = 0
	stStale    = 2
	stRange    = 5
)

// scriptedPeer is the server end of one chunk service connection whose
// responses the test writes by hand, in any order.
type scriptedPeer struct {
	t    *testing.T
	conn net.Conn
}

// dialScripted returns a Client connected to a scriptedPeer.
func dialScripted(t *testing.T) (*chunksvc.Client, *scriptedPeer) {
	t.Helper()
	ca, err := loopcluster.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue("server")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue("client")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerTLS(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 1)
	go func() {
		defer close(conns)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if err := c.(*tls.Conn).Handshake(); err != nil {
			c.Close()
			return
		}
		conns <- c
	}()
	cl, err := chunksvc.Dial(context.Background(), ln.Addr().String(), ca.ClientTLS(cli))
	if err != nil {
		t.Fatal(err)
	}
	conn := <-conns
	if conn == nil {
		t.Fatal("scripted peer: no connection")
	}
	t.Cleanup(func() {
		conn.Close()
		cl.Close()
	})
	return cl, &scriptedPeer{t: t, conn: conn}
}

// next reads one request and returns its ID and op.
func (p *scriptedPeer) next() (uint64, byte) {
	p.t.Helper()
	hdr := make([]byte, reqHeader)
	if _, err := io.ReadFull(p.conn, hdr); err != nil {
		p.t.Fatalf("read request: %v", err)
	}
	if _, err := io.CopyN(io.Discard, p.conn, int64(binary.LittleEndian.Uint32(hdr[4:]))); err != nil {
		p.t.Fatalf("read request data: %v", err)
	}
	return binary.LittleEndian.Uint64(hdr[8:]), hdr[1]
}

// respond answers request id with status and msg as body.
func (p *scriptedPeer) respond(id uint64, status byte, msg string) {
	p.t.Helper()
	b := make([]byte, respHeader+len(msg))
	binary.LittleEndian.PutUint32(b[0:], uint32(len(msg)))
	b[4] = status
	binary.LittleEndian.PutUint64(b[8:], id)
	copy(b[respHeader:], msg)
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("respond: %v", err)
	}
}

var (
	pendDisk = chunkstore.ID{0xd1}
	pendKey  = chunkstore.ChunkKey{VSD: chunkstore.ID{0x42}, Extent: 7}
)

// TestPendingOutOfOrder starts many calls at once, answers them in
// reverse order with different outcomes, and expects each Wait to get its
// own.
func TestPendingOutOfOrder(t *testing.T) {
	cl, peer := dialScripted(t)
	ctx := context.Background()
	const n = 40
	pend := make([]chunksvc.Pending, n)
	for i := range pend {
		switch i % 4 {
		case 0:
			pend[i] = cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, int64(i)*4096, make([]byte, 4096), i%8 == 0)
		case 1:
			pend[i] = cl.StartSync(ctx)
		case 2:
			pend[i] = cl.StartSetStamp(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{Gen: uint64(i)}, true)
		case 3:
			pend[i] = cl.StartZero(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, 0, 4096, false)
		}
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i], _ = peer.next()
	}
	// Request i gets: OK, a stale epoch or a range error, by i mod 3.
	want := func(i int) error {
		return []error{nil, chunkstore.ErrStaleEpoch, chunkstore.ErrRange}[i%3]
	}
	for i := n - 1; i >= 0; i-- {
		status := []byte{stOK, stStale, stRange}[i%3]
		msg := ""
		if status != stOK {
			msg = fmt.Sprintf("request %d refused", i)
		}
		peer.respond(ids[i], status, msg)
	}
	for i := range pend {
		err := pend[i].Wait(ctx)
		if w := want(i); (w == nil) != (err == nil) || (w != nil && !errors.Is(err, w)) {
			t.Errorf("call %d: Wait = %v, want %v", i, err, w)
		}
	}
	if err := pend[0].Wait(ctx); err == nil {
		t.Error("a second Wait succeeded")
	}
	if err := cl.Err(); err != nil {
		t.Fatalf("connection broken: %v", err)
	}
}

// TestPendingWaitContextEnds gives up on a call before its response and
// expects the late response to be dropped, not delivered to another call.
func TestPendingWaitContextEnds(t *testing.T) {
	cl, peer := dialScripted(t)
	ctx := context.Background()
	late := cl.StartFree(ctx, pendDisk, pendKey, 1)
	lateID, op := peer.next()
	if op == 0 {
		t.Fatal("request without op")
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := late.Wait(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after its context ended = %v, want context.Canceled", err)
	}
	if p := cl.StartSync(ended); !errors.Is(p.Wait(ctx), context.Canceled) {
		t.Error("a call started with an ended context did not fail with it")
	}
	next := cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, 0, []byte("x"), false)
	nextID, _ := peer.next() // the ended-context call sent nothing
	if nextID == lateID {
		t.Fatalf("request ID %d reused", nextID)
	}
	peer.respond(lateID, stStale, "too late")
	peer.respond(nextID, stOK, "")
	if err := next.Wait(ctx); err != nil {
		t.Fatalf("call after an abandoned one: %v", err)
	}
	if err := cl.Err(); err != nil {
		t.Fatalf("a late response broke the connection: %v", err)
	}
}

// TestPendingConnectionFails breaks the connection while calls are
// pending: each fails with ErrUnreachable, and so do later ones.
func TestPendingConnectionFails(t *testing.T) {
	cl, peer := dialScripted(t)
	ctx := context.Background()
	var pend []chunksvc.Pending
	for i := range 5 {
		pend = append(pend, cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, int64(i)*4096, make([]byte, 4096), false))
	}
	for range pend {
		peer.next()
	}
	peer.conn.Close()
	for i := range pend {
		if err := pend[i].Wait(ctx); !errors.Is(err, chunksvc.ErrUnreachable) {
			t.Errorf("call %d: Wait = %v, want ErrUnreachable", i, err)
		}
	}
	if err := cl.Err(); !errors.Is(err, chunksvc.ErrUnreachable) {
		t.Errorf("Err = %v, want ErrUnreachable", err)
	}
	p := cl.StartSync(ctx)
	if err := p.Wait(ctx); !errors.Is(err, chunksvc.ErrUnreachable) {
		t.Errorf("call after the failure: %v, want ErrUnreachable", err)
	}
}

// TestPendingArrivedResponseBeatsEndedContext: a response that arrived
// before Wait is returned even when Wait's context has ended.
func TestPendingArrivedResponseBeatsEndedContext(t *testing.T) {
	cl, peer := dialScripted(t)
	ctx := context.Background()
	a := cl.StartSetStamp(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{Gen: 2}, true)
	b := cl.StartSync(ctx)
	aID, _ := peer.next()
	bID, _ := peer.next()
	peer.respond(aID, stStale, "older epoch")
	peer.respond(bID, stOK, "")
	// Responses are delivered in the order they arrive: once b's is
	// in, a's is too.
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Wait(ended); !errors.Is(err, chunkstore.ErrStaleEpoch) {
		t.Fatalf("Wait with an ended context = %v, want the response's ErrStaleEpoch", err)
	}
}

// TestProtocolNegotiated: a Server of this release promises ordered
// Syncs and takes checksums with writes (ALPN); a peer that negotiated
// nothing (an older release) is not assumed to: its writes go without
// checksums, which it would refuse.
func TestProtocolNegotiated(t *testing.T) {
	c := newCluster(t, 1)
	if !dial(t, c, "node1").SyncCoversSent() {
		t.Error("a client of this release's server: SyncCoversSent is false")
	}
	old, peer := dialScripted(t)
	if old.SyncCoversSent() {
		t.Error("a client of a server that negotiated no protocol: SyncCoversSent is true")
	}
	data := make([]byte, 2*chunkstore.BlockSize)
	pd := old.StartWriteSums(context.Background(), pendDisk, pendKey, 1, chunkstore.Stamp{}, 0, data, chunkstore.BlockSums(nil, data), false)
	hdr := make([]byte, reqHeader)
	if _, err := io.ReadFull(peer.conn, hdr); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint32(hdr[4:]); hdr[2] != 0 || n != uint32(len(data)) {
		t.Fatalf("write to an older server: flags %#x, %d bytes of data; want no flags and the data alone", hdr[2], n)
	}
	if _, err := io.CopyN(io.Discard, peer.conn, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	peer.respond(binary.LittleEndian.Uint64(hdr[8:]), 0, "")
	if err := pd.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// outcome collects what Pending.Then delivers, and how often.
type outcome struct {
	ch chan error
}

func newOutcome() *outcome { return &outcome{ch: make(chan error, 2)} }

func (o *outcome) f(err error) { o.ch <- err }

// one returns the single outcome delivered, failing if there is none or
// a second comes with it.
func (o *outcome) one(t *testing.T, what string) error {
	t.Helper()
	err := <-o.ch
	select {
	case again := <-o.ch:
		t.Errorf("%s: Then's function called twice (%v, then %v)", what, err, again)
	default:
	}
	return err
}

// TestPendingThen: Then delivers each call's own outcome once: a
// response (OK or an error) arriving after Then, one that arrived before
// it, the end of its context before the response (whose late response is
// then dropped), and a connection failure; a second Then or Wait of a
// spent Pending fails.
func TestPendingThen(t *testing.T) {
	cl, peer := dialScripted(t)
	ctx := context.Background()

	// Responses after Then, out of order, one refused.
	a := cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, 0, make([]byte, 4096), false)
	b := cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, 4096, make([]byte, 4096), false)
	aID, _ := peer.next()
	bID, _ := peer.next()
	oa, ob := newOutcome(), newOutcome()
	a.Then(ctx, oa.f)
	b.Then(ctx, ob.f)
	peer.respond(bID, stStale, "older epoch")
	peer.respond(aID, stOK, "")
	if err := oa.one(t, "a"); err != nil {
		t.Errorf("a: Then got %v, want nil", err)
	}
	if err := ob.one(t, "b"); !errors.Is(err, chunkstore.ErrStaleEpoch) {
		t.Errorf("b: Then got %v, want ErrStaleEpoch", err)
	}
	if err := a.Wait(ctx); err == nil {
		t.Error("Wait after Then succeeded")
	}

	// A response that arrived before Then: delivered on this goroutine.
	c := cl.StartSync(ctx)
	d := cl.StartSync(ctx)
	cID, _ := peer.next()
	dID, _ := peer.next()
	peer.respond(cID, stRange, "bad range")
	peer.respond(dID, stOK, "")
	if err := d.Wait(ctx); err != nil { // responses arrive in order: c's is in
		t.Fatal(err)
	}
	var got error
	called := false
	c.Then(ctx, func(err error) { got, called = err, true })
	if !called || !errors.Is(got, chunkstore.ErrRange) {
		t.Errorf("Then of an arrived response: called %v with %v, want ErrRange at once", called, got)
	}

	// The context ends first; the late response is dropped.
	ended, cancel := context.WithCancel(ctx)
	e := cl.StartFree(ctx, pendDisk, pendKey, 1)
	eID, _ := peer.next()
	oe := newOutcome()
	e.Then(ended, oe.f)
	cancel()
	if err := oe.one(t, "e"); !errors.Is(err, context.Canceled) {
		t.Errorf("e: Then got %v, want context.Canceled", err)
	}
	peer.respond(eID, stStale, "too late")
	f := cl.StartSync(ctx)
	fID, _ := peer.next()
	peer.respond(fID, stOK, "")
	if err := f.Wait(ctx); err != nil {
		t.Fatalf("call after a dropped late response: %v", err)
	}
	select {
	case err := <-oe.ch:
		t.Errorf("e: late response delivered too (%v)", err)
	default:
	}

	// The connection fails with a Then pending.
	g := cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, 0, make([]byte, 4096), false)
	peer.next()
	og := newOutcome()
	g.Then(ctx, og.f)
	peer.conn.Close()
	if err := og.one(t, "g"); !errors.Is(err, chunksvc.ErrUnreachable) {
		t.Errorf("g: Then got %v, want ErrUnreachable", err)
	}
	// Started after the failure: delivered at once.
	h := cl.StartSync(ctx)
	called = false
	h.Then(ctx, func(err error) { got, called = err, true })
	if !called || !errors.Is(got, chunksvc.ErrUnreachable) {
		t.Errorf("Then after the failure: called %v with %v, want ErrUnreachable at once", called, got)
	}
	if err := cl.Err(); !errors.Is(err, chunksvc.ErrUnreachable) {
		t.Errorf("Err = %v, want ErrUnreachable", err)
	}
}

// TestLargeWriteSentWithOthersInFlight: a 1 MiB write started while
// other requests await their responses reaches the peer whole, with no
// later request to push it out. (A sender that yields before its flush
// once skipped the flush when its own buffer was empty, leaving the
// write's last TLS records in the buffer under TLS: 1 MiB writes at
// queue depth 8 fell to a fifth of their rate.)
func TestLargeWriteSentWithOthersInFlight(t *testing.T) {
	cl, peer := dialScripted(t)
	ctx := context.Background()
	small := make([]byte, chunkstore.BlockSize)
	var held []chunksvc.Pending
	for range 2 {
		held = append(held, cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, 0, small, false))
	}
	for range 2 {
		peer.next()
	}
	big := make([]byte, 1<<20)
	pd := cl.StartWrite(ctx, pendDisk, pendKey, 1, chunkstore.Stamp{}, 0, big, false)
	peer.conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // fails the read below instead of hanging
	id, op := peer.next()
	peer.respond(id, 0, "")
	if err := pd.Wait(ctx); err != nil || op != 1 {
		t.Fatalf("1 MiB write: op %d, %v", op, err)
	}
	_ = held // left unanswered: the client's cleanup fails them
}
