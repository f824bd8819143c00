package chunksvc

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// errWaited is what a second Wait of a Pending returns.
var errWaited = errors.New("chunk service call waited for twice")

// Pending is a request sent by one of Client's Start methods whose
// response has not been collected yet. Wait for it once (a second Wait
// fails); a Pending never waited for keeps its entry in the Client until
// the response arrives or the connection fails.
type Pending struct {
	c   *Client
	id  uint64
	ch  chan result
	err error // the request was not sent (or the connection had failed)
}

// Wait waits for the response to p's request and returns its error. A
// response that has arrived is returned even if ctx has ended; when ctx
// ends before it arrives, Wait returns ctx.Err(): the request may still
// take effect on the peer, and its response, if it comes, is dropped.
func (p *Pending) Wait(ctx context.Context) error {
	_, err := p.wait(ctx)
	return err
}

func (p *Pending) wait(ctx context.Context) ([]byte, error) {
	if p.err != nil {
		return nil, p.err
	}
	if p.ch == nil {
		return nil, errWaited
	}
	var res result
	select {
	case res = <-p.ch: // a response that has arrived beats an ended ctx
	default:
		select {
		case res = <-p.ch:
		case <-ctx.Done():
			// The reader may hold ch already and send on it later: ch
			// is not recycled.
			p.c.mu.Lock()
			delete(p.c.pending, p.id)
			p.c.mu.Unlock()
			p.ch = nil
			return nil, ctx.Err()
		}
	}
	resultChans.Put(p.ch)
	p.ch = nil
	return res.body, res.err
}

// Then arranges for f to be called once with what Wait would return,
// instead of a Wait: at once, on this goroutine, if the response has
// arrived or the request was not sent; else when the response arrives,
// on the Client's reader goroutine; when ctx ends first (with ctx.Err(),
// on a goroutine of its own; the response is then dropped); or when the
// connection fails (with its error, on the reader goroutine). A response
// handled by f wakes no goroutine, where a Wait that parked costs a
// wake-up. f must not block, nor wait for a Client call: the reader
// delivers no other response while it runs. After Then, p is spent, as
// after Wait.
func (p *Pending) Then(ctx context.Context, f func(error)) {
	if p.err != nil {
		f(p.err)
		return
	}
	if p.ch == nil {
		f(errWaited)
		return
	}
	c, ch, id := p.c, p.ch, p.id
	p.ch = nil
	c.mu.Lock()
	if _, ok := c.pending[id]; !ok {
		// The reader took the entry: the result is on ch, or about to be.
		c.mu.Unlock()
		res := <-ch
		resultChans.Put(ch)
		f(res.err)
		return
	}
	delete(c.pending, id)
	resultChans.Put(ch) // the reader never saw it
	cb := &callback{f: f}
	cb.stop = context.AfterFunc(ctx, func() {
		c.mu.Lock()
		_, ok := c.then[id]
		delete(c.then, id)
		c.mu.Unlock()
		if ok {
			f(ctx.Err())
		}
	})
	if c.then == nil {
		c.then = map[uint64]*callback{}
	}
	c.then[id] = cb
	c.mu.Unlock()
}

// callback is a request whose outcome goes to f (Pending.Then); stop
// cancels its wait for the end of the context.
type callback struct {
	f    func(error)
	stop func() bool
}

// start sends req with data without waiting for its response. It blocks
// only while the connection is busy sending other requests.
func (c *Client) start(ctx context.Context, req request, data []byte) Pending {
	if err := ctx.Err(); err != nil {
		return Pending{err: err}
	}
	ch := resultChans.Get().(chan result)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		resultChans.Put(ch)
		return Pending{err: c.err}
	}
	c.nextID++
	req.id = c.nextID
	c.pending[req.id] = ch
	c.mu.Unlock()
	req.length = uint32(len(data) + 4*len(req.sums))

	c.waiting.Add(1)
	c.wmu.Lock()
	c.waiting.Add(-1)
	req.encode(c.hdr[:])
	_, err := c.w.Write(c.hdr[:])
	if err == nil {
		err = c.writeData(req.sums, data)
	}
	// The last writer flushes. When other requests are in flight it
	// first yields, so goroutines ready to send theirs (writers of a
	// queue depth 32 client) add them to the same TLS record and send.
	// After the yield it flushes unless another writer has flushed
	// meanwhile or is about to (unflushed: what was written, into c.w or
	// straight through TLS into the batchConn under it, has not been
	// flushed; c.w alone may be empty while a large write's records wait
	// in the batchConn).
	c.unflushed = true
	flush := err == nil && c.waiting.Load() == 0
	if flush && c.othersInFlight() {
		c.wmu.Unlock()
		runtime.Gosched()
		c.wmu.Lock()
		flush = c.unflushed && c.waiting.Load() == 0
	}
	if flush {
		if err = c.w.Flush(); err == nil {
			err = flushUnder(c.conn)
		}
		c.unflushed = false
	}
	c.wmu.Unlock()
	if err != nil {
		c.conn.Close() // the reader fails every pending call
	}
	return Pending{c: c, id: req.id, ch: ch}
}

// othersInFlight reports whether more than one request awaits its
// response.
func (c *Client) othersInFlight() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)+len(c.then) > 1
}

// call sends req with data and waits for its response body.
func (c *Client) call(ctx context.Context, req request, data []byte) ([]byte, error) {
	p := c.start(ctx, req, data)
	return p.wait(ctx)
}

// StartWrite sends Write's request and returns without waiting for its
// response: the caller may do other work (such as its own replica's
// write) before Wait. p has been copied or sent when StartWrite returns.
func (c *Client) StartWrite(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) Pending {
	if err := checkLen(off, len(p)); err != nil {
		return Pending{err: fmt.Errorf("write chunk: %w", err)}
	}
	return c.start(ctx, request{op: opWrite, flags: flags(fua), disk: disk, key: key, epoch: epoch, stamp: st, off: uint32(off), count: uint32(len(p))}, p)
}

// StartZero sends Zero's request without waiting for its response.
func (c *Client) StartZero(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off, n int64, fua bool) Pending {
	if err := checkLen(off, int(min(n, MaxData+1))); err != nil {
		return Pending{err: fmt.Errorf("zero chunk: %w", err)}
	}
	return c.start(ctx, request{op: opZero, flags: flags(fua), disk: disk, key: key, epoch: epoch, stamp: st, off: uint32(off), count: uint32(n)}, nil)
}

// StartFree sends Free's request without waiting for its response.
func (c *Client) StartFree(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64) Pending {
	return c.start(ctx, request{op: opFree, disk: disk, key: key, epoch: epoch}, nil)
}

// StartSetStamp sends SetStamp's request without waiting for its response.
func (c *Client) StartSetStamp(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, fua bool) Pending {
	return c.start(ctx, request{op: opStamp, flags: flags(fua), disk: disk, key: key, epoch: epoch, stamp: st}, nil)
}

// StartSync sends Sync's request without waiting for its response.
func (c *Client) StartSync(ctx context.Context) Pending {
	return c.start(ctx, request{op: opSync}, nil)
}
