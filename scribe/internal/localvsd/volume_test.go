package localvsd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// newStore formats a sparse file of size bytes in dir; cleanup checks and
// closes the store.
func newStore(t testing.TB, dir string, size int64, opts ...chunkstore.FileOptions) *chunkstore.Store {
	t.Helper()
	path, err := os.CreateTemp(dir, "disk")
	if err != nil {
		t.Fatal(err)
	}
	path.Close()
	return newStoreAt(t, path.Name(), size, opts...)
}

func newStoreAt(t testing.TB, path string, size int64, opts ...chunkstore.FileOptions) *chunkstore.Store {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	dev, err := chunkstore.OpenFile(path, append(opts, chunkstore.FileOptions{})[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chunkstore.Format(dev, chunkstore.FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := chunkstore.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(context.Background()); err != nil {
			t.Errorf("chunk store check: %v", err)
		}
		s.Close()
	})
	return s
}

// serveVolume serves v as export name on a fresh UNIX socket.
func serveVolume(t testing.TB, name string, v nbd.Backend) string {
	t.Helper()
	srv, err := nbd.New(nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddExport(name, v, nbd.ExportOptions{MultiConn: true}); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vsd")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "scribe.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait(); os.RemoveAll(dir) })
	return sock
}

func needTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (Debian packages qemu-utils, libnbd-bin, fio): %v", n, err)
		}
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func TestVolumeThroughRealClients(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io", "nbdinfo", "fio")
	store := newStore(t, t.TempDir(), 256<<20)
	v, err := New(Config{Store: store, VSD: chunkstore.ID{0x11}, Size: 4 << 30, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	sock := serveVolume(t, "v1", v)
	u := "nbd+unix:///v1?socket=" + sock

	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	json.Unmarshal([]byte(run(t, "qemu-img", "info", "--output=json", u)), &info)
	if info.VirtualSize != 4<<30 {
		t.Errorf("qemu-img info: virtual size %d; want 4 GiB", info.VirtualSize)
	}
	run(t, "qemu-io", "-f", "raw",
		"-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M",
		"-c", "write -P 0xcd 3M 5000", "-c", "read -P 0xcd 3M 5000",
		"-c", "write -f -P 0xef 1G 128k", "-c", "read -P 0xef 1G 128k",
		"-c", "write -z -u 0 64k", "-c", "read -P 0 0 64k", "-c", "read -P 0xab 64k 960k",
		"-c", "discard 3M 1M", "-c", "read -P 0 3M 1M", "-c", "flush", u)
	if got := store.Stats().Used; got != 2 {
		t.Errorf("chunks used after writing 2 extents and discarding one: %d; want 2 (thin provisioning)", got)
	}
	out := run(t, "nbdinfo", "--map", u)
	want := []string{
		"0", "65536", "3", "hole,zero",
		"65536", "983040", "0", "data",
		"1048576", "1072693248", "3", "hole,zero",
		"1073741824", "131072", "0", "data",
		"1073872896", "3221094400", "3", "hole,zero",
	}
	if diff := cmp.Diff(want, strings.Fields(out)); diff != "" {
		t.Errorf("nbdinfo --map (-want +got):\n%s", diff)
	}
	var m []struct {
		Start int64 `json:"start"`
		Data  bool  `json:"data"`
	}
	json.Unmarshal([]byte(run(t, "qemu-img", "map", "--output=json", "-f", "raw", u)), &m)
	var data []int64
	for _, e := range m {
		if e.Data {
			data = append(data, e.Start)
		}
	}
	if diff := cmp.Diff([]int64{65536, 1 << 30}, data); diff != "" {
		t.Errorf("qemu-img map data starts (-want +got):\n%s", diff)
	}
	run(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+u, "--rw=randwrite", "--bs=4k",
		"--iodepth=16", "--offset=2G", "--size=16M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
		"--output-format=terse")
	// A stale owner (older epoch) cannot write where the current one has.
	old, _ := New(Config{Store: store, VSD: chunkstore.ID{0x11}, Size: 4 << 30, Epoch: 0})
	if err := old.WriteAt(context.Background(), []byte("stale"), 0, false); !errors.Is(err, nbd.ErrReadOnly) {
		t.Errorf("write at an older epoch: %v; want refused", err)
	}
}

func TestVolumeRangeChecks(t *testing.T) {
	store := newStore(t, t.TempDir(), 32<<20)
	v, err := New(Config{Store: store, VSD: chunkstore.ID{1}, Size: 3<<20 + 512})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.WriteAt(ctx, make([]byte, 1024), 3<<20, false); !errors.Is(err, nbd.ErrInvalid) {
		t.Errorf("write across the end: %v; want ErrInvalid", err)
	}
	p := bytes.Repeat([]byte{5}, 2<<20)
	if err := v.WriteAt(ctx, p, 1<<19, true); err != nil { // spans 3 extents
		t.Fatal(err)
	}
	got := make([]byte, 2<<20)
	if err := v.ReadAt(ctx, got, 1<<19); err != nil || !bytes.Equal(got, p) {
		t.Errorf("read across extents: %v, equal %v", err, bytes.Equal(got, p))
	}
	if _, err := New(Config{Store: store, Size: 1}); err == nil {
		t.Error("New accepted a zero VSD ID")
	}
}

func TestRottenBlockIsAnIOError(t *testing.T) {
	needTool(t, "qemu-io")
	path := filepath.Join(t.TempDir(), "disk")
	store := newStoreAt(t, path, 64<<20)
	vsd := chunkstore.ID{0x77}
	v, err := New(Config{Store: store, VSD: vsd, Size: 16 << 20, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	sock := serveVolume(t, "v", v)
	u := "nbd+unix:///v?socket=" + sock
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 2M 64k", "-c", "flush", u)
	info, ok := store.Info(chunkstore.ChunkKey{VSD: vsd, Extent: 2})
	if !ok {
		t.Fatal("no chunk for extent 2 after a write")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	sb := store.Superblock()
	f.WriteAt([]byte{0x5b}, int64(sb.DataOffset)+int64(info.Slot)*int64(sb.ChunkSize)+8192+7)
	f.Close()
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", "read -P 0x5a 2M 64k", u).CombinedOutput()
	if !strings.Contains(string(out), "Input/output error") {
		t.Errorf("read of a rotten block: err %v, output %s; want an I/O error", err, out)
	}
	// The rest of the extent still reads.
	run(t, "qemu-io", "-f", "raw", "-c", "read -P 0x5a 2M 8k", "-c", "read -P 0x5a 2060k 52k", u)
	// Rewriting the block heals it, so the cleanup Check passes.
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 2056k 4k", "-c", "read -P 0x5a 2M 64k", u)
}
