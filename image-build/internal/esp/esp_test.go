package esp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildPutListRemove(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "mmd", "mdir", "mdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (Debian dosfstools, mtools)", tool)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "boot.efi")
	if err := os.WriteFile(src, []byte("MZ fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "esp.img")
	ctx := context.Background()
	if err := Build(ctx, nil, img, 64, []File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Source: src},
		{Path: "loader/loader.conf", Data: []byte("timeout 0\n")},
		{Path: "EFI/Linux/shoal-1.0+3.efi", Source: src},
	}); err != nil {
		t.Fatal(err)
	}
	// Put again: directories exist, files are replaced.
	if err := Put(ctx, nil, img, []File{{Path: "EFI/Linux/shoal-2.0+3.efi", Data: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	got, err := List(ctx, img, "EFI/Linux")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"shoal-1.0+3.efi", "shoal-2.0+3.efi"}, got); diff != "" {
		t.Errorf("EFI/Linux (-want +got)\n%s", diff)
	}
	if err := Remove(ctx, img, "EFI/Linux/shoal-1.0+3.efi"); err != nil {
		t.Fatal(err)
	}
	got, _ = List(ctx, img, "EFI/Linux")
	if diff := cmp.Diff([]string{"shoal-2.0+3.efi"}, got); diff != "" {
		t.Errorf("after remove (-want +got)\n%s", diff)
	}
}
