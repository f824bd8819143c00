package chunksvc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// memDevice is a chunkstore.Device in memory.
type memDevice struct {
	mu sync.Mutex
	b  []byte
}

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("write beyond the device")
	}
	return copy(m.b[off:], p), nil
}

func (m *memDevice) Sync() error          { return nil }
func (m *memDevice) Size() (int64, error) { return int64(len(m.b)), nil }
func (m *memDevice) Close() error         { return nil }

// fuzzStore is a small chunk store in memory.
func fuzzStore(t *testing.T) *chunkstore.Store {
	dev := &memDevice{b: make([]byte, 4<<20)}
	if _, err := chunkstore.Format(dev, chunkstore.FormatOptions{DiskID: chunkstore.ID{7}, ChunkSize: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	s, err := chunkstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func encodeReq(r request, data []byte) []byte {
	b := make([]byte, reqHeaderSize)
	r.length = uint32(len(data) + 4*len(r.sums))
	r.encode(b)
	for _, s := range r.sums {
		b = binary.LittleEndian.AppendUint32(b, s)
	}
	return append(b, data...)
}

// FuzzServerStream feeds arbitrary bytes to a server after the TLS
// handshake: it must answer or hang up, never crash, and the store must
// stay consistent (nothing written outside a chunk).
func FuzzServerStream(f *testing.F) {
	key := chunkstore.ChunkKey{VSD: chunkstore.ID{1}, Extent: 2}
	disk := chunkstore.ID{7}
	var seq []byte
	seq = append(seq, encodeReq(request{op: opWrite, id: 1, disk: disk, key: key, epoch: 1, off: 4096, count: 5}, []byte("hello"))...)
	seq = append(seq, encodeReq(request{op: opRead, id: 2, disk: disk, key: key, off: 4090, count: 20}, nil)...)
	seq = append(seq, encodeReq(request{op: opZero, id: 3, disk: disk, key: key, epoch: 1, off: 0, count: 8192}, nil)...)
	seq = append(seq, encodeReq(request{op: opChunks, id: 4, key: key}, nil)...)
	f.Add(seq)
	// A sync right behind a write waits for it (ordered sync).
	f.Add(append(encodeReq(request{op: opWrite, id: 1, disk: disk, key: key, epoch: 1, off: 8192, count: 4}, []byte("sync")),
		encodeReq(request{op: opSync, id: 2}, nil)...))
	f.Add(encodeReq(request{op: opWrite, id: 1, disk: disk, key: key, epoch: 1, off: 256<<10 - 2, count: 5}, []byte("over!")))
	f.Add(encodeReq(request{op: opRead, id: 1, disk: disk, key: key, off: 0, count: MaxData}, nil))
	f.Add(append(encodeReq(request{op: opStat, id: 9}, nil), 0xff, 0xff))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	entries := genreg.AppendEntry(nil, genreg.Entry{Extent: 2, Gen: 1<<32 + 1, Members: [3]chunkstore.ID{disk}})
	f.Add(append(encodeReq(request{op: opRegPut, id: 1, key: key, epoch: 1, count: uint32(len(entries))}, entries),
		encodeReq(request{op: opRegGet, id: 2, key: key, epoch: 1}, nil)...))
	f.Add(encodeReq(request{op: opRegPut, id: 1, key: key, epoch: 0, count: 3}, []byte{1, 2, 3}))
	// Writes with checksums: right ones, then a wrong one in the middle
	// (the stream is not TLS: the server must compute them all).
	blocks := bytes.Repeat([]byte("0123456789abcdef"), 3*chunkstore.BlockSize/16)
	sums := chunkstore.BlockSums(nil, blocks)
	wrong := slices.Clone(sums)
	wrong[1]++
	f.Add(append(encodeReq(request{op: opWrite, flags: flagSums, id: 1, disk: disk, key: key, epoch: 1, off: 0, count: uint32(len(blocks)), sums: sums}, blocks),
		encodeReq(request{op: opWrite, flags: flagSums | flagFUA, id: 2, disk: disk, key: key, epoch: 1, off: 8192, count: uint32(len(blocks)), sums: wrong}, blocks)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		store := fuzzStore(t)
		defer store.Close()
		reg, err := genreg.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		srv := &Server{cfg: ServerConfig{MaxInFlight: 4, Log: slog.New(slog.DiscardHandler)}, local: Local([]*chunkstore.Store{store}).WithRegister(reg)}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.serveStream(context.Background(), server, srv.cfg.Log)
			server.Close()
		}()
		go io.Copy(io.Discard, client)
		client.Write(in)
		client.Close()
		<-done
		if err := store.Check(context.Background()); err != nil {
			t.Fatalf("store inconsistent after %q: %v", in[:min(len(in), 64)], err)
		}
		if err := reg.Check(); err != nil {
			t.Fatalf("register inconsistent after %q: %v", in[:min(len(in), 64)], err)
		}
	})
}
