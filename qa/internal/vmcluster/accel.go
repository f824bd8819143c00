package vmcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// probeTimeout bounds the KVM probe: a working KVM gets a kernel to its
// panic in well under a second.
const probeTimeout = 20 * time.Second

// ProbeAccel says whether QEMU really works with KVM here: /dev/kvm exists
// on machines where QEMU under KVM aborts or hangs (docs/image.md), so it
// boots kernel (with no root file system) under KVM and wants to see the
// kernel's panic on the serial console within probeTimeout. It returns
// "kvm" or "tcg", and why. The answer is cached for this boot of the host
// in /run/shoal-qa-accel. SHOAL_QA_ACCEL=tcg|kvm overrides it (read by
// the callers, not here).
func ProbeAccel(ctx context.Context, qemu, kernel string) (string, string) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg", "no /dev/kvm"
	}
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	cache := "/run/shoal-qa-accel"
	if b, err := os.ReadFile(cache); err == nil {
		if id, accel, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok && id == strings.TrimSpace(string(bootID)) {
			return accel, "probed earlier this boot (" + cache + ")"
		}
	}
	if kernel == "" {
		return "tcg", "no kernel to probe KVM with"
	}
	dir, err := os.MkdirTemp("", "shoal-kvm-probe")
	if err != nil {
		return "tcg", err.Error()
	}
	defer os.RemoveAll(dir)
	serial := filepath.Join(dir, "serial")
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(pctx, qemu, "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "256",
		"-nodefaults", "-display", "none", "-no-reboot", "-kernel", kernel,
		"-append", "console=ttyS0 panic=-1", "-serial", "file:"+serial)
	out, _ := cmd.CombinedOutput()
	b, _ := os.ReadFile(serial)
	accel, why := "tcg", "QEMU under KVM did not boot a kernel within "+probeTimeout.String()+": "+strings.TrimSpace(string(out))
	if strings.Contains(string(b), "Kernel panic") {
		accel, why = "kvm", "QEMU under KVM boots a kernel"
	}
	if ctx.Err() == nil {
		os.WriteFile(cache, []byte(strings.TrimSpace(string(bootID))+" "+accel+"\n"), 0o644)
	}
	return accel, why
}
