package nbd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// Wire building blocks for hand-written clients, the fuzz seed corpus and
// hostile inputs. Values follow proto.md.
const (
	tOptGo         = 7
	tOptStructured = 8
	tOptSetMeta    = 10
	tOptList       = 3
	tOptAbort      = 2
	tCmdRead       = 0
	tCmdWrite      = 1
	tCmdDisc       = 2
	tCmdFlush      = 3
	tCmdTrim       = 4
	tCmdZeroes     = 6
	tCmdStatus     = 7
)

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func option(opt uint32, data []byte) []byte {
	return cat(be64(0x49484156454f5054), be32(opt), be32(uint32(len(data))), data)
}

func goData(name string) []byte {
	return cat(be32(uint32(len(name))), []byte(name), be16(1), be16(3))
}

func metaData(name string, queries ...string) []byte {
	out := cat(be32(uint32(len(name))), []byte(name), be32(uint32(len(queries))))
	for _, q := range queries {
		out = cat(out, be32(uint32(len(q))), []byte(q))
	}
	return out
}

// clientHello is the client's part of a handshake that ends in GO "x"
// with structured replies and base:allocation.
func clientHello(structured bool) []byte {
	out := be32(3) // FIXED_NEWSTYLE | NO_ZEROES
	if structured {
		out = cat(out, option(tOptStructured, nil), option(tOptSetMeta, metaData("x", "base:allocation")))
	}
	return cat(out, option(tOptGo, goData("x")))
}

func request(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) []byte {
	return cat(be32(0x25609513), be16(flags), be16(typ), be64(cookie), be64(off), be32(length), payload)
}

// client is a raw protocol client over a net.Conn.
type client struct {
	t *testing.T
	c net.Conn
}

func dial(t *testing.T, srv *nbd.Server) *client {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer b.Close()
		srv.ServeConn(context.Background(), b)
	}()
	t.Cleanup(func() { a.Close(); <-done })
	a.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: a}
}

func (c *client) write(b []byte) error {
	_, err := c.c.Write(b)
	return err
}

func (c *client) read(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(c.c, b)
	return b, err
}

// handshake does the hello exchange and the options of clientHello.
func (c *client) handshake(structured bool) {
	c.t.Helper()
	if _, err := c.read(18); err != nil {
		c.t.Fatal(err)
	}
	go c.write(clientHello(structured))
	nopts := 1
	if structured {
		nopts = 3
	}
	for i := 0; i < nopts; {
		typ, data := c.optReply()
		if typ>>31 != 0 {
			c.t.Fatalf("option error reply %#x: %q", typ, data)
		}
		if typ == 1 {
			i++
		}
	}
}

func (c *client) optReply() (uint32, []byte) {
	c.t.Helper()
	h, err := c.read(20)
	if err != nil {
		c.t.Fatalf("read option reply: %v", err)
	}
	data, err := c.read(int(binary.BigEndian.Uint32(h[16:])))
	if err != nil {
		c.t.Fatalf("read option reply data: %v", err)
	}
	return binary.BigEndian.Uint32(h[12:]), data
}

// reply reads one reply: simple or structured chunk.
type reply struct {
	cookie uint64
	errno  uint32
	typ    uint16
	data   []byte
}

func (c *client) reply(readLen int) (reply, error) {
	h, err := c.read(4)
	if err != nil {
		return reply{}, err
	}
	switch binary.BigEndian.Uint32(h) {
	case 0x67446698:
		r, err := c.read(12)
		if err != nil {
			return reply{}, err
		}
		rep := reply{errno: binary.BigEndian.Uint32(r), cookie: binary.BigEndian.Uint64(r[4:])}
		if rep.errno == 0 && readLen > 0 {
			rep.data, err = c.read(readLen)
		}
		return rep, err
	case 0x668e33ef:
		r, err := c.read(16)
		if err != nil {
			return reply{}, err
		}
		rep := reply{typ: binary.BigEndian.Uint16(r[2:]), cookie: binary.BigEndian.Uint64(r[4:])}
		rep.data, err = c.read(int(binary.BigEndian.Uint32(r[12:])))
		if rep.typ&0x8000 != 0 && len(rep.data) >= 4 {
			rep.errno = binary.BigEndian.Uint32(rep.data)
		}
		return rep, err
	}
	return reply{}, fmt.Errorf("bad reply magic %x", h)
}

