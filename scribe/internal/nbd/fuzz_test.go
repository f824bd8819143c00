package nbd_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// guardBackend records any call outside the export, which the server must
// never make.
type guardBackend struct {
	*nbd.MemoryBackend
	mu  sync.Mutex
	bad []string
}

func (g *guardBackend) check(what string, off, n int64) {
	if off < 0 || n < 0 || off+n > g.Size() {
		g.mu.Lock()
		g.bad = append(g.bad, what)
		g.mu.Unlock()
	}
}

func (g *guardBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	g.check("read", off, int64(len(p)))
	return g.MemoryBackend.ReadAt(ctx, p, off)
}

func (g *guardBackend) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	g.check("write", off, int64(len(p)))
	return g.MemoryBackend.WriteAt(ctx, p, off, fua)
}

func (g *guardBackend) Trim(ctx context.Context, off, n int64, fua bool) error {
	g.check("trim", off, n)
	return g.MemoryBackend.Trim(ctx, off, n, fua)
}

func (g *guardBackend) WriteZeroes(ctx context.Context, off, n int64, f nbd.ZeroFlags) error {
	g.check("zeroes", off, n)
	return g.MemoryBackend.WriteZeroes(ctx, off, n, f)
}

func (g *guardBackend) BlockStatus(ctx context.Context, off, n int64, max int) ([]nbd.Extent, error) {
	g.check("status", off, n)
	return g.MemoryBackend.BlockStatus(ctx, off, n, max)
}

type pipeRW struct {
	io.Reader
	io.Writer
}

// FuzzSession feeds arbitrary client bytes (handshake and requests) to a
// session: it must never panic, hang, or touch bytes outside the export.
func FuzzSession(f *testing.F) {
	for _, structured := range []bool{false, true} {
		h := clientHello(structured)
		f.Add(h)
		f.Add(cat(h, request(0, tCmdWrite, 1, 4096, 4, []byte("abcd")), request(0, tCmdRead, 2, 0, 8192, nil), request(0, tCmdDisc, 3, 0, 0, nil)))
		f.Add(cat(h, request(1, tCmdWrite, 1, 65532, 4, []byte("abcd")), request(0, tCmdFlush, 2, 0, 0, nil)))
		f.Add(cat(h, request(8, tCmdStatus, 1, 0, 65536, nil), request(0, tCmdStatus, 2, 4096, 4096, nil)))
		f.Add(cat(h, request(2, tCmdZeroes, 1, 0, 65536, nil), request(0, tCmdTrim, 2, 100, 5000, nil)))
		f.Add(cat(h, request(0, tCmdRead, 1, 1<<63, 4096, nil)))
	}
	f.Add(cat(be32(3), option(tOptList, nil), option(6, goData("x")), option(tOptAbort, nil)))
	f.Add(cat(be32(3), option(1, []byte("x")), request(0, tCmdRead, 1, 0, 512, nil)))
	f.Add(cat(be32(1), option(tOptSetMeta, metaData("x", "base:", "base:allocation"))))
	f.Fuzz(func(t *testing.T, stream []byte) {
		g := &guardBackend{MemoryBackend: nbd.NewMemoryBackend(65536)}
		srv, err := nbd.New(nbd.Config{MaxRequestBytes: 65536, MaxOptionBytes: 1024, MaxOptions: 64})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.AddExport("x", g, nbd.ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		srv.ServeConn(context.Background(), pipeRW{bytes.NewReader(stream), io.Discard})
		if len(g.bad) > 0 {
			t.Fatalf("server called the backend outside the export: %v", g.bad)
		}
		if got := g.AllocatedBytes(); got > g.Size() {
			t.Fatalf("allocated %d bytes in a %d-byte export", got, g.Size())
		}
	})
}

// FuzzClientHandshake feeds arbitrary server bytes to the client's
// handshake: it must fail cleanly or succeed, never panic or hang.
func FuzzClientHandshake(f *testing.F) {
	good := cat(be64(0x4e42444d41474943), be64(0x49484156454f5054), be16(3),
		be64(0x0003e889045565a9), be32(tOptGo), be32(3), be32(12), be16(0), be64(1<<20), be16(1),
		be64(0x0003e889045565a9), be32(tOptGo), be32(1), be32(0))
	f.Add(good)
	f.Add(good[:30])
	f.Add(cat(be64(0x4e42444d41474943), be64(0x49484156454f5054), be16(3), be64(0x0003e889045565a9), be32(tOptGo), be32(1<<31+6), be32(2), []byte("no")))
	f.Fuzz(func(t *testing.T, server []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			defer b.Close()
			go io.Copy(io.Discard, b)
			b.Write(server)
		}()
		if c, err := nbd.NewClient(a, "x"); err == nil && c.Size() < 0 {
			t.Fatalf("client accepted a negative size %d", c.Size())
		}
	})
}
