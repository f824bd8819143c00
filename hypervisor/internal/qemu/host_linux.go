package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	kvmGetAPIVersion = 0xAE00 // _IO(KVMIO, 0x00)
	kvmAPIVersion    = 12
	// kvmProbeTimeout bounds the probe boot under KVM; a working KVM
	// panics a rootless kernel in about 3 s.
	kvmProbeTimeout = 15 * time.Second
)

// ProbeOptions tune ProbeHost. The zero value probes qemu-system-x86_64
// on PATH with the host's own kernel from /boot.
type ProbeOptions struct {
	// QEMU is the binary; "" means qemu-system-x86_64 on PATH.
	QEMU string
	// Kernel is a bzImage to boot in the KVM probe; "" means
	// /boot/vmlinuz-$(uname -r) or /boot/vmlinuz. Without any kernel KVM
	// is not used.
	Kernel string
	// Accel, if set, is used as it is: no probe.
	Accel Accel
}

// ProbeHost finds the QEMU binary and what this machine offers it. KVM
// counts only if /dev/kvm answers KVM_GET_API_VERSION and a Linux kernel
// actually boots under -accel kvm to its "no root" panic: /dev/kvm can
// exist, run SeaBIOS fine and still hang a Linux guest (nested
// virtualisation on the build machines does exactly that). Otherwise the
// accelerator is TCG; Host.AccelReason says why.
func ProbeHost(ctx context.Context, opts ProbeOptions) (Host, error) {
	qemuBin := opts.QEMU
	if qemuBin == "" {
		qemuBin = "qemu-system-x86_64"
	}
	bin, err := exec.LookPath(qemuBin)
	if err != nil {
		return Host{}, fmt.Errorf("%w: %v", ErrNoQEMU, err)
	}
	h := Host{QEMU: bin, Accel: AccelTCG}
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil {
		h.Vsock = true
	}
	if opts.Accel != "" {
		h.Accel, h.AccelReason = opts.Accel, "set in the configuration"
		return h, nil
	}
	if err := kvmAPI(); err != nil {
		h.AccelReason = err.Error()
		return h, nil
	}
	kernel := opts.Kernel
	if kernel == "" {
		kernel = hostKernel()
	}
	if kernel == "" {
		h.AccelReason = "no kernel to probe kvm with (set ProbeOptions.Kernel)"
		return h, nil
	}
	if err := probeKVM(ctx, bin, kernel); err != nil {
		h.AccelReason = err.Error()
		return h, nil
	}
	h.Accel = AccelKVM
	h.AccelReason = "a kernel booted under kvm"
	return h, nil
}

func hostKernel() string {
	var uts unix.Utsname
	var cands []string
	if unix.Uname(&uts) == nil {
		cands = append(cands, "/boot/vmlinuz-"+unix.ByteSliceToString(uts.Release[:]))
	}
	for _, p := range append(cands, "/boot/vmlinuz") {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

func kvmAPI() error {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w", err)
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		return fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("KVM API version %d, want %d", v, kvmAPIVersion)
	}
	return nil
}

// probeKVM boots kernel without a root file system under KVM and waits
// for its panic on the serial console.
func probeKVM(ctx context.Context, bin, kernel string) error {
	ctx, cancel := context.WithTimeout(ctx, kvmProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-accel", "kvm", "-machine", "q35", "-m", "128",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-kernel", kernel, "-append", "console=ttyS0 panic=-1 root=/dev/null")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Kernel panic") {
			return nil
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("a kernel under kvm did not reach its panic within %v: kvm hangs here", kvmProbeTimeout)
	}
	return errors.New("qemu under kvm exited before the probe kernel panicked")
}