func newServer(t *testing.T, b nbd.Backend) *nbd.Server {
	t.Helper()
	srv, err := nbd.New(nbd.Config{MaxRequestBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddExport("x", b, nbd.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestRequestErrors(t *testing.T) {
	const size = 1 << 20
	tests := []struct {
		name       string
		structured bool
		req        []byte
		want       uint32
	}{
		{"read past end", true, request(0, tCmdRead, 1, size-4096, 8192, nil), 22},
		{"read offset overflow", true, request(0, tCmdRead, 1, 1<<63+1<<62+1<<61, 4096, nil), 22},
		{"read too big", false, request(0, tCmdRead, 1, 0, 2<<20, nil), 75},
		{"write past end", false, request(0, tCmdWrite, 1, size-1, 2, []byte{1, 2}), 28},
		{"zeroes past end", false, request(0, tCmdZeroes, 1, size, 1, nil), 28},
		{"trim past end", false, request(0, tCmdTrim, 1, 0, size+1, nil), 22},
		{"unknown command", false, request(0, 42, 1, 0, 0, nil), 22},
		{"unknown flag", false, request(1<<9, tCmdRead, 1, 0, 4096, nil), 22},
		{"status without meta context", false, request(0, tCmdStatus, 1, 0, 4096, nil), 22},
		{"status of nothing", true, request(0, tCmdStatus, 1, 0, 0, nil), 22},
		{"flush with a range", false, request(0, tCmdFlush, 1, 4096, 4096, nil), 22},
		{"fast zero that must allocate", false, request(1<<1|1<<4, tCmdZeroes, 1, 0, 4096, nil), 95},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := nbd.NewMemoryBackend(size)
			c := dial(t, newServer(t, mem))
			c.handshake(tt.structured)
			go c.write(tt.req)
			rep, err := c.reply(0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rep.errno); diff != "" {
				t.Errorf("errno (-want +got):\n%s", diff)
			}
			if got := mem.AllocatedBytes(); got != 0 {
				t.Errorf("a refused request allocated %d bytes", got)
			}
		})
	}
}

func TestHostileStreamsHangUp(t *testing.T) {
	tests := []struct {
		name       string
		handshake  bool
		stream     []byte
		wantReplys int
	}{
		{"bad client flags", false, be32(1 << 7), 0},
		{"bad option magic", false, cat(be32(3), be64(0x1122334455667788), be32(7), be32(0)), 0},
		{"huge option", false, cat(be32(3), be64(0x49484156454f5054), be32(7), be32(1<<31)), 0},
		{"unknown export by name", false, cat(be32(3), option(1, []byte("nope"))), 0},
		{"bad request magic", true, cat(be32(0xdeadbeef), make([]byte, 24)), 0},
		{"write longer than the limit", true, request(0, tCmdWrite, 1, 0, 1<<31, nil), 0},
		{"short write payload", true, request(0, tCmdWrite, 1, 0, 4096, make([]byte, 100)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := nbd.NewMemoryBackend(1 << 20)
			c := dial(t, newServer(t, mem))
			if tt.handshake {
				c.handshake(false)
			} else if _, err := c.read(18); err != nil {
				t.Fatal(err)
			}
			go func() {
				c.write(tt.stream)
				if tt.name == "short write payload" {
					c.c.Close()
				}
			}()
			// The server hangs up: the next read ends in EOF, not a reply.
			_, err := c.reply(0)
			if err == nil {
				t.Fatal("server replied instead of hanging up")
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("read after hostile input: %v; want EOF", err)
			}
			if got := mem.AllocatedBytes(); got != 0 {
				t.Errorf("hostile input allocated %d bytes", got)
			}
		})
	}
}

func TestOptionReplies(t *testing.T) {
	srv := newServer(t, nbd.NewMemoryBackend(1<<20))
	c := dial(t, srv)
	if _, err := c.read(18); err != nil {
		t.Fatal(err)
	}
	go c.write(cat(be32(3),
		option(tOptList, nil),
		option(99, []byte("?")),
		option(tOptSetMeta, metaData("x", "base:allocation")), // before STRUCTURED_REPLY
		option(tOptGo, goData("missing")),
		option(tOptStructured, nil),
		option(tOptSetMeta, metaData("x", "qemu:dirty-bitmap:a", "base:allocation")),
		option(tOptAbort, nil)))
	var got []uint32
	for {
		typ, _ := c.optReply()
		got = append(got, typ)
		if len(got) == 8 {
			break
		}
	}
	want := []uint32{
		2, 1, // LIST: one server, ack
		1<<31 + 1, // unknown option: unsupported
		1<<31 + 3, // meta context without structured replies: invalid
		1<<31 + 6, // GO to a missing export: unknown
		1,         // STRUCTURED_REPLY ack
		4, 1,      // SET_META_CONTEXT: base:allocation, ack
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("option replies (-want +got):\n%s", diff)
	}
	typ, _ := c.optReply() // ABORT ack
	if typ != 1 {
		t.Errorf("ABORT reply %#x; want ack", typ)
	}
}

// gateBackend blocks reads at offset 0 until released.
type gateBackend struct {
	*nbd.MemoryBackend
	gate chan struct{}
}

func (g *gateBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	if off == 0 {
		<-g.gate
	}
	return g.MemoryBackend.ReadAt(ctx, p, off)
}

func TestRepliesOutOfOrder(t *testing.T) {
	g := &gateBackend{MemoryBackend: nbd.NewMemoryBackend(1 << 20), gate: make(chan struct{})}
	c := dial(t, newServer(t, g))
	c.handshake(true)
	// Read 1 blocks in the backend; the write and the read after it
	// are answered first.
	go c.write(cat(request(0, tCmdRead, 1, 0, 4096, nil), request(0, tCmdWrite, 2, 8192, 4, []byte("abcd"))))
	var order []uint64
	for i := 0; i < 3; i++ {
		rep, err := c.reply(0)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, rep.cookie)
		switch rep.cookie {
		case 2:
			go c.write(request(0, tCmdRead, 3, 8192, 4, nil))
		case 3:
			if diff := cmp.Diff(cat(be64(8192), []byte("abcd")), rep.data); diff != "" {
				t.Errorf("read 3 (-want +got):\n%s", diff)
			}
			close(g.gate)
		}
	}
	if diff := cmp.Diff([]uint64{2, 3, 1}, order); diff != "" {
		t.Errorf("reply order (-want +got):\n%s", diff)
	}
	go c.write(request(0, tCmdDisc, 4, 0, 0, nil))
	if _, err := c.reply(0); err == nil {
		t.Error("server replied to DISC instead of closing")
	}
}

func TestBlockStatusReqOne(t *testing.T) {
	mem := nbd.NewMemoryBackend(1 << 20)
	mem.WriteAt(context.Background(), []byte{1}, 8192, false)
	c := dial(t, newServer(t, mem))
	c.handshake(true)
	go c.write(cat(request(1<<3, tCmdStatus, 7, 0, 1<<20, nil), request(0, tCmdStatus, 8, 4096, 1<<20-4096, nil)))
	got := map[uint64][]byte{}
	for i := 0; i < 2; i++ {
		rep, err := c.reply(0)
		if err != nil {
			t.Fatal(err)
		}
		got[rep.cookie] = rep.data
	}
	want := map[uint64][]byte{
		7: cat(be32(1), be32(8192), be32(3)),
		8: cat(be32(1), be32(4096), be32(3), be32(4096), be32(0), be32(1<<20-12288), be32(3)),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("block status payloads (-want +got):\n%s", diff)
	}
}

// failBackend fails every read, as a chunk store does on a checksum error.
type failBackend struct{ *nbd.MemoryBackend }

func (failBackend) ReadAt(context.Context, []byte, int64) error {
	return fmt.Errorf("block checksum mismatch")
}

func (failBackend) WriteAt(context.Context, []byte, int64, bool) error {
	return fmt.Errorf("disk full: %w", nbd.ErrNoSpace)
}

func TestBackendErrorsReachClient(t *testing.T) {
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			c := dial(t, newServer(t, failBackend{nbd.NewMemoryBackend(1 << 20)}))
			c.handshake(structured)
			go c.write(cat(request(0, tCmdRead, 1, 0, 4096, nil), request(0, tCmdWrite, 2, 0, 4, []byte("abcd"))))
			got := map[uint64]uint32{}
			for range 2 {
				rep, err := c.reply(0)
				if err != nil {
					t.Fatal(err)
				}
				if rep.cookie == 1 && structured && rep.typ != 1<<15+1 {
					t.Errorf("read error chunk type %#x; want NBD_REPLY_TYPE_ERROR", rep.typ)
				}
				got[rep.cookie] = rep.errno
			}
			if diff := cmp.Diff(map[uint64]uint32{1: 5, 2: 28}, got); diff != "" {
				t.Errorf("errnos by cookie (-want +got):\n%s", diff)
			}
		})
	}
}

