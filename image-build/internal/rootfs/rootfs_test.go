package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKey(t *testing.T) {
	a := BaseSpec{Suite: "bookworm", Mirror: "m", Packages: []string{"systemd", "kmod"}}
	b := a
	b.Packages = []string{"kmod", "systemd"}
	if a.Key() != b.Key() {
		t.Error("package order changes the key")
	}
	c := a
	c.Packages = []string{"kmod", "systemd", "qemu-utils"}
	d := a
	d.InitrdModules = []string{"squashfs"}
	for _, other := range []BaseSpec{c, d} {
		if other.Key() == a.Key() {
			t.Errorf("spec %+v has the key of %+v", other, a)
		}
	}
}

const fakeShoal = `#!/bin/sh
case "$1" in
help) echo '[{"name":"help","daemon":false},{"name":"peer","daemon":true},{"name":"install-units","daemon":false},{"name":"netd","daemon":true}]' ;;
install-units) shift; echo "$@" > "$2/installed" ;;
*) exit 2 ;;
esac
`

func TestStageNeverWritesThroughTheBase(t *testing.T) {
	dir := t.TempDir()
	base := Base{Dir: dir, Root: filepath.Join(dir, "root")}
	for rel, content := range map[string]string{
		"usr/bin/shoal":      "old binary",
		"usr/lib/os-release": "ID=debian\n",
		"usr/bin/other":      "untouched",
	} {
		p := filepath.Join(base.Root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shoal := filepath.Join(dir, "shoal")
	if err := os.WriteFile(shoal, []byte(fakeShoal), 0o755); err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(dir, "stage")
	err := Stage(context.Background(), nil, base, Layer{Shoal: shoal, UpdateKey: []byte("key\n"), OSRelease: []byte("ID=shoal\n")}, stage)
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	got := map[string]string{
		"base shoal":      read(filepath.Join(base.Root, "usr/bin/shoal")),
		"base os-release": read(filepath.Join(base.Root, "usr/lib/os-release")),
		"stage shoal":     read(filepath.Join(stage, "usr/bin/shoal")),
		"stage os":        read(filepath.Join(stage, "usr/lib/os-release")),
		"stage key":       read(filepath.Join(stage, "usr/share/shoal/update.pub")),
		"stage other":     read(filepath.Join(stage, "usr/bin/other")),
		"install-units":   read(filepath.Join(stage, "installed")),
	}
	want := map[string]string{
		"base shoal":      "old binary",
		"base os-release": "ID=debian\n",
		"stage shoal":     fakeShoal,
		"stage os":        "ID=shoal\n",
		"stage key":       "key\n",
		"stage other":     "untouched",
		"install-units":   "--root " + stage + " --daemons peer,netd\n",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
