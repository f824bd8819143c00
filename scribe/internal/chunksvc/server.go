package chunksvc

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Stores are this node's disks. Required (at least one) unless
	// Register is set (a witness serves only the register).
	Stores []*chunkstore.Store
	// Register is this node's generation register (package genreg), which
	// owners write before acknowledging a degraded write. Zero value: none
	// (register requests fail; owners then cannot drop replicas here).
	Register *genreg.Dir
	// TLS is the server's TLS configuration; it must require and verify
	// client certificates (tls.RequireAndVerifyClientCert). Required.
	TLS *tls.Config
	// Authorize accepts a verified client certificate (cluster CA, not
	// revoked) and names the node it belongs to. Zero value: every
	// certificate that TLS verified is accepted.
	Authorize func(*x509.Certificate) (nodeID string, err error)
	// Log receives connection events. Zero value: slog.Default().
	Log *slog.Logger
	// MaxInFlight bounds requests served at once per connection.
	// Zero value: 128.
	MaxInFlight int
}

// Validate reports a configuration a Server cannot run with.
func (c ServerConfig) Validate() error {
	switch {
	case len(c.Stores) == 0 && c.Register == nil:
		return errors.New("chunk service config: no stores")
	case c.TLS == nil:
		return errors.New("chunk service config: TLS is nil")
	case c.TLS.ClientAuth != tls.RequireAndVerifyClientCert:
		return errors.New("chunk service config: TLS must require and verify client certificates")
	case c.MaxInFlight < 0:
		return fmt.Errorf("chunk service config: MaxInFlight %d is negative", c.MaxInFlight)
	}
	return nil
}

// Server serves the chunk service.
type Server struct {
	cfg   ServerConfig
	local *LocalReplica
}

// NewServer returns a Server for cfg.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 128
	}
	// Advertise this release's protocol (alpnV2); a client that offers
	// nothing still connects.
	cfg.TLS = cfg.TLS.Clone()
	cfg.TLS.NextProtos = append([]string{alpnV2}, cfg.TLS.NextProtos...)
	return &Server{cfg: cfg, local: Local(cfg.Stores).WithRegister(cfg.Register)}, nil
}

// Serve accepts connections on ln until ctx is cancelled (then it closes
// ln and every connection, waits for their requests, and returns nil) or
// ln fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			break
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("chunk service accept: %w", err)
}

// serveConn authenticates and serves one connection until it fails.
func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	log := s.cfg.Log.With("peer", raw.RemoteAddr().String())
	tc := tls.Server(newBatchConn(raw), s.cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		log.Warn("chunk service TLS handshake", "err", err)
		return
	}
	startBatching(tc)
	if s.cfg.Authorize != nil {
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			log.Warn("chunk service peer sent no certificate")
			return
		}
		node, err := s.cfg.Authorize(certs[0])
		if err != nil {
			log.Warn("chunk service peer refused", "err", err)
			return
		}
		log = log.With("node", node)
	}
	s.serveStream(ctx, tc, log)
}

