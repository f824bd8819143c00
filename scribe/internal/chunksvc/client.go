package chunksvc

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// Client is a connection to one node's chunk service. Its methods match
// LocalReplica's and wait for the response; the Start methods (StartWrite,
// StartZero, StartFree, StartSetStamp, StartSync) send the same requests
// and return a Pending to wait on later, so a caller can overlap a
// remote call with other work without another goroutine.
type Client struct {
	conn net.Conn
	addr string

	wmu       sync.Mutex
	w         *bufio.Writer
	unflushed bool // under wmu: requests written but not flushed (see start)
	waiting   atomic.Int32
	hdr       [reqHeaderSize]byte

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan result
	then    map[uint64]*callback // requests handed to Pending.Then
	err     error                // set once the connection failed

	done chan struct{} // closed when the reader exits

	v2 bool // the server speaks alpnV2
}

type result struct {
	body []byte
	err  error
}

// Dial connects to the chunk service at addr with tlsCfg (which holds
// this node's client certificate and the cluster CA).
func Dial(ctx context.Context, addr string, tlsCfg *tls.Config) (*Client, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial chunk service %s: %w: %w", addr, ErrUnreachable, err)
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	tlsCfg = tlsCfg.Clone()
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tlsCfg.NextProtos = []string{alpnV2}
	tc := tls.Client(newBatchConn(raw), tlsCfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("dial chunk service %s: %w: %w", addr, ErrUnreachable, err)
	}
	startBatching(tc)
	var conn net.Conn = tc
	c := &Client{conn: conn, addr: addr, v2: tc.ConnectionState().NegotiatedProtocol == alpnV2, w: bufio.NewWriterSize(conn, 256<<10), pending: map[uint64]chan result{}, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// Close closes the connection; calls in flight fail with ErrUnreachable.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

// SyncCoversSent reports whether a Sync sent on this connection covers
// every change sent before it, even one whose response has not arrived
// (a server of this release). Otherwise a Sync covers only the changes
// that were answered before it was sent.
func (c *Client) SyncCoversSent() bool { return c.v2 }

// Err returns the error that broke the connection, or nil while usable.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) readLoop() {
	defer close(c.done)
	r := bufio.NewReaderSize(c.conn, 256<<10)
	hdr := make([]byte, respHeaderSize)
	var err error
	for {
		if _, err = io.ReadFull(r, hdr); err != nil {
			break
		}
		var resp response
		if resp, err = decodeResponse(hdr); err != nil {
			break
		}
		body := make([]byte, resp.length)
		if err = readData(r, c.conn, body); err != nil {
			break
		}
		c.mu.Lock()
		ch := c.pending[resp.id]
		delete(c.pending, resp.id)
		var cb *callback
		if ch == nil && c.then != nil {
			cb = c.then[resp.id]
			delete(c.then, resp.id)
		}
		c.mu.Unlock()
		res := result{body: body}
		if resp.status != stOK {
			res = result{err: remoteError(resp.status, string(body))}
		}
		switch {
		case ch != nil:
			ch <- res
		case cb != nil:
			// Handled here: no goroutine to wake.
			cb.stop()
			cb.f(res.err)
		}
		// Neither: the caller gave up.
	}
	c.conn.Close()
	c.mu.Lock()
	c.err = fmt.Errorf("chunk service %s: %w: %w", c.addr, ErrUnreachable, err)
	for id, ch := range c.pending {
		ch <- result{err: c.err}
		delete(c.pending, id)
	}
	cbs := c.then
	c.then = nil
	c.mu.Unlock()
	for _, cb := range cbs {
		cb.stop()
		cb.f(c.err)
	}
}

// resultChans recycles the channels calls wait on: one that delivered
// its result is empty and nobody else holds it.
var resultChans = sync.Pool{New: func() any { return make(chan result, 1) }}

// tlsRecord is the largest TLS plaintext record.
const tlsRecord = 16 << 10

// writeData writes a request's checksums (flagSums) and data after its
// header (c.wmu held). Data that does not fit the buffer is not copied
// through it: the buffer is topped up to whole TLS records and flushed,
// and the rest goes to TLS directly, which cuts it into full records.
func (c *Client) writeData(sums []uint32, data []byte) error {
	if len(sums) > 0 {
		if 4*len(sums) > c.w.Available() {
			if err := c.w.Flush(); err != nil {
				return err
			}
		}
		b := c.w.AvailableBuffer()
		for _, s := range sums {
			b = binary.LittleEndian.AppendUint32(b, s)
		}
		if _, err := c.w.Write(b); err != nil {
			return err
		}
	}
	if len(data) <= c.w.Available() {
		_, err := c.w.Write(data)
		return err
	}
	k := min(len(data), tlsRecord-c.w.Buffered()%tlsRecord)
	if _, err := c.w.Write(data[:k]); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	_, err := c.conn.Write(data[k:])
	return err
}

func checkLen(off int64, n int) error {
	if off < 0 || off > MaxData || n < 0 || n > MaxData {
		return fmt.Errorf("[%d,+%d): %w", off, n, chunkstore.ErrRange)
	}
	return nil
}

func flags(fua bool) uint8 {
	if fua {
		return flagFUA
	}
	return 0
}

// Write writes p at off of the chunk for key on disk.
func (c *Client) Write(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, fua bool) error {
	pd := c.StartWrite(ctx, disk, key, epoch, st, off, p, fua)
	return pd.Wait(ctx)
}

// WriteSums is Write with the checksums of p's blocks (see
// LocalReplica.WriteSums).
func (c *Client) WriteSums(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, sums []uint32, fua bool) error {
	pd := c.StartWriteSums(ctx, disk, key, epoch, st, off, p, sums, fua)
	return pd.Wait(ctx)
}

// StartWriteSums is StartWrite with the checksums of p's blocks sent
// along (sums[i] the CRC-32C of p's block i, chunkstore.BlockSums; off
// and len(p) block-aligned), so the replica need not compute them. sums
// have been sent when it returns.
func (c *Client) StartWriteSums(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off int64, p []byte, sums []uint32, fua bool) Pending {
	if err := checkLen(off, len(p)); err != nil {
		return Pending{err: fmt.Errorf("write chunk: %w", err)}
	}
	if off%chunkstore.BlockSize != 0 || len(p)%chunkstore.BlockSize != 0 || len(p) == 0 || len(sums) != len(p)/chunkstore.BlockSize {
		return Pending{err: fmt.Errorf("write chunk [%d,+%d) with %d checksums: %w", off, len(p), len(sums), chunkstore.ErrRange)}
	}
	if !c.v2 {
		// A server of an older release would refuse the flag and close
		// the connection: send the data alone.
		return c.StartWrite(ctx, disk, key, epoch, st, off, p, fua)
	}
	return c.start(ctx, request{op: opWrite, flags: flags(fua) | flagSums, disk: disk, key: key, epoch: epoch, stamp: st, off: uint32(off), count: uint32(len(p)), sums: sums}, p)
}

// Read fills p from off of the chunk for key on disk.
func (c *Client) Read(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, off int64, p []byte) error {
	if err := checkLen(off, len(p)); err != nil {
		return fmt.Errorf("read chunk: %w", err)
	}
	body, err := c.call(ctx, request{op: opRead, disk: disk, key: key, off: uint32(off), count: uint32(len(p))}, nil)
	if err != nil {
		return err
	}
	if len(body) != len(p) {
		return fmt.Errorf("read of %d bytes returned %d: %w", len(p), len(body), ErrProtocol)
	}
	copy(p, body)
	return nil
}

// Zero makes [off, off+n) of the chunk for key on disk read as zero.
func (c *Client) Zero(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, off, n int64, fua bool) error {
	pd := c.StartZero(ctx, disk, key, epoch, st, off, n, fua)
	return pd.Wait(ctx)
}

// Free releases the chunk for key on disk.
func (c *Client) Free(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64) error {
	pd := c.StartFree(ctx, disk, key, epoch)
	return pd.Wait(ctx)
}

// SetStamp records a newer stamp on the chunk for key on disk.
func (c *Client) SetStamp(ctx context.Context, disk chunkstore.ID, key chunkstore.ChunkKey, epoch uint64, st chunkstore.Stamp, fua bool) error {
	pd := c.StartSetStamp(ctx, disk, key, epoch, st, fua)
	return pd.Wait(ctx)
}

// Fence raises every chunk of vsd on the node to epoch.
func (c *Client) Fence(ctx context.Context, vsd chunkstore.ID, epoch uint64) error {
	_, err := c.call(ctx, request{op: opFence, key: chunkstore.ChunkKey{VSD: vsd}, epoch: epoch}, nil)
	return err
}

// Sync makes every completed write on the node durable, and every
// change sent before it on this connection if SyncCoversSent.
func (c *Client) Sync(ctx context.Context) error {
	pd := c.StartSync(ctx)
	return pd.Wait(ctx)
}

// Chunks lists the chunks of vsd on the node.
func (c *Client) Chunks(ctx context.Context, vsd chunkstore.ID) ([]Chunk, error) {
	body, err := c.call(ctx, request{op: opChunks, key: chunkstore.ChunkKey{VSD: vsd}}, nil)
	if err != nil {
		return nil, err
	}
	return decodeChunks(body)
}

// Stat describes the node's disks.
func (c *Client) Stat(ctx context.Context) ([]DiskStat, error) {
	body, err := c.call(ctx, request{op: opStat}, nil)
	if err != nil {
		return nil, err
	}
	return decodeStats(body)
}
