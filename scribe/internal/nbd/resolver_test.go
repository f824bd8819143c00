package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// fakeResolver opens MemoryBackends by name and counts opens and releases.
type fakeResolver struct {
	mu       sync.Mutex
	backends map[string]*nbd.MemoryBackend
	refuse   map[string]error
	opened   map[string]int
	released map[string]int
}

func (r *fakeResolver) Resolve(_ context.Context, name string) (nbd.Backend, nbd.ExportOptions, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refuse[name]; err != nil {
		return nil, nbd.ExportOptions{}, nil, err
	}
	b, ok := r.backends[name]
	if !ok {
		return nil, nbd.ExportOptions{}, nil, nbd.ErrUnknownExport
	}
	r.opened[name]++
	return b, nbd.ExportOptions{}, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.released[name]++
	}, nil
}

func (r *fakeResolver) List(context.Context) ([]string, error) {
	return []string{"v1", "v2"}, nil
}

func (r *fakeResolver) counts() (opened, released map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps(r.opened), maps(r.released)
}

func maps(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestResolver(t *testing.T) {
	r := &fakeResolver{
		backends: map[string]*nbd.MemoryBackend{"v1": nbd.NewMemoryBackend(1 << 20), "v2": nbd.NewMemoryBackend(2 << 20)},
		refuse:   map[string]error{"held": errors.New("vsd held is owned by node abc")},
		opened:   map[string]int{}, released: map[string]int{},
	}
	srv, err := nbd.New(nbd.Config{Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddExport("static", nbd.NewMemoryBackend(4096), nbd.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	c, err := nbd.Dial(ctx, "unix", sock, "v2")
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() != 2<<20 {
		t.Errorf("v2 size %d, want %d", c.Size(), 2<<20)
	}
	want := bytes.Repeat([]byte{0xab}, 4096)
	if err := c.WriteAt(want, 8192, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if err := r.backends["v2"].ReadAt(ctx, got, 8192); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("write through a resolved export did not reach its backend: %v", err)
	}
	// Static exports still win and are not resolved.
	cs, err := nbd.Dial(ctx, "unix", sock, "static")
	if err != nil {
		t.Fatal(err)
	}
	cs.Close()
	if _, err := nbd.Dial(ctx, "unix", sock, "missing"); err == nil {
		t.Error("dial of a missing export succeeded")
	}
	if _, err := nbd.Dial(ctx, "unix", sock, "held"); err == nil {
		t.Error("dial of an export the resolver refused succeeded")
	}
	c.Close()

	// Every session's release runs once it ends: stop the server (Serve
	// waits for its sessions) and count.
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	done <- nil
	opened, released := r.counts()
	if diff := cmp.Diff(map[string]int{"v2": 1}, opened); diff != "" {
		t.Errorf("opened (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(opened, released); diff != "" {
		t.Errorf("released differs from opened (-opened +released):\n%s", diff)
	}
}
