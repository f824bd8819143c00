package chunksvc

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/shoal-hci/shoal/scribe/internal/bufpool"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/rawsock"
)

// batchConn sits under TLS. Once batching is on (after the handshake),
// the TLS records a sender writes collect in a buffer until Flush, so one
// batch of requests or responses (and a 1 MiB write's 64 records) leaves
// in one syscall instead of one per record; reads fill a large buffer, so
// many records arrive per syscall. The sender calls Flush after its TLS
// writes; mu guards the buffer, since TLS also writes from Close. Close
// is the raw connection's: it must break a write blocked on a dead peer,
// so it does not flush (the peer sees EOF instead of close_notify).
type batchConn struct {
	net.Conn
	r        *bufio.Reader
	mu       sync.Mutex
	w        *bufio.Writer
	batching atomic.Bool
}

const batchConnBuffer = 256 << 10

// newBatchConn reads and writes c's socket with raw system calls
// (package rawsock): one reader (TLS serialises reads) and one writer
// at a time (under mu).
func newBatchConn(c net.Conn) *batchConn {
	rw := rawsock.Wrap(c)
	return &batchConn{Conn: c, r: bufio.NewReaderSize(rw, batchConnBuffer), w: bufio.NewWriterSize(rw, batchConnBuffer)}
}

func (c *batchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching.Load() {
		// Handshake messages go out at once (the peer waits for them).
		if err := c.w.Flush(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	return c.w.Write(p)
}

// Flush sends the buffered records.
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Flush()
}

// flushUnder flushes the batchConn under tc, if there is one.
func flushUnder(tc net.Conn) error {
	if t, ok := tc.(*tls.Conn); ok {
		if bc, ok := t.NetConn().(*batchConn); ok {
			return bc.Flush()
		}
	}
	return nil
}

// startBatching turns batching on for the batchConn under tc, if any;
// call it once the handshake is done.
func startBatching(tc net.Conn) {
	if t, ok := tc.(*tls.Conn); ok {
		if bc, ok := t.NetConn().(*batchConn); ok {
			bc.batching.Store(true)
		}
	}
}

// readData fills p with the bytes that follow in r, which buffers conn:
// what r holds already is copied from it, and a rest of a TLS record or
// more is read from conn straight into p (a large payload is not copied
// through r's buffer; a small one still shares r's reads with the
// requests around it).
func readData(r *bufio.Reader, conn io.Reader, p []byte) error {
	n := min(r.Buffered(), len(p))
	if len(p)-n < tlsRecord {
		_, err := io.ReadFull(r, p)
		return err
	}
	if _, err := io.ReadFull(r, p[:n]); err != nil {
		return err
	}
	_, err := io.ReadFull(conn, p[n:])
	return err
}

// requestData is what follows one request's header: a write's or
// register put's data (from bufpool) and, with flagSums, the checksums
// of the write's blocks (from sumsPool). Nil when absent.
type requestData struct {
	data *[]byte
	sums *[]uint32
}

// sumsPool recycles the checksums of requests (up to a whole chunk's).
var sumsPool = sync.Pool{New: func() any {
	s := make([]uint32, 0, MaxData/chunkstore.BlockSize)
	return &s
}}

// readRequestData reads the data that follows req's header from r,
// which buffers conn (see readData): the checksums (flagSums), then the
// data.
func readRequestData(r *bufio.Reader, conn io.Reader, req request) (requestData, error) {
	var d requestData
	if req.length == 0 {
		return d, nil
	}
	n := int(req.length)
	if req.flags&flagSums != 0 {
		k := int(sumsLen(req.count))
		b, err := r.Peek(k) // at most 8 KiB: fits r
		if err != nil {
			return d, err
		}
		d.sums = sumsPool.Get().(*[]uint32)
		sums := (*d.sums)[:0]
		for i := 0; i < k; i += 4 {
			sums = append(sums, binary.LittleEndian.Uint32(b[i:]))
		}
		*d.sums = sums
		r.Discard(k)
		n -= k
	}
	d.data = bufpool.Get(n)
	if err := readData(r, conn, *d.data); err != nil {
		d.put()
		return requestData{}, err
	}
	return d, nil
}

// bytes returns the data (nil when none).
func (d requestData) bytes() []byte {
	if d.data == nil {
		return nil
	}
	return *d.data
}

// blockSums returns the checksums (nil when none).
func (d requestData) blockSums() []uint32 {
	if d.sums == nil {
		return nil
	}
	return *d.sums
}

// put recycles d's buffers once its request is answered.
func (d requestData) put() {
	if d.data != nil {
		bufpool.Put(d.data)
	}
	if d.sums != nil {
		sumsPool.Put(d.sums)
	}
}
