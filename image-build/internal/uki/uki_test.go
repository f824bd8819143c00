package uki

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const hostStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

func TestBuildAddsSections(t *testing.T) {
	for _, tool := range []string{"objcopy", "objdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (Debian binutils)", tool)
		}
	}
	if _, err := os.Stat(hostStub); err != nil {
		t.Skipf("no EFI stub at %s (Debian systemd-boot-efi)", hostStub)
	}
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, bytes.Repeat([]byte("k"), 4096), 0o644)
	os.WriteFile(initrd, bytes.Repeat([]byte("i"), 8192), 0o644)
	out := filepath.Join(dir, "uki.efi")
	err := Build(context.Background(), nil, Spec{Stub: hostStub, Kernel: kernel, Initrd: initrd, OSRel: []byte("ID=shoal\n"), Cmdline: "root=PARTLABEL=shoal-root-a ro"}, out)
	if err != nil {
		t.Fatal(err)
	}
	dump, err := exec.Command("objdump", "-h", out).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []string{".osrel", ".cmdline", ".linux", ".initrd"} {
		if !strings.Contains(string(dump), sec) {
			t.Errorf("UKI lacks section %s:\n%s", sec, dump)
		}
	}
	cmdline, err := exec.Command("objcopy", "-O", "binary", "--only-section=.cmdline", out, "/dev/stdout").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimRight(string(cmdline), "\x00"); got != "root=PARTLABEL=shoal-root-a ro" {
		t.Errorf(".cmdline = %q", got)
	}
}

func TestMissingInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "uki.efi")
	if err := Build(context.Background(), nil, Spec{Stub: filepath.Join(dir, "nope")}, out); err == nil {
		t.Fatal("missing stub accepted")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed build left a UKI")
	}
}