// serveStream serves requests read from conn (authenticated) until it
// fails or sends something that does not decode.
func (s *Server) serveStream(ctx context.Context, conn net.Conn, log *slog.Logger) {
	sem := make(chan struct{}, s.cfg.MaxInFlight)
	sc := &serverConn{conn: conn, w: bufio.NewWriterSize(conn, 256<<10), inFlight: sem}
	r := bufio.NewReaderSize(conn, 256<<10)
	// Requests go to an idle handler, or a new one: handlers live as long
	// as the connection, so the stacks the write path grows are reused.
	// Request data comes from bufpool and goes back once the request is
	// answered: the stores and the register copy what they keep.
	// A Sync covers every change received before it on the connection:
	// it waits for those still in progress (changes), so an owner can send
	// it right behind its writes instead of after their responses.
	type job struct {
		req  request
		data requestData
		seq  uint64 // a change's number; for a Sync, the last change before it
	}
	chs := newChanges()
	jobs := make(chan job)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(jobs)
	// Checksums sent with a write are trusted only from a TLS stream,
	// whose AEAD authenticates every byte (see LocalReplica.handle).
	_, sealed := conn.(*tls.Conn)
	serve := func(j job) {
		if j.req.op == opSync {
			chs.wait(j.seq)
		}
		body, err := s.local.handle(ctx, j.req, j.data.bytes(), j.data.blockSums(), sealed)
		if isChange(j.req.op) {
			chs.end(j.seq)
		}
		if err := sc.reply(j.req.id, body, err); err != nil {
			conn.Close()
		}
		j.data.put()
		<-sem
	}
	hdr := make([]byte, reqHeaderSize)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Debug("chunk service read", "err", err)
			}
			return
		}
		req, err := decodeRequest(hdr)
		if err != nil {
			log.Warn("chunk service bad request; closing the connection", "err", err)
			return
		}
		data, err := readRequestData(r, conn, req)
		if err != nil {
			return
		}
		var seq uint64
		switch {
		case isChange(req.op):
			seq = chs.begin()
		case req.op == opSync:
			seq = chs.mark()
		}
		alone := len(sem) == 0 && (r.Buffered() == 0 || syncOnlyBehind(r, req.op))
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if alone {
			// The only request in flight, none behind it (the owner's
			// queue depth 1), or only a Sync, which would wait for it
			// anyway (a FLUSH right behind a write): serve it here; a
			// hand-off to a handler goroutine costs a wake-up more than
			// the rest of a 4 KiB write's handling. One arriving
			// meanwhile waits for it.
			serve(job{req, data, seq})
			continue
		}
		select {
		case jobs <- job{req, data, seq}:
			continue
		default:
		}
		wg.Add(1)
		go func(first job) {
			defer wg.Done()
			serve(first)
			for j := range jobs {
				serve(j)
			}
		}(job{req, data, seq})
	}
}

// serverConn writes responses; writers that find others waiting leave
// the flush to the last of them, so pipelined responses share writes.
// The last, when other requests are in flight, first lets the goroutines
// ready to run (handlers finishing theirs) add their responses, so
// responses completed together leave in one TLS record and one send
// instead of one each (each send also wakes the peer's reader).
type serverConn struct {
	conn    net.Conn
	mu      sync.Mutex
	w       *bufio.Writer
	waiting atomic.Int32
	hdr     [respHeaderSize]byte
	// unflushed (under mu): responses written and not flushed yet.
	unflushed bool
	// inFlight holds a token per request read and not yet answered
	// (serveStream's semaphore).
	inFlight chan struct{}
}

func (c *serverConn) reply(id uint64, body []byte, err error) error {
	resp := response{id: id, status: statusOf(err)}
	if err != nil {
		body = []byte(err.Error())
	}
	resp.length = uint32(len(body))
	c.waiting.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting.Add(-1)
	resp.encode(c.hdr[:])
	if _, err := c.w.Write(c.hdr[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(body); err != nil {
		return err
	}
	// unflushed, not c.w.Buffered(): a large body goes through c.w
	// straight into the batchConn under TLS, which a flush must push.
	c.unflushed = true
	if c.waiting.Load() > 0 {
		return nil // a writer waiting for mu flushes (or passes it on)
	}
	if len(c.inFlight) > 1 {
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
		if !c.unflushed || c.waiting.Load() > 0 {
			return nil // flushed meanwhile, or left to a waiting writer
		}
	}
	c.unflushed = false
	if err := c.w.Flush(); err != nil {
		return err
	}
	return flushUnder(c.conn)
}

// syncOnlyBehind reports whether what r holds after a change (op) is
// exactly one Sync request: a Sync covers the change, so serving the
// change inline, then the Sync, delays neither.
func syncOnlyBehind(r *bufio.Reader, o op) bool {
	if !isChange(o) || r.Buffered() != reqHeaderSize {
		return false
	}
	b, err := r.Peek(reqHeaderSize)
	if err != nil {
		return false
	}
	next, err := decodeRequest(b)
	return err == nil && next.op == opSync
}
