package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/shoal-hci/shoal/scribe/internal/bufpool"
)

// request is one parsed transmission request.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
	data   []byte // WRITE payload, pooled
}

// budget bounds the requests and payload bytes in flight on a connection.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	count int
	// busy mirrors count, for reading without mu.
	busy     atomic.Int32
	bytes    int64
	maxCount int
	maxBytes int64
}

func newBudget(maxCount int, maxBytes int64) *budget {
	b := &budget{maxCount: maxCount, maxBytes: maxBytes}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquire waits until n more bytes fit and reports whether no other
// request is in flight.
func (b *budget) acquire(n int64) (alone bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.count >= b.maxCount || (b.bytes > 0 && b.bytes+n > b.maxBytes) {
		b.cond.Wait()
	}
	b.count++
	b.busy.Store(int32(b.count))
	b.bytes += n
	return b.count == 1
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.count--
	b.busy.Store(int32(b.count))
	b.bytes -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// workers run a session's requests. A request goes to an idle worker if
// there is one, else to a new one; workers stay until the session ends, so
// their stacks, grown once by the deep write path (replication, TLS,
// pwrite), are reused instead of grown again for every request.
type workers struct {
	work chan func()
	wg   sync.WaitGroup
}

func (w *workers) run(f func()) {
	select {
	case w.work <- f:
		return
	default:
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f()
		for f := range w.work {
			f()
		}
	}()
}

// stop lets idle workers exit and waits for all of them.
func (w *workers) stop() {
	close(w.work)
	w.wg.Wait()
}

// transmit runs the transmission phase until DISC, EOF or a protocol error.
func (s *session) transmit(ctx context.Context, exp *export) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bud := newBudget(s.cfg.MaxInFlight, s.cfg.MaxInFlightBytes)
	s.busy = &bud.busy // before any worker starts
	w := &workers{work: make(chan func())}
	defer w.stop()
	size := uint64(exp.backend.Size())
	var hdr [requestHeaderLen]byte
	for {
		if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // client hung up between requests
			}
			return fmt.Errorf("read request header: %w", err)
		}
		if m := binary.BigEndian.Uint32(hdr[0:]); m != magicRequest {
			return fmt.Errorf("request magic %#x: %w", m, errProtocol)
		}
		req := request{
			flags:  binary.BigEndian.Uint16(hdr[4:]),
			typ:    binary.BigEndian.Uint16(hdr[6:]),
			cookie: binary.BigEndian.Uint64(hdr[8:]),
			offset: binary.BigEndian.Uint64(hdr[16:]),
			length: binary.BigEndian.Uint32(hdr[24:]),
		}
		var cost int64
		var buf *[]byte // a WRITE's payload
		switch req.typ {
		case cmdDisc:
			return nil // the deferred stop lets in-flight requests finish
		case cmdWrite:
			if req.length > s.cfg.MaxRequestBytes {
				return fmt.Errorf("write of %d bytes exceeds the %d-byte limit: %w", req.length, s.cfg.MaxRequestBytes, errProtocol)
			}
			cost = int64(req.length)
		case cmdRead:
			if req.length <= s.cfg.MaxRequestBytes {
				cost = int64(req.length)
			}
		}
		alone := bud.acquire(cost)
		if req.typ == cmdWrite {
			buf = bufpool.Get(int(req.length))
			if _, err := io.ReadFull(s.r, *buf); err != nil {
				bufpool.Put(buf)
				bud.release(cost)
				return fmt.Errorf("read write payload: %w", err)
			}
			req.data = *buf
		}
		// A request runs on the reading goroutine itself when it is the
		// only one in flight and no other has arrived (a client at queue
		// depth 1: no hand-off to a worker, whose wake-up cost more CPU
		// than the rest of the server's work on a 4 KiB request), else on
		// a worker so the reader goes on reading. A request arriving while
		// one runs inline waits for it.
		if alone && s.r.Buffered() == 0 {
			s.serve(ctx, exp, size, req, bud, cost, buf, false)
			continue
		}
		w.run(func() { s.serve(ctx, exp, size, req, bud, cost, buf, true) })
	}
}

// serve handles req, then gives back its payload buffer, runs what a
// DeferredWriter left of a write (only on a worker: deferred) and gives
// back the request's budget. Counting the deferred work in the budget
// bounds the workers busy with it.
func (s *session) serve(ctx context.Context, exp *export, size uint64, req request, bud *budget, cost int64, buf *[]byte, deferred bool) {
	rest := s.handle(ctx, exp, size, req, deferred)
	if buf != nil {
		bufpool.Put(buf)
	}
	if rest != nil {
		rest()
	}
	bud.release(cost)
}