// countingBackend blocks every read until released and records the most
// reads it held at once.
type countingBackend struct {
	*nbd.MemoryBackend
	release chan struct{}
	mu      sync.Mutex
	cur     int
	peak    int
}

func (c *countingBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	c.mu.Lock()
	c.cur++
	c.peak = max(c.peak, c.cur)
	c.mu.Unlock()
	<-c.release
	c.mu.Lock()
	c.cur--
	c.mu.Unlock()
	return c.MemoryBackend.ReadAt(ctx, p, off)
}

func TestInFlightIsBounded(t *testing.T) {
	cb := &countingBackend{MemoryBackend: nbd.NewMemoryBackend(1 << 20), release: make(chan struct{})}
	srv, err := nbd.New(nbd.Config{MaxInFlight: 4})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddExport("x", cb, nbd.ExportOptions{})
	c := dial(t, srv)
	c.handshake(false)
	const n = 20
	var reqs [][]byte
	for i := range n {
		reqs = append(reqs, request(0, tCmdRead, uint64(i), 0, 512, nil))
	}
	go c.write(cat(reqs...))
	go func() {
		for range n {
			cb.release <- struct{}{}
		}
	}()
	for range n {
		if _, err := c.reply(512); err != nil {
			t.Fatal(err)
		}
	}
	if cb.peak > 4 || cb.peak < 1 {
		t.Errorf("backend saw %d concurrent reads; MaxInFlight is 4", cb.peak)
	}
}

