package vmcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// nicCount is how many NICs each node has: netd bonds them
// (active-backup), so pulling one cable keeps the node connected.
const nicCount = 2

// qemuSpec is what a node's QEMU command line is made of.
type qemuSpec struct {
	Name, Dir string // the node's name and directory
	Accel     string
	MemMB     int
	OVMFCode  string
	DataDisks int
	Netdevs   []string // -netdev values, one per NIC (ids n0, n1)
	MACs      []string
	Daemonize bool
}

// Files in a node's directory.
const (
	fBoot    = "boot.qcow2"
	fVars    = "OVMF_VARS.fd"
	fConsole = "console.log"
	fQEMULog = "qemu.log"
	fQMP     = "qmp.sock"
	fAgent   = "ga.sock"
	fPid     = "qemu.pid"
)

func dataDisk(k int) string { return fmt.Sprintf("data%d.qcow2", k+1) }

// qemuArgs is the QEMU command line (without the program name) of a node.
// Disks: virtio, the boot disk first (/dev/vda), then the data disks.
// NICs: virtio-net with ids nic0, nic1 for QMP set_link, 1000 Mb/s full
// duplex (the bonding driver wants a speed).
func qemuArgs(s qemuSpec) []string {
	p := func(f string) string { return filepath.Join(s.Dir, f) }
	cpu := "max"
	if s.Accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-name", s.Name,
		"-machine", "q35", "-accel", s.Accel, "-cpu", cpu, "-m", strconv.Itoa(s.MemMB), "-smp", "1",
		"-nodefaults", "-display", "none", "-vga", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + s.OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + p(fVars),
		"-drive", "if=virtio,format=qcow2,file=" + p(fBoot),
	}
	for k := range s.DataDisks {
		args = append(args, "-drive", "if=virtio,format=qcow2,file="+p(dataDisk(k)))
	}
	for k, nd := range s.Netdevs {
		args = append(args, "-netdev", nd,
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,id=nic%d,mac=%s,speed=1000,duplex=full", k, k, s.MACs[k]))
	}
	args = append(args,
		"-serial", "file:"+p(fConsole),
		"-qmp", "unix:"+p(fQMP)+",server=on,wait=off",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=ga,path="+p(fAgent)+",server=on,wait=off",
		"-device", "virtserialport,chardev=ga,name=org.qemu.guest_agent.0",
		"-pidfile", p(fPid),
	)
	if s.Daemonize {
		args = append(args, "-daemonize")
	}
	return args
}

// startQEMU starts a node's QEMU, which daemonizes: it returns once QEMU
// has opened everything and detached (errors in the command line or the
// disks come back here, with QEMU's message).
func startQEMU(ctx context.Context, qemu, tag string, s qemuSpec) error {
	s.Daemonize = true
	for _, f := range []string{fQMP, fAgent, fPid} {
		os.Remove(filepath.Join(s.Dir, f))
	}
	cmd := exec.CommandContext(ctx, qemu, qemuArgs(s)...)
	cmd.Env = append(os.Environ(), EnvTag+"="+tag)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logf, err := os.OpenFile(filepath.Join(s.Dir, fQEMULog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	logf.WriteString(out.String())
	if err != nil {
		return fmt.Errorf("start QEMU for %s: %w: %s", s.Name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// qemuPid is the pid of a node's QEMU, from its pid file, if it runs.
func qemuPid(nodeDir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(nodeDir, fPid))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	// A recycled pid is not ours: check the tag.
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(env), filepath.Join(nodeDir, fPid)) {
		return 0, false
	}
	return pid, true
}
