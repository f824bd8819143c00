package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseMounts(t *testing.T) {
	table := `rootfs / rootfs rw 0 0
proc /proc proc rw,nosuid 0 0
/dev/vda1 / ext4 rw,relatime 0 0
/dev/vda1 /var/bind ext4 rw,relatime 0 0
tmpfs /run tmpfs rw 0 0
/dev/vdb /mnt/my\040data xfs rw,noatime 0 0
/dev/vdc /ro ext4 ro,relatime 0 0
/dev/sr0 /cdrom iso9660 ro 0 0
/dev/fuse /f fuse.sshfs rw 0 0
/dev/loop0 /snap squashfs ro 0 0
short line
`
	got, err := parseMounts(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/", "/mnt/my data"}, got); diff != "" {
		t.Errorf("writable mounts (-want +got):\n%s", diff)
	}
}

// TestGuestFreezeThawLoop freezes a real ext4 on a loop device (root).
func TestGuestFreezeThawLoop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a loop device")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (e2fsprogs)")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("truncate", "-s", "32M", img).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v %s", err, out)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount here: %v %s", err, out)
	}
	t.Cleanup(func() {
		ioctlMount(mnt, fsThaw)
		exec.Command("umount", mnt).Run()
	})
	var dev string
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == mnt {
			dev = f[0]
		}
	}
	table := filepath.Join(dir, "mounts")
	if err := os.WriteFile(table, []byte(dev+" "+mnt+" ext4 rw,relatime 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := Guest{Mounts: table}
	n, err := g.Freeze()
	if err != nil || n != 1 {
		t.Fatalf("Freeze = %d, %v; want 1", n, err)
	}
	// Frozen: a second FIFREEZE is refused with EBUSY.
	if err := ioctlMount(mnt, fsFreeze); err != unix.EBUSY {
		t.Errorf("FIFREEZE on a frozen fs: %v, want EBUSY", err)
	}
	n, err = g.Thaw()
	if err != nil || n != 1 {
		t.Fatalf("Thaw = %d, %v; want 1", n, err)
	}
	n, err = g.Thaw()
	if err != nil || n != 0 {
		t.Errorf("second Thaw = %d, %v; want 0 and no error", n, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "after"), []byte("x"), 0o644); err != nil {
		t.Errorf("write after thaw: %v", err)
	}
}
