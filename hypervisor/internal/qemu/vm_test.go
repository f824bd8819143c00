package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testHost skips without QEMU; tests run under TCG so they behave the
// same on every machine (ProbeHost is tested on its own).
func testHost(t testing.TB) Host {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps installs qemu-system-x86)")
	}
	return Host{QEMU: bin, Accel: AccelTCG}
}

// tinySpec is a VM without disks: SeaBIOS finds nothing to boot and
// idles, which is enough to start, pause, stop and migrate.
func tinySpec(id string, memMiB int) Spec {
	return Spec{ID: id, Name: "test-" + id, UUID: "5c1e8a2b-3d4f-4a6b-8c9d-0e1f2a3b4c5d", MemoryMiB: memMiB,
		NICs: []NIC{{Kind: NICUser}}}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startVM starts a VM and makes sure it is gone after the test.
func startVM(t testing.TB, host Host, dir string, spec Spec, incoming bool) *VM {
	t.Helper()
	vm, err := Start(testCtx(t), host, dir, spec, StartOptions{Incoming: incoming})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Kill(vm.PID(), unix.SIGKILL)
		vm.Close()
	})
	return vm
}

func wantStatus(t *testing.T, vm *VM, want Status) {
	t.Helper()
	got, err := vm.Status(testCtx(t))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if got != want {
		t.Fatalf("status = %s, want %s", got, want)
	}
}

func TestProbeHost(t *testing.T) {
	testHost(t)
	// A kernel that is not there fails the KVM probe at once. The real
	// probe boots a kernel for up to 15 s of a core: set
	// SHOAL_TEST_KVM_PROBE=/path/to/vmlinuz to run it.
	opts := ProbeOptions{Kernel: filepath.Join(t.TempDir(), "no-vmlinuz")}
	if k := os.Getenv("SHOAL_TEST_KVM_PROBE"); k != "" {
		opts.Kernel = k
	}
	h, err := ProbeHost(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	if h.Accel != AccelKVM && h.Accel != AccelTCG {
		t.Errorf("accel = %q", h.Accel)
	}
	_, vsockErr := os.Stat("/dev/vhost-vsock")
	if h.Vsock != (vsockErr == nil) {
		t.Errorf("vsock = %v, but /dev/vhost-vsock stat: %v", h.Vsock, vsockErr)
	}
	t.Logf("host: %+v", h)
	if h.AccelReason == "" {
		t.Error("no reason for the accelerator")
	}
	if h, err := ProbeHost(testCtx(t), ProbeOptions{Accel: AccelKVM}); err != nil || h.Accel != AccelKVM {
		t.Errorf("forced kvm: %+v, %v", h, err)
	}
	if _, err := ProbeHost(testCtx(t), ProbeOptions{QEMU: "no-such-qemu"}); !errors.Is(err, ErrNoQEMU) {
		t.Errorf("missing binary: %v, want ErrNoQEMU", err)
	}
}

// Start, pause, resume, a daemon "restart" (Close + Attach), spec
// mismatch, Stop: the states a daemon sees.
func TestLifecycleAndReattach(t *testing.T) {
	host := testHost(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "vm")
	spec := tinySpec("life", 64)
	vm := startVM(t, host, dir, spec, false)
	wantStatus(t, vm, StatusRunning)

	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, vm, StatusPaused)
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, vm, StatusRunning)

	if _, err := Start(ctx, host, dir, spec, StartOptions{}); err == nil || !strings.Contains(err.Error(), "already runs") {
		t.Fatalf("second Start on a running dir: %v, want refusal", err)
	}

	// The daemon restarts: it lets go of QEMU, which keeps running.
	pid := vm.PID()
	if err := vm.Close(); err != nil {
		t.Fatal(err)
	}
	other := spec
	other.MemoryMiB = 128
	if _, err := Attach(ctx, dir, &other, nil); !errors.Is(err, ErrSpecMismatch) {
		t.Fatalf("Attach with another spec: %v, want ErrSpecMismatch", err)
	}
	vm2, err := Attach(ctx, dir, &spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Close()
	if vm2.PID() != pid {
		t.Errorf("re-attached pid %d, want %d", vm2.PID(), pid)
	}
	wantStatus(t, vm2, StatusRunning)

	// SeaBIOS ignores the ACPI power button: Stop falls back to quit.
	if err := vm2.Stop(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, vm2, StatusStopped)
	if _, err := Attach(ctx, dir, &spec, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Attach after Stop: %v, want ErrNotRunning", err)
	}
	if _, err := os.Stat(ConsoleLog(dir)); err != nil {
		t.Errorf("console log: %v", err)
	}
}

