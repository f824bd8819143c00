package qemu

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/testguest"
)

// guestInit prints a tick on the serial console five times a second, so
// a test can tell whether the guest runs and whether its memory (the
// counter) survived a migration. With shoal.poweroff on the command line
// it powers off instead.
const guestInit = `#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
if grep -q shoal.poweroff /proc/cmdline; then echo guest-poweroff; poweroff -f; fi
i=0
while :; do echo "tick $i"; i=$((i+1)); sleep 0.2; done
`

var (
	guestOnce           sync.Once
	guestKernel, guestI string
	guestErr            error
)

// guestSpec returns a spec booting the test guest (Debian kernel +
// busybox initramfs), or skips when the packages are not cached and
// cannot be fetched.
func guestSpec(t *testing.T, id string, extraAppend string) Spec {
	t.Helper()
	testHost(t)
	guestOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cache := testguest.DefaultCacheDir()
		k, err := testguest.FetchKernel(ctx, cache)
		if err != nil {
			guestErr = err
			return
		}
		bb, err := testguest.FetchBusybox(ctx, cache)
		if err != nil {
			guestErr = err
			return
		}
		dir, err := os.MkdirTemp("", "shoal-qemu-guest")
		if err != nil {
			guestErr = err
			return
		}
		guestI = filepath.Join(dir, "initrd")
		guestKernel = k.Vmlinuz
		guestErr = testguest.Initramfs{Kernel: k, Busybox: bb, Init: guestInit}.Build(guestI)
	})
	if guestErr != nil {
		t.Skipf("test guest unavailable (needs the Debian kernel and busybox-static in %s, or root to fetch them): %v", testguest.DefaultCacheDir(), guestErr)
	}
	return Spec{ID: id, Name: "guest-" + id, MemoryMiB: 192, Kernel: guestKernel, Initrd: guestI,
		Append: strings.TrimSpace("console=ttyS0 quiet panic=-1 " + extraAppend)}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if guestI != "" {
		os.RemoveAll(filepath.Dir(guestI))
	}
	os.Exit(code)
}

// ticks are the numbers of the "tick N" lines on a VM's console.
func ticks(dir string) []int {
	f, err := os.Open(ConsoleLog(dir))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "tick "); ok {
			if v, err := strconv.Atoi(n); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// lastTick is the last tick on a VM's console, or -1.
func lastTick(dir string) int {
	if t := ticks(dir); len(t) > 0 {
		return t[len(t)-1]
	}
	return -1
}

// firstTick is the first tick on a VM's console, or -1.
func firstTick(dir string) int {
	if t := ticks(dir); len(t) > 0 {
		return t[0]
	}
	return -1
}

// waitTick waits until the console shows a tick above min.
func waitTick(t *testing.T, ctx context.Context, dir string, min int) int {
	t.Helper()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for {
		if n := lastTick(dir); n > min {
			return n
		}
		select {
		case <-ctx.Done():
			tail, _ := ConsoleTail(dir, 2000)
			t.Fatalf("no tick above %d on the console of %s: %v\n%s", min, dir, ctx.Err(), tail)
		case <-tk.C:
		}
	}
}

// A guest that powers off is stopped, not crashed: QEMU waits in the
// shutdown state (-no-shutdown) until Stop makes it quit.
func TestGuestPowerOff(t *testing.T) {
	spec := guestSpec(t, "poweroff", "shoal.poweroff")
	ctx := testCtx(t)
	vm := startVM(t, testHost(t), filepath.Join(t.TempDir(), "vm"), spec, false)
	tk := time.NewTicker(200 * time.Millisecond)
	defer tk.Stop()
	for {
		st, err := vm.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st == StatusStopped {
			break
		}
		if st != StatusRunning {
			t.Fatalf("status %s while the guest boots", st)
		}
		select {
		case <-ctx.Done():
			tail, _ := ConsoleTail(vm.Dir(), 2000)
			t.Fatalf("guest did not power off: %v\n%s", ctx.Err(), tail)
		case <-tk.C:
		}
	}
	if vm.gone() {
		t.Error("QEMU exited on guest power-off; want it waiting (-no-shutdown)")
	}
	if err := vm.Stop(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, vm, StatusStopped)
}

// A running guest migrates with its memory: the tick counter goes on
// from where it was. One boot, two hops: pre-copy, then post-copy.
func TestGuestMigrates(t *testing.T) {
	spec := guestSpec(t, "mig", "")
	host := testHost(t)
	ctx := testCtx(t)
	tmp := t.TempDir()
	src := startVM(t, host, filepath.Join(tmp, "hop0"), spec, false)
	waitTick(t, ctx, src.Dir(), 3)
	for hop, postcopy := range []bool{false, true} {
		before := lastTick(src.Dir())
		dst := startVM(t, host, filepath.Join(tmp, fmt.Sprint("hop", hop+1)), spec, true)
		srcTLS, dstTLS := tlsPair(t)
		uri, err := dst.Incoming(ctx, "127.0.0.1:0", postcopy, dstTLS)
		if err != nil {
			t.Fatal(err)
		}
		var atSwitch int
		info, err := src.Migrate(ctx, uri, MigrateOptions{Postcopy: postcopy, TLS: srcTLS,
			Switchover: func(context.Context) error { atSwitch = lastTick(src.Dir()); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := dst.WaitIncoming(ctx); err != nil || st != StatusRunning {
			t.Fatalf("hop %d: destination %s, %v", hop+1, st, err)
		}
		if err := src.Stop(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if atSwitch < before {
			t.Errorf("hop %d: source console at switchover shows tick %d, before migration %d", hop+1, atSwitch, before)
		}
		after := waitTick(t, ctx, dst.Dir(), -1)
		first := firstTick(dst.Dir())
		if first < atSwitch || first > atSwitch+25 {
			t.Errorf("hop %d: destination's first tick %d, source's last %d: want the count to go on", hop+1, first, atSwitch)
		}
		if info.Postcopy != postcopy {
			t.Errorf("hop %d: post-copy happened: %v, want %v", hop+1, info.Postcopy, postcopy)
		}
		t.Logf("hop %d: ticks: source %d at switchover, destination from %d (now %d); total %v, downtime %v, %d MiB sent, post-copy %v",
			hop+1, atSwitch, first, after, info.Total, info.Downtime, info.Transferred>>20, info.Postcopy)
		src = dst
	}
}
