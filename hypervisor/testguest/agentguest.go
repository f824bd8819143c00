package testguest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/shoal-hci/shoal/hypervisor/internal/agent"
)

// AgentPortName is the virtio-serial port the guest's shoal-agent opens:
// give QEMU `-device virtserialport,chardev=ID,name=AgentPortName`.
const AgentPortName = agent.PortName

// AgentModules are the modules the agent guest loads: virtio PCI,
// console (virtio-serial), net and block, ext4 (for a data disk) and
// vsock.
var AgentModules = []string{"virtio_pci", "virtio_console", "virtio_net", "virtio_blk",
	"crc32c_generic", "ext4", "vsock", "vmw_vsock_virtio_transport"}

// Guest is a bootable test guest: give QEMU -kernel Kernel -initrd Initrd
// -append Append. Append has no_timer_check: under TCG on a loaded host
// the kernel's IO-APIC timer check fails and panics the boot.
type Guest struct {
	Kernel string
	Initrd string
	Append string
}

// Options say how to build the agent guest.
type Options struct {
	// Dir receives the initrd (and the agent binary when built here).
	Dir string
	// CacheDir holds the Debian packages. Zero: DefaultCacheDir().
	CacheDir string
	// Agent is a static shoal-agent binary. Zero: built with BuildAgent.
	Agent string
}

// Build fetches the Debian kernel and busybox (see FetchKernel) and
// writes the agent guest's initramfs into opts.Dir. The guest runs
// shoal-agent (restarted if it exits), takes a DHCP lease on eth0 when
// there is an eth0, mounts an ext4 /dev/vda at /mnt when there is one,
// and logs to ttyS0.
func Build(ctx context.Context, opts Options) (Guest, error) {
	if opts.Dir == "" {
		return Guest{}, fmt.Errorf("build test guest: no Dir for the initrd")
	}
	cache := opts.CacheDir
	if cache == "" {
		cache = DefaultCacheDir()
	}
	k, err := FetchKernel(ctx, cache)
	if err != nil {
		return Guest{}, err
	}
	bb, err := FetchBusybox(ctx, cache)
	if err != nil {
		return Guest{}, err
	}
	bin := opts.Agent
	if bin == "" {
		bin = filepath.Join(opts.Dir, "shoal-agent")
		if err := BuildAgent(ctx, bin); err != nil {
			return Guest{}, err
		}
	}
	initrd := filepath.Join(opts.Dir, "agent-guest.initrd")
	err = Initramfs{
		Kernel:  k,
		Busybox: bb,
		Modules: AgentModules,
		Files:   map[string]string{"/bin/shoal-agent": bin},
		Scripts: map[string]string{"/etc/udhcpc.script": udhcpcScript},
		Init:    agentInit,
	}.Build(initrd)
	if err != nil {
		return Guest{}, err
	}
	return Guest{Kernel: k.Vmlinuz, Initrd: initrd, Append: "console=ttyS0 panic=-1 loglevel=4 no_timer_check"}, nil
}

// BuildAgent builds a static shoal-agent into out with the go tool. It
// must run inside the shoal module (tests do).
func BuildAgent(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/shoal-hci/shoal/hypervisor/cmd/shoal-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build shoal-agent: %w\n%s", err, b)
	}
	return nil
}

// agentInit is the agent guest's /init: a shell as PID 1.
const agentInit = InitPreamble + `mkdir -p /mnt
hostname shoal-testguest
(while :; do /bin/shoal-agent; echo "shoal-agent exited: $?"; sleep 1; done) &
[ -b /dev/vda ] && mount -t ext4 /dev/vda /mnt && echo "mounted /dev/vda on /mnt"
if ip link show eth0 >/dev/null 2>&1; then
  ip link set eth0 up
  udhcpc -f -i eth0 -s /etc/udhcpc.script -t 10 -T 1 -A 5 >/dev/null 2>&1 &
fi
echo "shoal test guest up"
while :; do sleep 3600; done
`

// udhcpcScript applies busybox udhcpc's lease ($mask is a prefix length).
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
  ip -4 addr flush dev "$interface"
  ip link set "$interface" up
  ;;
bound|renew)
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  if [ -n "$router" ]; then
    ip route replace default via "${router%% *}" dev "$interface"
  fi
  ;;
esac
`