// A QEMU that dies without Stop is crashed, also when the daemon only
// re-attached to it.
func TestCrashDetected(t *testing.T) {
	host := testHost(t)
	ctx := testCtx(t)
	dir := filepath.Join(t.TempDir(), "vm")
	spec := tinySpec("crash", 64)
	vm := startVM(t, host, dir, spec, false)
	vm.Close()
	vm2, err := Attach(ctx, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Close()
	if err := unix.Kill(vm2.PID(), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := vm2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, vm2, StatusCrashed)
}

// QEMU refusing the command line is an error naming QEMU's complaint,
// and leaves no process behind.
func TestStartReportsQEMUErrors(t *testing.T) {
	host := testHost(t)
	dir := filepath.Join(t.TempDir(), "vm")
	spec := tinySpec("bad", 64)
	spec.Disks = []Disk{{File: filepath.Join(t.TempDir(), "absent.img")}}
	_, err := Start(testCtx(t), host, dir, spec, StartOptions{})
	if err == nil || !strings.Contains(err.Error(), "absent.img") {
		t.Fatalf("Start = %v, want an error quoting qemu.log about absent.img", err)
	}
	if pid, perr := readPID(dir); perr == nil && isQEMUFor(pid, QMPSocket(dir)) {
		t.Errorf("qemu pid %d still running after a failed start", pid)
	}
	if _, err := Start(testCtx(t), host, dir, Spec{ID: "x"}, StartOptions{}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Start with an invalid spec: %v, want ErrInvalidSpec", err)
	}
}

// A file disk and a CD-ROM attach (raw images made here).
func TestDisksAttach(t *testing.T) {
	host := testHost(t)
	ctx := testCtx(t)
	tmp := t.TempDir()
	img := filepath.Join(tmp, "disk.img")
	iso := filepath.Join(tmp, "cd.iso")
	for _, p := range []string{img, iso} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spec := tinySpec("disks", 64)
	spec.Disks = []Disk{{File: img}}
	spec.CDROM = iso
	vm := startVM(t, host, filepath.Join(tmp, "vm"), spec, false)
	var blocks []struct {
		Device   string `json:"device"`
		QDev     string `json:"qdev"`
		Inserted *struct {
			File string `json:"file"`
			RO   bool   `json:"ro"`
		} `json:"inserted"`
	}
	if err := vm.QMP().ExecuteInto(ctx, "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, b := range blocks {
		if b.Inserted != nil {
			got[filepath.Base(b.Inserted.File)] = b.Inserted.RO
		}
	}
	if ro, ok := got["disk.img"]; !ok || ro {
		t.Errorf("disk.img attached=%v read-only=%v, want read-write (blocks %+v)", ok, ro, got)
	}
	if ro, ok := got["cd.iso"]; !ok || !ro {
		t.Errorf("cd.iso attached=%v read-only=%v, want read-only (blocks %+v)", ok, ro, got)
	}
}

// An NBD disk on a UNIX socket (qemu-nbd stands in for scribe) attaches
// and its writes reach the export.
func TestNBDDisk(t *testing.T) {
	host := testHost(t)
	nbd, err := exec.LookPath("qemu-nbd")
	if err != nil {
		t.Skip("qemu-nbd not installed (qemu-utils)")
	}
	ctx := testCtx(t)
	tmp := t.TempDir()
	img := filepath.Join(tmp, "vsd.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(tmp, "nbd.sock")
	pidFile := filepath.Join(tmp, "nbd.pid")
	// --fork returns once the socket is listening.
	if out, err := exec.Command(nbd, "--fork", "--persistent", "--pid-file="+pidFile, "--format=raw",
		"--export-name=vsd-1", "--socket="+sock, img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-nbd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if pid, err := readPIDFile(pidFile); err == nil {
			unix.Kill(pid, unix.SIGTERM)
		}
	})
	spec := tinySpec("nbd", 64)
	spec.Disks = []Disk{{NBDSocket: sock, NBDExport: "vsd-1"}}
	vm := startVM(t, host, filepath.Join(tmp, "vm"), spec, false)
	// Write through QEMU's block layer (HMP qemu-io) and find it in the image.
	for _, cmd := range []string{`qemu-io -d /machine/peripheral/vd0/virtio-backend "write -P 0x5a 4096 4096"`, `qemu-io -d /machine/peripheral/vd0/virtio-backend "flush"`} {
		var out string
		if err := vm.QMP().ExecuteInto(ctx, "human-monitor-command", map[string]any{"command-line": cmd}, &out); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) != "" {
			t.Fatalf("%s: %s", cmd, out)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range b[4096:8192] {
		if c != 0x5a {
			t.Fatalf("byte %d of the export is %#x, want 0x5a", 4096+i, c)
		}
	}
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
