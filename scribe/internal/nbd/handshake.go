package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/shoal-hci/shoal/scribe/internal/rawsock"
)

var (
	errAborted  = errors.New("client aborted the handshake")
	errProtocol = errors.New("nbd protocol violation")
)

// session is one client connection.
type session struct {
	srv *Server
	cfg Config
	r   *bufio.Reader
	w   io.Writer

	wmu    sync.Mutex
	bw     *bufio.Writer // over w, used under wmu
	broken bool
	// waiting counts replies queued for wmu: a sender that sees others
	// waiting leaves the flush to the last of them, so replies completed
	// together leave in one write.
	waiting atomic.Int32
	// busy counts the requests in flight (transmission phase only, set
	// before the first request): with others in flight, the writer that
	// would flush first yields (see locked).
	busy *atomic.Int32

	noZeroes   bool
	structured bool
	// metaExport is the export SET_META_CONTEXT named; metaAlloc whether
	// base:allocation was selected for it.
	metaExport string
	metaAlloc  bool

	// resolved are the exports Config.Resolver opened for this session,
	// released when it ends.
	resolved map[string]resolvedExport
}

type resolvedExport struct {
	exp     *export
	release func()
}

// lookup finds an export: one added with AddExport, else one the
// Resolver opens (once per session). A nil export with a nil error means
// there is no such export.
func (s *session) lookup(ctx context.Context, name string) (*export, error) {
	if exp := s.srv.lookup(name); exp != nil || s.cfg.Resolver == nil {
		return exp, nil
	}
	if r, ok := s.resolved[name]; ok {
		return r.exp, nil
	}
	b, opts, release, err := s.cfg.Resolver.Resolve(ctx, name)
	if err != nil {
		if errors.Is(err, ErrUnknownExport) {
			return nil, nil
		}
		s.cfg.Logger.Warn("nbd export not opened", "export", name, "err", err)
		return nil, err
	}
	if release == nil {
		release = func() {}
	}
	if b == nil || b.Size() < 0 {
		release()
		return nil, fmt.Errorf("export %q: resolver returned no backend: %w", name, ErrInvalid)
	}
	if opts.PreferredBlockSize == 0 {
		opts.PreferredBlockSize = 4096
	}
	if s.resolved == nil {
		s.resolved = map[string]resolvedExport{}
	}
	exp := &export{name: name, backend: b, opts: opts}
	s.resolved[name] = resolvedExport{exp: exp, release: release}
	return exp, nil
}

// releaseResolved releases what the Resolver opened for the session.
func (s *session) releaseResolved() {
	for _, r := range s.resolved {
		r.release()
	}
	s.resolved = nil
}

// refuseExport answers an INFO, GO or meta context option naming an export
// that does not exist (err nil) or could not be opened.
func (s *session) refuseExport(opt uint32, err error) error {
	if err == nil {
		return s.optReply(opt, repErrUnknown, []byte("no such export"))
	}
	msg := err.Error()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	return s.optReply(opt, repErrPolicy, []byte(msg))
}

func newSession(s *Server, rw io.ReadWriter) *session {
	conn := rawsock.Wrap(rw)
	return &session{srv: s, cfg: s.cfg, r: bufio.NewReaderSize(conn, 64<<10), w: rw, bw: bufio.NewWriterSize(conn, 64<<10)}
}