// validFlags are the command flags each command accepts.
var validFlags = map[uint16]uint16{
	cmdRead:        cmdFlagDF,
	cmdWrite:       cmdFlagFUA,
	cmdFlush:       0,
	cmdTrim:        cmdFlagFUA,
	cmdWriteZeroes: cmdFlagFUA | cmdFlagNoHole | cmdFlagFastZero,
	cmdBlockStatus: cmdFlagReqOne,
}

// handle serves one request and sends its reply; a reply that cannot be
// written has already marked the session broken. With deferred, a write
// without FUA to a DeferredWriter may leave work, which handle returns
// for its caller to run after the reply.
func (s *session) handle(ctx context.Context, exp *export, size uint64, req request, deferred bool) (rest func()) {
	errno := s.check(exp, size, req)
	if errno != 0 {
		s.replyError(req, errno, "")
		return nil
	}
	b := exp.backend
	off, n := int64(req.offset), int64(req.length)
	var err error
	switch req.typ {
	case cmdRead:
		s.read(ctx, b, req)
		return nil
	case cmdWrite:
		fua := req.flags&cmdFlagFUA != 0
		dw, ok := b.(DeferredWriter)
		switch {
		case n == 0:
		case deferred && !fua && ok:
			rest, err = dw.WriteDeferred(ctx, req.data, off)
		default:
			err = b.WriteAt(ctx, req.data, off, fua)
		}
	case cmdFlush:
		err = b.Flush(ctx)
	case cmdTrim:
		if n > 0 {
			err = b.Trim(ctx, off, n, req.flags&cmdFlagFUA != 0)
		}
	case cmdWriteZeroes:
		if n > 0 {
			err = b.WriteZeroes(ctx, off, n, ZeroFlags{
				FUA:    req.flags&cmdFlagFUA != 0,
				NoHole: req.flags&cmdFlagNoHole != 0,
				Fast:   req.flags&cmdFlagFastZero != 0,
			})
		}
	case cmdBlockStatus:
		s.blockStatus(ctx, b, req)
		return nil
	}
	if err != nil {
		s.replyError(req, errnoOf(err), err.Error())
		return rest
	}
	s.replySimple(req.cookie, 0, nil)
	return rest
}

// check validates a request against the export; it returns an errno.
func (s *session) check(exp *export, size uint64, req request) uint32 {
	valid, known := validFlags[req.typ]
	if !known {
		return errInval
	}
	if req.flags&^valid != 0 {
		return errInval
	}
	if req.typ == cmdWriteZeroes && req.flags&cmdFlagFastZero != 0 && req.flags&cmdFlagNoHole != 0 {
		// Writing real zeroes is never faster than a write.
		return errNotSup
	}
	write := req.typ == cmdWrite || req.typ == cmdWriteZeroes || req.typ == cmdTrim
	if write && exp.opts.ReadOnly {
		return errPerm
	}
	if req.typ == cmdFlush {
		if req.offset != 0 || req.length != 0 {
			return errInval
		}
		return 0
	}
	if req.typ == cmdRead && req.length > s.cfg.MaxRequestBytes {
		return errOverflow
	}
	if req.typ == cmdBlockStatus {
		if !s.structured || !s.metaAlloc || s.metaExport != exp.name || req.length == 0 {
			return errInval
		}
	}
	end := req.offset + uint64(req.length)
	if end < req.offset || end > size {
		if req.typ == cmdWrite || req.typ == cmdWriteZeroes {
			return errNoSpc
		}
		return errInval
	}
	return 0
}

func (s *session) read(ctx context.Context, b Backend, req request) {
	buf := bufpool.Get(int(req.length))
	defer bufpool.Put(buf)
	if len(*buf) > 0 {
		if err := b.ReadAt(ctx, *buf, int64(req.offset)); err != nil {
			s.replyError(req, errnoOf(err), err.Error())
			return
		}
	}
	if !s.structured {
		s.replySimple(req.cookie, 0, *buf)
		return
	}
	if req.length == 0 {
		s.replyChunk(req.cookie, replyFlagDone, 0, nil, nil)
		return
	}
	_ = s.sendReply(replyHeader{chunk: true, flags: replyFlagDone, typ: replyOffsetData, cookie: req.cookie, offset: req.offset}, nil, *buf)
}

