package testguest_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/agentlink"
	"github.com/shoal-hci/shoal/hypervisor/testguest"
)

// guestFiles builds the agent guest once per test binary, or skips.
var guestFiles = sync.OnceValues(func() (testguest.Guest, error) {
	dir, err := os.MkdirTemp("", "testguest")
	if err != nil {
		return testguest.Guest{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return testguest.Build(ctx, testguest.Options{Dir: dir})
})

func agentGuest(tb testing.TB) testguest.Guest {
	tb.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		tb.Skip("needs qemu-system-x86_64 (make deps)")
	}
	g, err := guestFiles()
	if errors.Is(err, testguest.ErrNoPackage) {
		tb.Skipf("no Debian kernel or busybox for the test guest: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// vm is one QEMU running the agent guest, with the host's agent link.
type vm struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	console string
	sock    string
	link    *agentlink.Link
	// stopLink stops the link's Run and waits for it.
	stopLink func()
}

// relink replaces the host side of the link, as a daemon restart does.
func (v *vm) relink(tb testing.TB) {
	tb.Helper()
	if v.stopLink != nil {
		v.stopLink()
	}
	l, err := agentlink.New(agentlink.DefaultConfig(v.sock))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	v.link = l
	v.stopLink = func() { cancel(); <-done }
}

// boot starts the guest with the agent port, a user-mode NIC (DHCP gives
// 10.0.2.15) and, if disk is set, that raw disk as /dev/vda. The VM and
// the link are stopped when the test ends.
func boot(tb testing.TB, g testguest.Guest, disk string) *vm {
	tb.Helper()
	dir, err := os.MkdirTemp("", "tg") // short: UNIX socket paths are limited
	if err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	v := &vm{exited: make(chan struct{}), console: filepath.Join(dir, "console.log")}
	args := []string{
		"-name", "agent-guest", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-reboot", "-display", "none", "-vga", "none",
		"-kernel", g.Kernel, "-initrd", g.Initrd, "-append", g.Append,
		"-serial", "file:" + v.console,
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,path=" + sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + testguest.AgentPortName,
		"-nic", "user,model=virtio-net-pci",
	}
	if disk != "" {
		args = append(args, "-drive", "file="+disk+",if=virtio,format=raw")
	}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	log, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		tb.Fatal(err)
	}
	v.cmd.Stdout, v.cmd.Stderr = log, log
	if err := v.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { v.cmd.Wait(); log.Close(); close(v.exited) }()

	v.sock = sock
	v.relink(tb)
	tb.Cleanup(func() {
		v.stopLink()
		v.cmd.Process.Kill()
		<-v.exited
		if tb.Failed() {
			b, _ := os.ReadFile(v.console)
			tb.Logf("guest console:\n%s", b)
			tb.Logf("files kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return v
}

// waitFor waits until cond holds on the link's status.
func (v *vm) waitFor(ctx context.Context, tb testing.TB, what string, cond func(agentlink.Status) bool) agentlink.Status {
	tb.Helper()
	for {
		ch := v.link.Changed()
		if s := v.link.Status(); cond(s) {
			return s
		}
		select {
		case <-ch:
		case <-v.exited:
			tb.Fatalf("QEMU exited waiting for %s", what)
		case <-ctx.Done():
			tb.Fatalf("no %s: %v; status %+v", what, ctx.Err(), v.link.Status())
		}
	}
}

func hasIP(s agentlink.Status, ip netip.Addr) bool {
	for _, a := range s.IPs {
		if a.Prefix.Addr() == ip {
			return true
		}
	}
	return false
}

// TestAgentGuest boots the agent guest under TCG and drives its agent
// from the host: hello, heartbeats, the DHCP address, a reconnect of the
// host side, a freeze and thaw of the ext4 data disk, and a shutdown
// that ends QEMU.
func TestAgentGuest(t *testing.T) {
	g := agentGuest(t)
	disk := ""
	if _, err := exec.LookPath("mkfs.ext4"); err == nil {
		disk = filepath.Join(t.TempDir(), "data.img")
		if out, err := exec.Command("truncate", "-s", "16M", disk).CombinedOutput(); err != nil {
			t.Fatalf("truncate: %v %s", err, out)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", disk).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	v := boot(t, g, disk)
	s := v.waitFor(ctx, t, "first heartbeat", func(s agentlink.Status) bool { return s.Seq > 0 })
	t.Logf("create to first agent heartbeat: %.2f s (TCG)", time.Since(start).Seconds())
	if s.Hostname != "shoal-testguest" || s.BootID == "" || s.AgentVersion == "" {
		t.Errorf("hello: hostname %q, boot id %q, agent version %q", s.Hostname, s.BootID, s.AgentVersion)
	}
	first := s.Seq
	s = v.waitFor(ctx, t, "more heartbeats", func(s agentlink.Status) bool { return s.Seq >= first+2 })
	if s.Uptime <= 0 {
		t.Errorf("uptime %s", s.Uptime)
	}
	guestIP := netip.MustParseAddr("10.0.2.15")
	v.waitFor(ctx, t, "the DHCP address 10.0.2.15", func(s agentlink.Status) bool { return hasIP(s, guestIP) })

	// A new host side (the daemon restarted) learns hello and the
	// addresses again, and the agent's heartbeats go on.
	before := v.link.Status()
	v.relink(t)
	s = v.waitFor(ctx, t, "resync after the host reconnected", func(s agentlink.Status) bool {
		return s.BootID == before.BootID && hasIP(s, guestIP) && s.Seq > 0
	})
	if s.Uptime < before.Uptime {
		t.Errorf("uptime went back from %s to %s across a host reconnect", before.Uptime, s.Uptime)
	}

	wantFS := 0
	if disk != "" {
		wantFS = 1
	}
	n, err := v.link.Freeze(ctx, 30*time.Second)
	if err != nil || n != wantFS {
		t.Errorf("Freeze = %d, %v; want %d", n, err, wantFS)
	}
	n, err = v.link.Thaw(ctx)
	if err != nil || n != wantFS {
		t.Errorf("Thaw = %d, %v; want %d", n, err, wantFS)
	}

	if err := v.link.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-v.exited:
	case <-ctx.Done():
		t.Fatal("QEMU still runs after the guest was asked to power off")
	}
	if code := v.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("QEMU exited %d after a guest power-off, want 0", code)
	}
}

// BenchmarkAgentGuestFirstHeartbeat measures from starting QEMU to the
// host seeing the agent's first heartbeat (TCG), and prints it.
func BenchmarkAgentGuestFirstHeartbeat(b *testing.B) {
	g := agentGuest(b)
	var times []string
	var total time.Duration
	n := 0
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		start := time.Now()
		v := boot(b, g, "")
		v.waitFor(ctx, b, "first heartbeat", func(s agentlink.Status) bool { return s.Seq > 0 })
		d := time.Since(start)
		total += d
		n++
		times = append(times, fmt.Sprintf("%.2fs", d.Seconds()))
		if err := v.link.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		select {
		case <-v.exited:
		case <-ctx.Done():
			b.Fatal("QEMU still runs after shutdown")
		}
		cancel()
	}
	b.ReportMetric(total.Seconds()/float64(n), "s/first-heartbeat")
	b.Logf("create to first heartbeat (TCG): %s", strings.Join(times, " "))
}
