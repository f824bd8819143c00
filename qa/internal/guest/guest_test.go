package guest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestInitramfsCarriesScenario builds a scenario initramfs from a fake
// busybox and a kernel without modules, and finds the scenario, the
// report helper and the results-port /init in the archive.
func TestInitramfsCarriesScenario(t *testing.T) {
	dir := t.TempDir()
	bb := filepath.Join(dir, "busybox")
	if err := os.WriteFile(bb, []byte("fake busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	mods := filepath.Join(dir, "modules")
	if err := os.Mkdir(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initrd")
	err := Initramfs{Kernel: Kernel{Modules: mods}, Busybox: bb, Script: "echo scenario-marker-42\n"}.Build(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scenario.sh\x00", "echo scenario-marker-42", "bin/report\x00", `echo "$*" >> "$R"`, "shoal.results", "fake busybox", "TRAILER!!!"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("initramfs lacks %q", want)
		}
	}
}

func TestInitramfsNeedsBusybox(t *testing.T) {
	dir := t.TempDir()
	err := Initramfs{Kernel: Kernel{Modules: dir}, Busybox: filepath.Join(dir, "none"), Script: "true"}.Build(filepath.Join(dir, "initrd"))
	if err == nil {
		t.Fatal("built an initramfs without busybox")
	}
	if _, statErr := os.Stat(filepath.Join(dir, "initrd")); statErr == nil {
		t.Error("a failed build left an initrd behind")
	}
}
