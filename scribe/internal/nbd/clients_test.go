package nbd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// serve starts a server with the given exports on a UNIX socket and
// returns the socket path; cleanup stops it and waits.
func serve(t *testing.T, exports map[string]nbd.Backend) string {
	t.Helper()
	srv, err := nbd.New(nbd.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range exports {
		if err := srv.AddExport(name, b, nbd.ExportOptions{MultiConn: true}); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
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
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		os.RemoveAll(dir)
	})
	return sock
}

func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (Debian packages qemu-utils, libnbd-bin, fio): %v", n, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func uri(sock, name string) string { return "nbd+unix:///" + name + "?socket=" + sock }

func TestQemuImgInfo(t *testing.T) {
	needTool(t, "qemu-img")
	sock := serve(t, map[string]nbd.Backend{"v1": nbd.NewMemoryBackend(4 << 30)})
	var info struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
	}
	out := run(t, "qemu-img", "info", "--output=json", uri(sock, "v1"))
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("qemu-img info output %q: %v", out, err)
	}
	if diff := cmp.Diff(int64(4<<30), info.VirtualSize); diff != "" {
		t.Errorf("virtual size (-want +got):\n%s", diff)
	}
}

func TestQemuIOPatterns(t *testing.T) {
	needTool(t, "qemu-io")
	mem := nbd.NewMemoryBackend(64 << 20)
	sock := serve(t, map[string]nbd.Backend{"v1": mem})
	u := uri(sock, "v1")
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M",
		"-c", "write -P 0xcd 1000 3000", "-c", "read -P 0xcd 1000 3000", "-c", "read -P 0xab 0 1000",
		"-c", "write -z 2M 1M", "-c", "read -P 0 2M 1M",
		"-c", "write -f -P 0x11 4M 64k", "-c", "discard 4M 64k", "-c", "read -P 0 4M 64k",
		"-c", "aio_write -P 0x22 8M 4k", "-c", "aio_write -P 0x33 9M 4k", "-c", "aio_flush",
		"-c", "read -P 0x22 8M 4k", "-c", "read -P 0x33 9M 4k", "-c", "flush", u)
	// The data really is in the backend, and the 1 MiB written first is there.
	got := make([]byte, 1<<20)
	if err := mem.ReadAt(context.Background(), got, 0); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xab}, 1<<20)
	copy(want[1000:4000], bytes.Repeat([]byte{0xcd}, 3000))
	if !bytes.Equal(got, want) {
		t.Error("backend content differs from what qemu-io wrote")
	}
	if mem.Flushes() == 0 {
		t.Error("qemu-io flush did not reach the backend")
	}
	// Reading past the end is refused by the server, not by qemu-io.
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", "read 64M 4k", u).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "error") && !strings.Contains(string(out), "Input/output") {
		t.Errorf("read past the end succeeded: %s", out)
	}
}

func TestQemuImgConvertAndMap(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	run(t, "qemu-img", "create", "-f", "raw", src, "16M")
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 2M", "-c", "write -P 0x6b 8M 64k", src)
	mem := nbd.NewMemoryBackend(16 << 20)
	sock := serve(t, map[string]nbd.Backend{"disk": mem})
	u := uri(sock, "disk")
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, u)
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, u)
	var m []struct {
		Start  int64 `json:"start"`
		Length int64 `json:"length"`
		Data   bool  `json:"data"`
		Zero   bool  `json:"zero"`
	}
	out := run(t, "qemu-img", "map", "--output=json", "-f", "raw", u)
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img map %q: %v", out, err)
	}
	var data []int64
	for _, e := range m {
		if e.Data {
			data = append(data, e.Start, e.Length)
		}
	}
	if diff := cmp.Diff([]int64{1 << 20, 2 << 20, 8 << 20, 64 << 10}, data); diff != "" {
		t.Errorf("data extents [start len ...] (-want +got):\n%s\nmap: %s", diff, out)
	}
	if got := mem.AllocatedBytes(); got != 2<<20+64<<10 {
		t.Errorf("convert allocated %d bytes; want only the data (%d)", got, 2<<20+64<<10)
	}
}