func TestHandshakeDeadline(t *testing.T) {
	srv, err := nbd.New(nbd.Config{Now: func() time.Time { return time.Unix(0, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddExport("x", nbd.NewMemoryBackend(4096), nbd.ExportOptions{})
	a, b := net.Pipe()
	defer a.Close()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), b) }()
	// The deadline is long past: the server gives up without a hello.
	if err := <-done; err == nil {
		t.Error("handshake past its deadline succeeded")
	}
}

func TestClientAgainstServer(t *testing.T) {
	mem := nbd.NewMemoryBackend(1 << 20)
	sock := serve(t, map[string]nbd.Backend{"x": mem})
	c, err := nbd.Dial(context.Background(), "unix", sock, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != 1<<20 {
		t.Errorf("size %d; want 1 MiB", c.Size())
	}
	if err := c.WriteAt([]byte("hello"), 4096, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if err := c.ReadAt(got, 4096); err != nil || string(got) != "hello" {
		t.Errorf("read back %q, %v", got, err)
	}
	if err := c.Trim(0, 8192); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadAt(got, 1<<20-2); !nbd.IsRemote(err, 22) {
		t.Errorf("read past the end: %v; want errno 22", err)
	}
	if _, err := nbd.Dial(context.Background(), "unix", sock, "missing"); err == nil {
		t.Error("dial to a missing export succeeded")
	}
}