// send writes bufs as one reply, atomically with respect to other replies.
func (s *session) send(bufs ...[]byte) error {
	return s.locked(func(bw *bufio.Writer) error {
		for _, b := range bufs {
			if _, err := bw.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// locked runs write, which writes one reply to bw, under wmu, and
// flushes unless other replies wait for wmu (the last of them flushes).
// With other requests in flight, the writer that would flush first lets
// the goroutines ready to run add their replies (runtime.Gosched), so
// replies completed together leave in one write (one wake-up of the
// client) instead of one each; then it flushes unless someone did or a
// writer waiting for wmu will. A write that fails marks the session
// broken and hangs up.
func (s *session) locked(write func(bw *bufio.Writer) error) error {
	s.waiting.Add(1)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.waiting.Add(-1)
	if s.broken {
		return io.ErrClosedPipe
	}
	err := write(s.bw)
	if err == nil && s.waiting.Load() == 0 {
		if s.busy != nil && s.busy.Load() > 1 {
			s.wmu.Unlock()
			runtime.Gosched()
			s.wmu.Lock()
			if s.broken {
				return io.ErrClosedPipe
			}
			if s.bw.Buffered() == 0 || s.waiting.Load() > 0 {
				return nil
			}
		}
		err = s.bw.Flush()
	}
	if err != nil {
		s.broken = true
		// A half-written reply desynchronises the stream: hang up so
		// the reader stops too.
		if c, ok := s.w.(io.Closer); ok {
			c.Close()
		}
		return fmt.Errorf("write nbd reply: %w", err)
	}
	return nil
}

func (s *session) handshake(ctx context.Context) (*export, error) {
	hello := make([]byte, 18)
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if err := s.send(hello); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(s.r, cf[:]); err != nil {
		return nil, fmt.Errorf("read client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^(flagFixedNewstyle|flagNoZeroes) != 0 {
		return nil, fmt.Errorf("client flags %#x: unknown bits: %w", flags, errProtocol)
	}
	s.noZeroes = flags&flagNoZeroes != 0
	for n := 0; n < s.cfg.MaxOptions; n++ {
		exp, err := s.option(ctx)
		if err != nil || exp != nil {
			return exp, err
		}
	}
	return nil, fmt.Errorf("more than %d handshake options: %w", s.cfg.MaxOptions, errProtocol)
}

// option handles one option; it returns the export when transmission
// starts.
func (s *session) option(ctx context.Context) (*export, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read option header: %w", err)
	}
	if m := binary.BigEndian.Uint64(hdr[0:]); m != magicOpt {
		return nil, fmt.Errorf("option magic %#x: %w", m, errProtocol)
	}
	opt := binary.BigEndian.Uint32(hdr[8:])
	length := binary.BigEndian.Uint32(hdr[12:])
	if length > s.cfg.MaxOptionBytes {
		if opt == optExportName {
			return nil, fmt.Errorf("export name of %d bytes: %w", length, errProtocol)
		}
		// Too big to hold; skip it if it is not absurd, else hang up.
		if length > 16*s.cfg.MaxOptionBytes {
			return nil, fmt.Errorf("option %d of %d bytes: %w", opt, length, errProtocol)
		}
		if _, err := io.CopyN(io.Discard, s.r, int64(length)); err != nil {
			return nil, fmt.Errorf("skip option data: %w", err)
		}
		return nil, s.optReply(opt, repErrTooBig, []byte("option data too long"))
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(s.r, data); err != nil {
		return nil, fmt.Errorf("read option %d data: %w", opt, err)
	}
	switch opt {
	case optExportName:
		return s.optExportName(ctx, data)
	case optAbort:
		// The client may hang up before reading the ack; ignore errors.
		_ = s.optReply(opt, repAck, nil)
		return nil, errAborted
	case optList:
		if len(data) != 0 {
			return nil, s.optReply(opt, repErrInvalid, []byte("LIST takes no data"))
		}
		for _, name := range s.srv.exportNames(ctx) {
			p := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
			if err := s.optReply(opt, repServer, append(p, name...)); err != nil {
				return nil, err
			}
		}
		return nil, s.optReply(opt, repAck, nil)
	case optStructuredReply:
		if len(data) != 0 {
			return nil, s.optReply(opt, repErrInvalid, []byte("STRUCTURED_REPLY takes no data"))
		}
		s.structured = true
		return nil, s.optReply(opt, repAck, nil)
	case optInfo, optGo:
		return s.optInfoGo(ctx, opt, data)
	case optListMetaContext, optSetMetaContext:
		return nil, s.optMeta(ctx, opt, data)
	case optStartTLS:
		return nil, s.optReply(opt, repErrPolicy, []byte("TLS is not offered on this socket"))
	default:
		return nil, s.optReply(opt, repErrUnsup, []byte("option not supported"))
	}
}

func (s *session) optReply(opt, typ uint32, data []byte) error {
	hdr := make([]byte, 20)
	binary.BigEndian.PutUint64(hdr[0:], magicOptReply)
	binary.BigEndian.PutUint32(hdr[8:], opt)
	binary.BigEndian.PutUint32(hdr[12:], typ)
	binary.BigEndian.PutUint32(hdr[16:], uint32(len(data)))
	return s.send(hdr, data)
}

func (s *session) optExportName(ctx context.Context, data []byte) (*export, error) {
	exp, err := s.lookup(ctx, string(data))
	if exp == nil {
		if err != nil {
			return nil, fmt.Errorf("export %q requested by EXPORT_NAME: %w", data, err)
		}
		// The protocol has no error reply here: hang up.
		return nil, fmt.Errorf("unknown export %q requested by EXPORT_NAME", data)
	}
	s.resetMetaIfOther(exp.name)
	out := make([]byte, 10, 134)
	binary.BigEndian.PutUint64(out[0:], uint64(exp.backend.Size()))
	binary.BigEndian.PutUint16(out[8:], exp.transmissionFlags())
	if !s.noZeroes {
		out = out[:134]
	}
	return exp, s.send(out)
}

// cursor reads wire fields out of option data without panicking.
type cursor struct {
	b   []byte
	bad bool
}

func (c *cursor) u16() uint16 {
	if len(c.b) < 2 {
		c.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(c.b)
	c.b = c.b[2:]
	return v
}

func (c *cursor) u32() uint32 {
	if len(c.b) < 4 {
		c.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(c.b)
	c.b = c.b[4:]
	return v
}

func (c *cursor) str(n uint32) string {
	if uint64(len(c.b)) < uint64(n) || n > maxStringLen {
		c.bad = true
		return ""
	}
	v := string(c.b[:n])
	c.b = c.b[n:]
	return v
}

func (s *session) optInfoGo(ctx context.Context, opt uint32, data []byte) (*export, error) {
	c := &cursor{b: data}
	name := c.str(c.u32())
	nreq := c.u16()
	reqs := make([]uint16, 0, 4)
	for i := 0; i < int(nreq) && !c.bad; i++ {
		reqs = append(reqs, c.u16())
	}
	if c.bad || len(c.b) != 0 || !utf8.ValidString(name) {
		return nil, s.optReply(opt, repErrInvalid, []byte("malformed INFO/GO request"))
	}
	exp, err := s.lookup(ctx, name)
	if exp == nil {
		return nil, s.refuseExport(opt, err)
	}
	info := make([]byte, 12)
	binary.BigEndian.PutUint16(info[0:], infoExport)
	binary.BigEndian.PutUint64(info[2:], uint64(exp.backend.Size()))
	binary.BigEndian.PutUint16(info[10:], exp.transmissionFlags())
	if err := s.optReply(opt, repInfo, info); err != nil {
		return nil, err
	}
	for _, r := range reqs {
		switch r {
		case infoName:
			p := binary.BigEndian.AppendUint16(nil, infoName)
			if err := s.optReply(opt, repInfo, append(p, exp.name...)); err != nil {
				return nil, err
			}
		case infoBlockSize:
			// Always sent below.
		}
	}
	// Block sizes go out whether asked or not: a minimum of 1 asks
	// nothing of the client.
	bs := make([]byte, 14)
	binary.BigEndian.PutUint16(bs[0:], infoBlockSize)
	binary.BigEndian.PutUint32(bs[2:], 1)
	binary.BigEndian.PutUint32(bs[6:], exp.opts.PreferredBlockSize)
	binary.BigEndian.PutUint32(bs[10:], s.cfg.MaxRequestBytes)
	if err := s.optReply(opt, repInfo, bs); err != nil {
		return nil, err
	}
	if err := s.optReply(opt, repAck, nil); err != nil {
		return nil, err
	}
	if opt == optInfo {
		return nil, nil
	}
	s.resetMetaIfOther(exp.name)
	return exp, nil
}

func (s *session) resetMetaIfOther(name string) {
	if s.metaExport != name {
		s.metaAlloc = false
	}
}

func (s *session) optMeta(ctx context.Context, opt uint32, data []byte) error {
	if !s.structured {
		return s.optReply(opt, repErrInvalid, []byte("negotiate STRUCTURED_REPLY first"))
	}
	c := &cursor{b: data}
	name := c.str(c.u32())
	nq := c.u32()
	var queries []string
	for i := uint32(0); i < nq && !c.bad; i++ {
		queries = append(queries, c.str(c.u32()))
	}
	if c.bad || len(c.b) != 0 {
		return s.optReply(opt, repErrInvalid, []byte("malformed meta context request"))
	}
	if exp, err := s.lookup(ctx, name); exp == nil {
		return s.refuseExport(opt, err)
	}
	match := false
	if opt == optListMetaContext && len(queries) == 0 {
		match = true
	}
	for _, q := range queries {
		if q == metaBaseAllocation || (opt == optListMetaContext && q == "base:") {
			match = true
		}
	}
	if opt == optSetMetaContext {
		s.metaExport, s.metaAlloc = name, match
	}
	if match {
		p := binary.BigEndian.AppendUint32(nil, metaContextID)
		if err := s.optReply(opt, repMetaContext, append(p, metaBaseAllocation...)); err != nil {
			return err
		}
	}
	return s.optReply(opt, repAck, nil)
}
