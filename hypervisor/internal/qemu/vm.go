package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/qmp"
)

// maxSocketPath is the longest UNIX socket path (sun_path minus NUL).
const maxSocketPath = 107

// pollInterval is how often status is polled while waiting for QEMU.
const pollInterval = 100 * time.Millisecond

// quitTimeout bounds the wait for QEMU to exit after "quit" before Stop
// kills it.
const quitTimeout = 10 * time.Second

// Status is a VM's observed state.
type Status string

const (
	StatusRunning   Status = "running"
	StatusPaused    Status = "paused"
	StatusStopped   Status = "stopped"   // powered off, quit by Stop, or migrated away
	StatusCrashed   Status = "crashed"   // process gone without Stop, guest panic, internal error
	StatusMigrating Status = "migrating" // outgoing or incoming migration in progress
)

// StartOptions tune Start.
type StartOptions struct {
	// Incoming starts a migration destination (-incoming defer); call
	// Incoming on the VM to open its listener.
	Incoming bool
	// Log receives lifecycle messages; nil discards them.
	Log *slog.Logger
	// ExtraArgs are appended to the command line (benchmarks and
	// experiments; not part of the spec, so Attach cannot check them).
	ExtraArgs []string
}

// VM is a running QEMU process and its QMP connection.
type VM struct {
	dir  string
	spec Spec
	pid  int
	qmp  *qmp.Client
	w    *watcher
	log  *slog.Logger
}

// Start runs spec under QEMU with its runtime files in dir (created if
// needed) and returns once QMP answers. A QEMU already running from dir
// is an error: use Attach. ctx bounds only the start; QEMU keeps running
// after it ends and after the daemon exits.
func Start(ctx context.Context, host Host, dir string, spec Spec, opts StartOptions) (*VM, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if host.QEMU == "" {
		return nil, fmt.Errorf("start vm %s: no QEMU binary in Host (use ProbeHost)", spec.Name)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{QMPSocket(dir), SerialSocket(dir), AgentSocket(dir)} {
		if len(p) > maxSocketPath {
			return nil, fmt.Errorf("start vm %s: socket path %q is longer than %d bytes: use a shorter runtime dir", spec.Name, p, maxSocketPath)
		}
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create vm dir: %w", err)
	}
	if pid, err := readPID(dir); err == nil && isQEMUFor(pid, QMPSocket(dir)) {
		return nil, fmt.Errorf("start vm %s: qemu pid %d already runs from %s: attach to it or stop it first", spec.Name, pid, dir)
	}
	for _, f := range []string{fileQMP, fileSerial, fileAgent, filePID, fileStopped} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("clean vm dir: %w", err)
		}
	}
	specJSON, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, fileSpec), append(specJSON, '\n')); err != nil {
		return nil, err
	}
	args := append(Args(spec, host, dir, opts.Incoming), opts.ExtraArgs...)
	pid, err := startProcess(host.QEMU, args, dir, filepath.Join(dir, fileLog))
	if err != nil {
		return nil, err
	}
	vm := &VM{dir: dir, spec: spec, pid: pid, log: log.With("vm", spec.Name, "pid", pid)}
	fail := func(err error) (*VM, error) {
		kill(pid)
		if vm.w != nil {
			<-vm.w.exited
			vm.w.close()
		}
		if vm.qmp != nil {
			vm.qmp.Close()
		}
		return nil, fmt.Errorf("start vm %s: %w%s", spec.Name, err, logTail(dir))
	}
	if vm.w, err = watchProcess(pid); err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, filePID), []byte(strconv.Itoa(pid)+"\n")); err != nil {
		return fail(err)
	}
	if err := vm.dial(ctx); err != nil {
		return fail(err)
	}
	if err := attachTaps(spec); err != nil {
		return fail(err)
	}
	vm.log.Info("qemu started", "accel", host.Accel, "dir", dir)
	return vm, nil
}