// maxDescriptors bounds one BLOCK_STATUS reply.
const maxDescriptors = 2048

func (s *session) blockStatus(ctx context.Context, b Backend, req request) {
	max := maxDescriptors
	if req.flags&cmdFlagReqOne != 0 {
		max = 1
	}
	exts, err := b.BlockStatus(ctx, int64(req.offset), int64(req.length), max)
	if err != nil {
		s.replyError(req, errnoOf(err), err.Error())
		return
	}
	payload := binary.BigEndian.AppendUint32(make([]byte, 0, 4+8*len(exts)), metaContextID)
	remaining := int64(req.length)
	for i, e := range exts {
		if i == max || remaining == 0 {
			break
		}
		if e.Length <= 0 {
			break
		}
		l := min(e.Length, remaining)
		remaining -= l
		payload = binary.BigEndian.AppendUint32(payload, uint32(l))
		payload = binary.BigEndian.AppendUint32(payload, e.flags())
	}
	if len(payload) == 4 {
		s.replyError(req, errIO, "backend returned no extents")
		return
	}
	s.replyChunk(req.cookie, replyFlagDone, replyBlockStatus, payload, nil)
}

// replyHeader is the header of a transmission reply: a simple reply, or
// a structured reply chunk whose payload is head then data.
type replyHeader struct {
	chunk  bool
	flags  uint16 // chunk
	typ    uint16 // chunk
	errno  uint32 // simple reply
	cookie uint64
	// offset starts the payload of an OFFSET_DATA chunk (typ).
	offset uint64
}

// append appends the header of a reply with payload bytes after it.
func (h replyHeader) append(b []byte, payload int) []byte {
	if !h.chunk {
		b = binary.BigEndian.AppendUint32(b, magicSimple)
		b = binary.BigEndian.AppendUint32(b, h.errno)
		return binary.BigEndian.AppendUint64(b, h.cookie)
	}
	if h.typ == replyOffsetData {
		payload += 8
	}
	b = binary.BigEndian.AppendUint32(b, magicStructured)
	b = binary.BigEndian.AppendUint16(b, h.flags)
	b = binary.BigEndian.AppendUint16(b, h.typ)
	b = binary.BigEndian.AppendUint64(b, h.cookie)
	b = binary.BigEndian.AppendUint32(b, uint32(payload))
	if h.typ == replyOffsetData {
		b = binary.BigEndian.AppendUint64(b, h.offset)
	}
	return b
}

// sendReply writes a reply: h, head and data. The header goes straight
// into the write buffer, so a reply costs no allocation.
func (s *session) sendReply(h replyHeader, head, data []byte) error {
	return s.locked(func(bw *bufio.Writer) error {
		if _, err := bw.Write(h.append(bw.AvailableBuffer(), len(head)+len(data))); err != nil {
			return err
		}
		if len(head) > 0 {
			if _, err := bw.Write(head); err != nil {
				return err
			}
		}
		if len(data) > 0 {
			if _, err := bw.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *session) replySimple(cookie uint64, errno uint32, data []byte) {
	_ = s.sendReply(replyHeader{errno: errno, cookie: cookie}, nil, data)
}

func (s *session) replyChunk(cookie uint64, flags, typ uint16, head, data []byte) {
	_ = s.sendReply(replyHeader{chunk: true, flags: flags, typ: typ, cookie: cookie}, head, data)
}

func (s *session) replyError(req request, errno uint32, msg string) {
	if !s.structured || (req.typ != cmdRead && req.typ != cmdBlockStatus) {
		s.replySimple(req.cookie, errno, nil)
		return
	}
	if len(msg) > maxStringLen {
		msg = msg[:maxStringLen]
	}
	p := binary.BigEndian.AppendUint32(nil, errno)
	p = binary.BigEndian.AppendUint16(p, uint16(len(msg)))
	s.replyChunk(req.cookie, replyFlagDone, replyError, append(p, msg...), nil)
}

// errnoOf maps a Backend error to the errno the client sees.
func errnoOf(err error) uint32 {
	switch {
	case errors.Is(err, ErrNoSpace), errors.Is(err, syscall.ENOSPC):
		return errNoSpc
	case errors.Is(err, ErrNotFast):
		return errNotSup
	case errors.Is(err, ErrReadOnly), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS):
		return errPerm
	case errors.Is(err, ErrInvalid):
		return errInval
	case errors.Is(err, context.Canceled):
		return errShutdown
	case errors.Is(err, syscall.ENOMEM):
		return errNoMem
	}
	return errIO
}
