package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
)

func TestDetectFormat(t *testing.T) {
	iso := make([]byte, 40000)
	copy(iso[32769:], "CD001")
	tests := []struct {
		name   string
		header []byte
		want   string
	}{
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), hypervisor.FormatQCOW2},
		{"iso", iso, hypervisor.FormatISO},
		{"iso cut short", iso[:32772], hypervisor.FormatRaw},
		{"zeros", make([]byte, 65536), hypervisor.FormatRaw},
		{"tiny", []byte("x"), hypervisor.FormatRaw},
	}
	for _, tt := range tests {
		if got := detectFormat(tt.header); got != tt.want {
			t.Errorf("%s: detectFormat = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestImageNameFor(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/debian-12.4.0-amd64-NETINST.iso": "debian-12.4.0-amd64-netinst.iso",
		"My Disk (1).qcow2":                    "my-disk-1-.qcow2",
		"./.hidden.img":                        "hidden.img",
	} {
		if got := imageNameFor(in); got != want {
			t.Errorf("imageNameFor(%q) = %q, want %q", in, got, want)
		}
	}
}

// memNBD is an in-memory NBD export shared by every connection; it
// records the writes and fails those at or after failAt (if set).
type memNBD struct {
	mu     sync.Mutex
	data   []byte
	writes [][2]int64 // offset, length
	fail   bool       // every write fails
	failAt int64      // writes at or after this offset fail (0: none)
}

type memConn struct{ m *memNBD }

func (c memConn) WriteAt(p []byte, off int64, fua bool) error {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if c.m.fail || c.m.failAt > 0 && off >= c.m.failAt {
		return errors.New("nbd server returned errno 5")
	}
	if off+int64(len(p)) > int64(len(c.m.data)) {
		return fmt.Errorf("write [%d, %d) past the end %d", off, off+int64(len(p)), len(c.m.data))
	}
	copy(c.m.data[off:], p)
	c.m.writes = append(c.m.writes, [2]int64{off, int64(len(p))})
	return nil
}
func (c memConn) Flush() error { return nil }
func (c memConn) Close() error { return nil }
func (c memConn) Abort()       {}

// testImage writes a file of size bytes: random blocks among all-zero
// ones (seeded; the seed is printed).
func testImage(t *testing.T, size int, seed uint64) (string, []byte) {
	t.Helper()
	t.Logf("image seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, size)
	for off := 0; off < size; off += 16 << 10 {
		if r.IntN(3) == 0 {
			end := min(off+16<<10, size)
			for i := off; i < end; i++ {
				b[i] = byte(r.IntN(255) + 1)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestUploaderSparse(t *testing.T) {
	const size = 5<<20 + 12345 // not a block multiple
	path, want := testImage(t, size, uint64(time.Now().UnixNano()))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := &memNBD{data: make([]byte, 6<<20)}
	var progressOut bytes.Buffer
	clock := time.Unix(0, 0)
	u := uploader{src: f, size: size, export: "img",
		progress: newProgress(&progressOut, "upload img", size, func() time.Time { clock = clock.Add(2 * time.Second); return clock }),
		dial:     func(context.Context, string, string) (nbdWriter, error) { return memConn{m}, nil }}
	written, err := u.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.data[:size], want) || !bytes.Equal(m.data[size:], make([]byte, len(m.data)-size)) {
		t.Fatal("the export does not hold the file (zero-padded)")
	}
	if written >= size {
		t.Errorf("wrote %d bytes of a %d-byte file that is mostly zeros: zero blocks were not skipped", written, size)
	}
	for _, w := range m.writes {
		for off := w[0]; off < w[0]+w[1]; off += zeroBlock {
			end := min(off+zeroBlock, w[0]+w[1])
			if bytes.Equal(m.data[off:end], make([]byte, end-off)) {
				t.Errorf("write [%d, %d) carried an all-zero block at %d", w[0], w[0]+w[1], off)
			}
		}
	}
	lines := strings.Split(strings.TrimSpace(progressOut.String()), "\n")
	if len(lines) < 2 || !strings.Contains(lines[len(lines)-1], "100% ") || !strings.Contains(lines[0], "MB/s, ETA") {
		t.Errorf("progress lines (not a terminal: one per 5 s of the fake clock, and a last one at 100%%):\n%s", progressOut.String())
	}

	// A failing server stops the upload with an error.
	m2 := &memNBD{data: make([]byte, 6<<20), failAt: 2 << 20}
	u.dial = func(context.Context, string, string) (nbdWriter, error) { return memConn{m2}, nil }
	if _, err := u.run(context.Background()); err == nil || !strings.Contains(err.Error(), "errno 5") {
		t.Errorf("upload to a failing export: %v, want the write error", err)
	}
}

// The image verbs and vm create --iso/--disk SIZE/--disk image:, and
// vm rm removing the disks made with a VM, against a fake local API
// and an in-memory NBD export.
func TestImageAndVMDiskVerbs(t *testing.T) {
	f := &fakeState{recs: map[string]map[string]string{}}
	sock := f.serve(t)
	exports := map[string]*memNBD{}
	var mu sync.Mutex
	failing := false
	old := dialImageNBD
	t.Cleanup(func() { dialImageNBD = old })
	dialImageNBD = func(_ context.Context, _, export string) (nbdWriter, error) {
		mu.Lock()
		defer mu.Unlock()
		if exports[export] == nil {
			exports[export] = &memNBD{data: make([]byte, 8<<20)}
		}
		exports[export].fail = failing
		return memConn{exports[export]}, nil
	}
	iso := make([]byte, 3<<20)
	copy(iso[32769:], "CD001")
	copy(iso[1<<20:], "boot me")
	dir := t.TempDir()
	isoPath := filepath.Join(dir, "Install.ISO")
	qcowPath := filepath.Join(dir, "tools.qcow2")
	kernel := filepath.Join(dir, "vmlinuz")
	for p, b := range map[string][]byte{isoPath: iso, qcowPath: []byte("QFI\xfb\x00\x00\x00\x03rest"), kernel: []byte("k")} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verbs := []verb.Verb{
		{Name: "image upload", Summary: "s", Run: ImageUpload},
		{Name: "image ls", Summary: "s", Run: ImageLs},
		{Name: "image rm", Summary: "s", Run: ImageRm},
		{Name: "vm create", Summary: "s", Run: VMCreate},
		{Name: "vm info", Summary: "s", Run: VMInfo},
		{Name: "vm rm", Summary: "s", Run: VMRm},
		{Name: "vsd ls", Summary: "s", Run: VSDLs},
	}
	failAt := 2 // the case whose upload fails half way
	cases := []verbCase{
		{[]string{"image", "upload", isoPath}, 0, "uploaded image install.iso: iso, 3M"},
		{[]string{"image", "upload", isoPath}, verb.ExitError, "image install.iso exists already"},
		{[]string{"image", "upload", qcowPath, "--name", "tools"}, verb.ExitError, "stays incomplete"},
		{[]string{"image", "ls"}, 0, "tools        qcow2   12    incomplete"},
		{[]string{"vm", "create", "v0", "--disk", "image:tools"}, verb.ExitError, "image tools is incomplete"},
		{[]string{"image", "upload", qcowPath, "--name", "tools"}, 0, "uploaded image tools: qcow2"},
		{[]string{"image", "ls", "--json"}, 0, `"complete": true`},
		{[]string{"vm", "create", "v0", "--iso", "nope"}, verb.ExitError, `no image named "nope"`},
		{[]string{"vm", "create", "v0", "--iso", "tools"}, verb.ExitError, "qcow2 disk image, not an ISO"},
		{[]string{"vm", "create", "v0", "--disk", "image:install.iso"}, verb.ExitError, "attach it with --iso"},
		{[]string{"vm", "create", "v0", "--disk", "8X"}, verb.ExitUsage, "give a size like 8G"},
		{[]string{"vm", "create", "v0", "--kernel", kernel, "--boot", "disk"}, verb.ExitUsage, "--boot needs --iso"},
		{[]string{"vm", "create", "v1", "--disk", "8G", "--disk", "image:tools", "--iso", "install.iso"}, 0, "created disk v1-disk0"},
		{[]string{"vm", "info", "v1"}, 0, "image:install.iso (boots first)"},
		{[]string{"vm", "info", "v1"}, 0, "image:tools (read-only, qcow2)"},
		{[]string{"vsd", "ls"}, 0, "v1-disk0"},
		{[]string{"vm", "create", "v2", "--disk", "1G"}, 0, "created disk v2-disk0"},
		{[]string{"vm", "create", "v3", "--disk", "vsd:v2-disk0", "--iso", "install.iso"}, 0, "created vm v3"},
		{[]string{"vm", "info", "v3"}, 0, "(boots after the disks)"},
		{[]string{"image", "rm", "install.iso"}, verb.ExitError, "used by vm v1, v3"},
		{[]string{"vm", "rm", "v1"}, verb.ExitError, "shoal vm stop"},
		{[]string{"vm", "rm", "v1", "--force"}, 0, "removed disk v1-disk0"},
		{[]string{"vm", "rm", "v2", "--force", "--keep-disks"}, 0, "kept its disks"},
		{[]string{"vm", "rm", "v3", "--force"}, 0, "removed vm v3"},
		{[]string{"image", "rm", "install.iso"}, 0, "removed image install.iso"},
		{[]string{"image", "rm", "install.iso"}, verb.ExitError, `no image named "install.iso"`},
		{[]string{"vm", "create", "v2", "--disk", "1G"}, verb.ExitError, "a VSD named v2-disk0 exists already"},
	}
	for i := range cases {
		mu.Lock()
		failing = i == failAt
		mu.Unlock()
		dispatchTable(t, verbs, sock, cases[i:i+1])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var left []string
	for k := range f.recs {
		if !strings.HasPrefix(k, "vsd-deleted/") {
			left = append(left, k)
		}
	}
	slices.Sort(left)
	if diff := cmp.Diff([]string{"vsd/tools", "vsd/v2-disk0"}, left); diff != "" {
		t.Errorf("records left (-want +got):\n%s", diff)
	}
	if got := f.recs["vsd/tools"]; got["readonly"] != "1" || got["image"] != "1" || got["format"] != "qcow2" {
		t.Errorf("vsd/tools = %v, want readonly=1 image=1 format=qcow2", got)
	}
}
