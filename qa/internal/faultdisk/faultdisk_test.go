package faultdisk

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("no fusermount3 (Debian package fuse3)")
	}
}

// serve starts a server over one 1 MiB disk and returns the disk's path in
// the mount and the control socket.
func serve(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	backing := filepath.Join(dir, "disk1.img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, 1<<20); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	sock := filepath.Join(dir, "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Config{Mountpoint: mnt, ControlSocket: sock, Disks: []Backing{{Name: "disk1", Path: backing}}}, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return filepath.Join(mnt, "disk1"), sock
}

func TestFastFaultModes(t *testing.T) {
	needFUSE(t)
	disk, sock := serve(t)
	ctx := context.Background()
	if err := Ping(ctx, sock); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() != 1<<20 {
		t.Fatalf("stat: size %v err %v, want 1 MiB", fi.Size(), err)
	}
	buf := make([]byte, 4096)
	copy(buf, "hello")
	if _, err := f.WriteAt(buf, 0); err != nil {
		t.Fatalf("write in mode ok: %v", err)
	}
	got := make([]byte, 5)
	if _, err := f.ReadAt(got, 0); err != nil || string(got) != "hello" {
		t.Fatalf("read back %q, %v", got, err)
	}

	if err := SetMode(ctx, sock, "disk1", ModeEIO); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(got, 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("read in mode eio: err %v, want EIO", err)
	}
	if _, err := f.WriteAt(buf, 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("write in mode eio: err %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync in mode eio: err %v, want EIO", err)
	}

	if err := SetMode(ctx, sock, "disk1", ModeENOSPC); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		t.Errorf("overwrite of allocated block in mode enospc: %v, want success", err)
	}
	if _, err := f.WriteAt(buf, 512<<10); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write into a hole in mode enospc: err %v, want ENOSPC", err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<20); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("fallocate in mode enospc: err %v, want ENOSPC", err)
	}
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Errorf("read in mode enospc: %v", err)
	}

	if err := SetMode(ctx, sock, "disk1", ModeOK); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(buf, 512<<10); err != nil {
		t.Errorf("write into a hole after heal: %v", err)
	}
}

func TestFastControlErrors(t *testing.T) {
	needFUSE(t)
	_, sock := serve(t)
	ctx := context.Background()
	if err := SetMode(ctx, sock, "disk9", ModeEIO); !errors.Is(err, ErrBadRequest) {
		t.Errorf("unknown disk: err %v, want ErrBadRequest", err)
	}
	if _, err := request(ctx, sock, "explode"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("bad command: err %v, want ErrBadRequest", err)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{ModeOK, ModeEIO, ModeENOSPC} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseMode("slow"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("ParseMode(slow): %v, want ErrBadRequest", err)
	}
}

// BenchmarkFUSE4K measures 4 KiB reads and writes at QD1 through the FUSE
// file system, the cost the harness adds under scribe's disk I/O.
func BenchmarkFUSE4K(b *testing.B) {
	for _, op := range []string{"write", "read"} {
		b.Run(op, func(b *testing.B) {
			if os.Geteuid() != 0 {
				b.Skip("needs root to mount FUSE")
			}
			dir := b.TempDir()
			backing := filepath.Join(dir, "disk1.img")
			os.WriteFile(backing, nil, 0o600)
			os.Truncate(backing, 64<<20)
			mnt := filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o755)
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- Serve(ctx, Config{Mountpoint: mnt, ControlSocket: filepath.Join(dir, "ctl.sock"), Disks: []Backing{{Name: "disk1", Path: backing}}}, ready)
			}()
			<-ready
			defer func() { cancel(); <-done }()
			f, err := os.OpenFile(filepath.Join(mnt, "disk1"), os.O_RDWR, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 4096)
			const span = 64 << 20 / 4096
			i := 0
			for b.Loop() {
				i++
				off := int64(i%span) * 4096
				if op == "write" {
					_, err = f.WriteAt(buf, off)
				} else {
					_, err = f.ReadAt(buf, off)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "IOPS")
		})
	}
}
