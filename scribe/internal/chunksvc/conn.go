package chunksvc

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"

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
