package gptdisk

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildAndRead(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk not found (Debian fdisk)")
	}
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	data := append(bytes.Repeat([]byte{0}, 2<<20), []byte("squashfs!")...) // a zero MiB stays a hole
	if err := os.WriteFile(content, data, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	layout, err := Build(context.Background(), nil, img, []Partition{
		{Label: "shoal-esp", Type: TypeESP, SizeMiB: 4},
		{Label: "shoal-root-a", Type: TypeRootX8664, SizeMiB: 8, Content: content},
		{Label: "shoal-root-b", Type: TypeRootX8664, SizeMiB: 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Layout{
		{Label: "shoal-esp", Offset: 1 << 20, Len: 4 << 20},
		{Label: "shoal-root-a", Offset: 5 << 20, Len: 8 << 20},
		{Label: "shoal-root-b", Offset: 13 << 20, Len: 8 << 20},
	}
	if diff := cmp.Diff(want, layout); diff != "" {
		t.Errorf("layout (-want +got)\n%s", diff)
	}
	read, err := Read(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, read); diff != "" {
		t.Errorf("sfdisk reads (-want +got)\n%s", diff)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != 22<<20 {
		t.Errorf("image is %d bytes, want 22 MiB", len(b))
	}
	if got := b[5<<20 : 5<<20+len(data)]; !bytes.Equal(got, data) {
		t.Error("slot A content not at its offset")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err == nil && st.Blocks*512 > 4<<20 {
		t.Errorf("image allocates %d bytes; the zero MiBs should be holes", st.Blocks*512)
	}
}

func TestContentTooBig(t *testing.T) {
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	if err := os.WriteFile(content, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	if _, err := Build(context.Background(), nil, img, []Partition{{Label: "x", Type: TypeLinux, SizeMiB: 1, Content: content}}); err == nil {
		t.Fatal("content bigger than its partition accepted")
	}
	if _, err := os.Stat(img); err == nil {
		t.Error("a refused build left an image behind")
	}
}
