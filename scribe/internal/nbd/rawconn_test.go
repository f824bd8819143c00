package nbd_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// TestUnixSocketLargeTransfers moves payloads much bigger than a UNIX
// socket's buffer both ways, so the session's socket reads and writes
// (raw system calls on Linux) come back for the rest after the socket
// was empty or full.
func TestUnixSocketLargeTransfers(t *testing.T) {
	const size = 16 << 20
	sock := serve(t, map[string]nbd.Backend{"x": nbd.NewMemoryBackend(size)})
	c, err := nbd.Dial(context.Background(), "unix", sock, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := c.WriteAt(data, 4096, false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := c.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("8 MiB read back differs from what was written")
	}
	// Many small requests, each a round trip, as a client at queue
	// depth 1 sends them.
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := rnd.Int64N(size/4096) * 4096
		want := make([]byte, 4096)
		copy(want, []byte{byte(off >> 12), byte(off >> 20), 0x5a})
		if err := c.WriteAt(want, off, false); err != nil {
			t.Fatal(err)
		}
		if err := c.ReadAt(got[:4096], off); err != nil || !bytes.Equal(got[:4096], want) {
			t.Fatalf("read at %d: %v, first bytes %x; want %x", off, err, got[:3], want[:3])
		}
	}
}

// TestUnixSocketHandshakeDeadline: the handshake deadline holds on a
// real socket too (the session reads it through syscall.RawConn).
func TestUnixSocketHandshakeDeadline(t *testing.T) {
	srv, err := nbd.New(nbd.Config{Now: func() time.Time { return time.Unix(0, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddExport("x", nbd.NewMemoryBackend(4096), nbd.ExportOptions{})
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The deadline is long past and the client never answers the hello.
	if err := srv.ServeConn(context.Background(), conn); err == nil {
		t.Error("handshake past its deadline succeeded")
	}
}