// Attach re-attaches to the QEMU running from dir (after a daemon
// restart): its pid must be alive and be that QEMU, and QMP must answer.
// If want is not nil, the spec QEMU was started with must equal it, or
// Attach returns ErrSpecMismatch and leaves QEMU alone (Attach again
// with nil to stop it). A QEMU that is gone gives ErrNotRunning.
func Attach(ctx context.Context, dir string, want *Spec, log *slog.Logger) (*VM, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := os.ReadFile(filepath.Join(dir, fileSpec))
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", dir, err)
	}
	var spec Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("attach %s: decode %s: %w", dir, fileSpec, err)
	}
	if want != nil && !sameSpec(spec, *want) {
		return nil, fmt.Errorf("attach %s: %w", dir, ErrSpecMismatch)
	}
	pid, err := readPID(dir)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w: %v", dir, ErrNotRunning, err)
	}
	if !isQEMUFor(pid, QMPSocket(dir)) {
		return nil, fmt.Errorf("attach %s: pid %d: %w", dir, pid, ErrNotRunning)
	}
	vm := &VM{dir: dir, spec: spec, pid: pid, log: log.With("vm", spec.Name, "pid", pid)}
	if vm.w, err = watchProcess(pid); err != nil {
		return nil, fmt.Errorf("attach %s: %w", dir, err)
	}
	if err := vm.dial(ctx); err != nil {
		vm.w.close()
		return nil, fmt.Errorf("attach %s: %w", dir, err)
	}
	vm.log.Info("re-attached to qemu", "dir", dir)
	return vm, nil
}

// dial connects QMP, giving up when ctx ends or the process exits.
func (vm *VM) dial(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-vm.w.exited:
			cancel()
		case <-stop:
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	c, err := qmp.Dial(ctx, QMPSocket(vm.dir))
	if err != nil {
		select {
		case <-vm.w.exited:
			return fmt.Errorf("qemu exited: %w", ErrNotRunning)
		default:
		}
		return err
	}
	vm.qmp = c
	return nil
}

// Spec is the spec QEMU was started with.
func (vm *VM) Spec() Spec { return vm.spec }

// Dir is the VM's runtime directory.
func (vm *VM) Dir() string { return vm.dir }

// PID is QEMU's process ID.
func (vm *VM) PID() int { return vm.pid }

// QMP is the VM's QMP client, for commands this package does not wrap.
func (vm *VM) QMP() *qmp.Client { return vm.qmp }

// Exited is closed when the QEMU process has ended.
func (vm *VM) Exited() <-chan struct{} { return vm.w.exited }

// Close releases the QMP connection and the process watcher. QEMU keeps
// running; Attach finds it again.
func (vm *VM) Close() error {
	vm.w.close()
	return vm.qmp.Close()
}

func (vm *VM) gone() bool {
	select {
	case <-vm.w.exited:
		return true
	default:
		return false
	}
}

