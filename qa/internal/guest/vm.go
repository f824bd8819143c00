package guest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/qmp"
)

// NIC is one virtio NIC of a guest. It reports 1000 Mb/s full duplex:
// without a speed the bonding driver keeps a NIC down after its link comes
// back in the modes that need one (802.3ad, balance-tlb, balance-alb).
type NIC struct {
	ID   string // device id, for SetLink ("nic0")
	MAC  string
	Port Port // where its frames go
}

// Port gives the QEMU -netdev value (with the given id) of a network
// backend; *l2switch.Port is one.
type Port interface{ Netdev(id string) string }

// Config describes one VM.
type Config struct {
	Name   string
	Dir    string // for the QMP socket, console log and results (short path)
	Kernel string
	Initrd string
	Append string // extra kernel command line
	MemMB  int    // 0: 384
	NICs   []NIC
	QEMU   string // "": qemu-system-x86_64
}

// VM is a running guest.
type VM struct {
	cfg     Config
	cmd     *exec.Cmd
	qmp     *qmp.Client
	exited  chan struct{}
	waitErr error
	// Results is the file the guest's results port writes to; Console
	// is its ttyS0.
	Results, Console string
}

// Start boots a VM under TCG.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(cfg.QEMU); err != nil {
		return nil, fmt.Errorf("%s not found (make deps installs qemu-system-x86): %w", cfg.QEMU, err)
	}
	if cfg.MemMB == 0 {
		cfg.MemMB = 384
	}
	vm := &VM{cfg: cfg, exited: make(chan struct{}),
		Results: filepath.Join(cfg.Dir, cfg.Name+".results"), Console: filepath.Join(cfg.Dir, cfg.Name+".console")}
	qmpSock := filepath.Join(cfg.Dir, cfg.Name+".qmp")
	os.Remove(qmpSock)
	os.Remove(vm.Results)
	args := []string{
		"-name", cfg.Name, "-accel", "tcg", "-m", fmt.Sprint(cfg.MemMB), "-smp", "1",
		"-nodefaults", "-no-reboot", "-display", "none", "-vga", "none",
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd,
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 loglevel=4 no_timer_check " + cfg.Append),
		"-serial", "file:" + vm.Console,
		"-qmp", "unix:" + qmpSock + ",server=on,wait=off",
		"-device", "virtio-serial-pci",
		"-chardev", "file,id=results,path=" + vm.Results,
		"-device", "virtserialport,chardev=results,name=shoal.results",
	}
	for i, n := range cfg.NICs {
		nd := fmt.Sprintf("n%d", i)
		args = append(args, "-netdev", n.Port.Netdev(nd),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,id=%s,mac=%s,speed=1000,duplex=full", nd, n.ID, n.MAC))
	}
	vm.cmd = exec.Command(cfg.QEMU, args...)
	logf, err := os.Create(filepath.Join(cfg.Dir, cfg.Name+".qemu.log"))
	if err != nil {
		return nil, err
	}
	vm.cmd.Stdout, vm.cmd.Stderr = logf, logf
	if err := vm.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.QEMU, err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		logf.Close()
		close(vm.exited)
	}()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	vm.qmp, err = qmp.Dial(qctx, qmpSock)
	if err != nil {
		vm.Stop()
		b, _ := os.ReadFile(filepath.Join(cfg.Dir, cfg.Name+".qemu.log"))
		return nil, fmt.Errorf("%w\n%s", err, b)
	}
	return vm, nil
}

// SetLink connects or disconnects a NIC's virtual cable (QMP set_link):
// the guest sees carrier go away or come back.
func (vm *VM) SetLink(ctx context.Context, nicID string, up bool) error {
	_, err := vm.qmp.Execute(ctx, "set_link", map[string]any{"name": nicID, "up": up})
	return err
}

// Stop kills the VM (if still running) and waits for it.
func (vm *VM) Stop() {
	if vm.qmp != nil {
		vm.qmp.Close()
	}
	select {
	case <-vm.exited:
		return
	default:
	}
	vm.cmd.Process.Kill()
	<-vm.exited
}

// Wait waits for the guest to power off or ctx to end.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.exited:
		var ee *exec.ExitError
		if errors.As(vm.waitErr, &ee) {
			return fmt.Errorf("qemu %s: %w", vm.cfg.Name, vm.waitErr)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Lines returns the results the guest has reported so far.
func (vm *VM) Lines() []string {
	f, err := os.Open(vm.Results)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// WaitLine waits until a reported line starts with prefix and returns it.
func (vm *VM) WaitLine(ctx context.Context, prefix string) (string, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		for _, l := range vm.Lines() {
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s: no %q line reported: %w", vm.cfg.Name, prefix, ctx.Err())
		case <-vm.exited:
			for _, l := range vm.Lines() {
				if strings.HasPrefix(l, prefix) {
					return l, nil
				}
			}
			return "", fmt.Errorf("%s powered off without reporting %q", vm.cfg.Name, prefix)
		case <-t.C:
		}
	}
}

// Tail returns the end of the guest's console, for failure messages.
func (vm *VM) Tail(n int) string {
	b, _ := os.ReadFile(vm.Console)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