func TestNbdinfoAndNbdcopy(t *testing.T) {
	needTool(t, "nbdinfo", "nbdcopy", "qemu-io")
	a, b := nbd.NewMemoryBackend(8<<20), nbd.NewMemoryBackend(8<<20)
	sock := serve(t, map[string]nbd.Backend{"a": a, "b": b})
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x77 2M 128k", uri(sock, "a"))
	out := run(t, "nbdinfo", "--map", uri(sock, "a"))
	want := "0  2097152    3  hole,zero\n 2097152   131072    0  data\n 2228224  6160384    3  hole,zero\n"
	if diff := cmp.Diff(strings.Fields(want), strings.Fields(out)); diff != "" {
		t.Errorf("nbdinfo --map (-want +got):\n%s", diff)
	}
	list := run(t, "nbdinfo", "--list", "--json", "nbd+unix://?socket="+sock)
	for _, name := range []string{`"a"`, `"b"`} {
		if !strings.Contains(list, name) {
			t.Errorf("nbdinfo --list lacks export %s: %s", name, list)
		}
	}
	run(t, "nbdcopy", uri(sock, "a"), uri(sock, "b"))
	ga, gb := make([]byte, 8<<20), make([]byte, 8<<20)
	a.ReadAt(context.Background(), ga, 0)
	b.ReadAt(context.Background(), gb, 0)
	if !bytes.Equal(ga, gb) {
		t.Error("nbdcopy: destination differs from source")
	}
	if got := b.AllocatedBytes(); got != 128<<10 {
		t.Errorf("nbdcopy allocated %d bytes in the destination; want 131072 (sparse copy)", got)
	}
}

func TestFioVerify(t *testing.T) {
	needTool(t, "fio")
	if out, _ := exec.Command("fio", "--enghelp").CombinedOutput(); !bytes.Contains(out, []byte("nbd")) {
		t.Skip("fio was built without the nbd engine")
	}
	sock := serve(t, map[string]nbd.Backend{"v": nbd.NewMemoryBackend(32 << 20)})
	run(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+uri(sock, "v"), "--rw=randwrite",
		"--bs=4k", "--iodepth=16", "--size=32M", "--verify=crc32c", "--do_verify=1",
		"--verify_fatal=1", "--verify_state_save=0", "--output-format=terse")
}

func TestFileBackendThroughClients(t *testing.T) {
	needTool(t, "qemu-io", "nbdinfo")
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 8<<20); err != nil {
		t.Fatal(err)
	}
	fb, err := nbd.OpenFileBackend(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fb.Close() }) // after the server stops (cleanups run last-in first-out)
	sock := serve(t, map[string]nbd.Backend{"f": fb})
	u := uri(sock, "f")
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x42 1M 1M", "-c", "write -f -P 0x43 4M 4k",
		"-c", "write -z -u 1M 512k", "-c", "read -P 0 1M 512k", "-c", "read -P 0x42 1536k 512k", "-c", "flush", u)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	copy(want[1536<<10:2<<20], bytes.Repeat([]byte{0x42}, 512<<10))
	copy(want[4<<20:], bytes.Repeat([]byte{0x43}, 4096))
	if !bytes.Equal(got, want) {
		t.Error("file content differs from what qemu-io wrote")
	}
	out := run(t, "nbdinfo", "--map", u)
	// The file system decides hole granularity; the data must show up.
	if !strings.Contains(out, "data") {
		t.Errorf("nbdinfo --map shows no data: %s", out)
	}
	if !strings.Contains(out, "hole,zero") {
		t.Errorf("nbdinfo --map shows no hole in a sparse file: %s", out)
	}
}
