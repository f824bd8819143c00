package hypervisor

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
)

// syncBuffer is a log sink safe for the daemon's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A daemon started while a VM's QEMU runs re-attaches to it, and the
// VM keeps running after the daemon stops.
func TestRunReattachesAndLeavesQEMURunning(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps installs qemu-system-x86)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := DefaultConfig()
	cfg.NodeID = "3f2a"
	cfg.Accel = "tcg"
	cfg.RuntimeDir = filepath.Join(t.TempDir(), "vm")
	cfg.ConsoleListen = "" // no console service on the host's port 7950
	id := strings.Repeat("ab", 16)
	dir := filepath.Join(cfg.RuntimeDir, id)
	spec := qemu.Spec{ID: id, Name: "web1", MemoryMiB: 64}
	vm, err := qemu.Start(ctx, qemu.Host{QEMU: bin, Accel: qemu.AccelTCG}, dir, spec, qemu.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(vm.PID(), syscall.SIGKILL)
	vm.Close() // the "previous daemon" lets go

	var logs syncBuffer
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(runCtx) }()
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for !strings.Contains(logs.String(), "re-attached") {
		select {
		case <-ctx.Done():
			t.Fatalf("no re-attach logged:\n%s", logs.String())
		case <-tk.C:
		}
	}
	if !strings.Contains(logs.String(), "status=running") {
		t.Errorf("re-attach did not log the VM running:\n%s", logs.String())
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	// The daemon is gone; QEMU is not.
	vm2, err := qemu.Attach(ctx, dir, &spec, nil)
	if err != nil {
		t.Fatalf("QEMU did not survive the daemon: %v", err)
	}
	defer vm2.Close()
	if st, err := vm2.Status(ctx); err != nil || st != qemu.StatusRunning {
		t.Errorf("after the daemon stopped: %s, %v; want running", st, err)
	}
}