// Status queries QEMU and maps its run state (and an active migration)
// onto Status.
func (vm *VM) Status(ctx context.Context) (Status, error) {
	if vm.gone() {
		return vm.exitStatus(), nil
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := vm.qmp.ExecuteInto(ctx, "query-status", nil, &st); err != nil {
		if vm.waitGone(ctx) {
			return vm.exitStatus(), nil
		}
		return "", fmt.Errorf("vm %s status: %w", vm.spec.Name, err)
	}
	s := mapRunState(st.Status)
	if s == StatusRunning || s == StatusPaused {
		var mi struct {
			Status string `json:"status"`
		}
		if err := vm.qmp.ExecuteInto(ctx, "query-migrate", nil, &mi); err == nil && migrationActive(mi.Status) {
			s = StatusMigrating
		}
	}
	return s, nil
}

// waitGone gives a QEMU whose QMP connection broke a moment to be seen
// as exited.
func (vm *VM) waitGone(ctx context.Context) bool {
	select {
	case <-vm.qmp.Done():
	default:
		return vm.gone()
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-vm.w.exited:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return vm.gone()
}

func (vm *VM) exitStatus() Status {
	if _, err := os.Stat(filepath.Join(vm.dir, fileStopped)); err == nil {
		return StatusStopped
	}
	return StatusCrashed
}

// mapRunState maps QEMU's RunState (qapi/run-state.json) onto Status.
func mapRunState(s string) Status {
	switch s {
	case "running":
		return StatusRunning
	case "paused", "suspended", "debug", "save-vm", "io-error", "prelaunch":
		// io-error: a disk refused I/O (for example fenced by epoch).
		return StatusPaused
	case "inmigrate", "finish-migrate", "restore-vm", "colo":
		return StatusMigrating
	case "shutdown", "postmigrate":
		return StatusStopped
	default: // guest-panicked, internal-error, watchdog
		return StatusCrashed
	}
}

func migrationActive(s string) bool {
	switch s {
	case "setup", "active", "postcopy-active", "postcopy-paused", "postcopy-recover",
		"pre-switchover", "device", "wait-unplug", "cancelling":
		return true
	}
	return false
}

// Pause stops the vCPUs (fencing: a node that lost the majority pauses
// its VMs). QEMU keeps the VM's memory.
func (vm *VM) Pause(ctx context.Context) error {
	if _, err := vm.qmp.Execute(ctx, "stop", nil); err != nil {
		return fmt.Errorf("pause vm %s: %w", vm.spec.Name, err)
	}
	return nil
}

// Resume continues a paused VM.
func (vm *VM) Resume(ctx context.Context) error {
	if _, err := vm.qmp.Execute(ctx, "cont", nil); err != nil {
		return fmt.Errorf("resume vm %s: %w", vm.spec.Name, err)
	}
	return nil
}

// Stop ends the VM. With grace > 0 it first presses the ACPI power
// button and waits up to grace for the guest to power off; then it asks
// QEMU to quit and, if QEMU does not exit within quitTimeout or ctx,
// kills it. It returns once the process is gone. Afterwards Status
// reports StatusStopped.
func (vm *VM) Stop(ctx context.Context, grace time.Duration) error {
	if vm.gone() {
		return nil
	}
	if grace > 0 {
		if _, err := vm.qmp.Execute(ctx, "system_powerdown", nil); err == nil {
			gctx, cancel := context.WithTimeout(ctx, grace)
			vm.waitState(gctx, "shutdown")
			cancel()
		}
	}
	if err := vm.markStopped(); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, quitTimeout)
	defer cancel()
	vm.qmp.Execute(qctx, "quit", nil) // the reply may be lost as QEMU exits
	select {
	case <-vm.w.exited:
		vm.log.Info("qemu quit")
		return nil
	case <-qctx.Done():
	}
	return vm.Kill(context.WithoutCancel(ctx))
}

// Kill ends QEMU at once (SIGKILL) and waits for it to be gone.
func (vm *VM) Kill(ctx context.Context) error {
	if err := vm.markStopped(); err != nil {
		return err
	}
	if err := kill(vm.pid); err != nil && !vm.gone() {
		return fmt.Errorf("kill vm %s (pid %d): %w", vm.spec.Name, vm.pid, err)
	}
	select {
	case <-vm.w.exited:
		vm.log.Info("qemu killed")
		return nil
	case <-vm.w.stop:
		return fmt.Errorf("kill vm %s (pid %d): signalled, but the VM was closed and cannot watch the exit", vm.spec.Name, vm.pid)
	case <-ctx.Done():
		return fmt.Errorf("kill vm %s (pid %d): %w", vm.spec.Name, vm.pid, ctx.Err())
	}
}

func (vm *VM) markStopped() error {
	if err := os.WriteFile(filepath.Join(vm.dir, fileStopped), nil, 0o600); err != nil {
		return fmt.Errorf("stop vm %s: %w", vm.spec.Name, err)
	}
	return nil
}

// waitState polls until QEMU's run state is want, the process exits or
// ctx ends; it reports whether want (or exit) was reached.
func (vm *VM) waitState(ctx context.Context, want string) bool {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := vm.qmp.ExecuteInto(ctx, "query-status", nil, &st); err == nil && st.Status == want {
			return true
		}
		select {
		case <-vm.w.exited:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// Wait waits until the QEMU process has exited or ctx ends.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.w.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ConsoleTail returns up to n bytes of the end of the serial console log.
func ConsoleTail(dir string, n int64) ([]byte, error) {
	f, err := os.Open(ConsoleLog(dir))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	_, err = f.ReadAt(b, off)
	return b, err
}

func sameSpec(a, b Spec) bool {
	ja, err1 := json.Marshal(a.withDefaults())
	jb, err2 := json.Marshal(b.withDefaults())
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func readPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, filePID))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %q", b)
	}
	return pid, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// logTail is the end of qemu.log, for start errors.
func logTail(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, fileLog))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nqemu.log:\n" + strings.TrimSpace(string(b))
}
