package rawsock_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/scribe/internal/rawsock"
)

// pair returns the two ends of a connected socket of network.
func pair(t *testing.T, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestTransfers sends 8 MiB each way at once through wrapped sockets
// (far more than a socket buffer: reads and writes park and resume),
// then checks EOF after the peer closes.
func TestTransfers(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			a, b := pair(t, network)
			ra, rb := rawsock.Wrap(a), rawsock.Wrap(b)
			if _, ok := ra.(*rawsock.Conn); !ok {
				t.Fatalf("Wrap of a %s socket gave %T", network, ra)
			}
			data := make([]byte, 8<<20)
			for i := range data {
				data[i] = byte(i*7 + i>>12)
			}
			type result struct {
				got []byte
				err error
			}
			gotA, gotB := make(chan result, 1), make(chan result, 1)
			go func() { b, err := io.ReadAll(io.LimitReader(ra, int64(len(data)))); gotA <- result{b, err} }()
			go func() { b, err := io.ReadAll(io.LimitReader(rb, int64(len(data)))); gotB <- result{b, err} }()
			errs := make(chan error, 2)
			go func() { _, err := ra.Write(data); errs <- err }()
			go func() { _, err := rb.Write(data); errs <- err }()
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			for _, ch := range []chan result{gotA, gotB} {
				r := <-ch
				if r.err != nil || !bytes.Equal(r.got, data) {
					t.Fatalf("read %d bytes, %v; want the 8 MiB written", len(r.got), r.err)
				}
			}
			b.Close()
			if n, err := ra.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Errorf("read after the peer closed: %d, %v; want 0, EOF", n, err)
			}
		})
	}
}

// TestDeadline: a deadline set on the net.Conn ends a parked Read.
func TestDeadline(t *testing.T) {
	a, _ := pair(t, "unix")
	r := rawsock.Wrap(a)
	a.SetReadDeadline(time.Unix(1, 0)) // long past
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v; want os.ErrDeadlineExceeded", err)
	}
}

// TestNotASocket: what is not a socket comes back unwrapped.
func TestNotASocket(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	for _, rw := range []io.ReadWriter{pr, c1} {
		if got := rawsock.Wrap(rw); got != rw {
			t.Errorf("Wrap(%T) = %T; want it unchanged", rw, got)
		}
	}
}
