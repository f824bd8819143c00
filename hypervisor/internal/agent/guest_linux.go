package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Guest is the System of the Linux guest the agent runs in.
type Guest struct {
	// PoweroffCommand powers the guest off. Zero: `systemctl poweroff` on
	// a systemd guest, `poweroff` when PID 1 is busybox init, else
	// `poweroff -f` (a shell as /init), else sync and reboot(2).
	PoweroffCommand []string
	// Mounts is the mount table read. Zero: /proc/self/mounts.
	Mounts string
}

// BootID returns the kernel's random boot ID.
func (g Guest) BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Hostname returns the guest's host name.
func (g Guest) Hostname() (string, error) { return os.Hostname() }

// Uptime returns CLOCK_BOOTTIME.
func (g Guest) Uptime() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("read uptime: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// Addrs returns the addresses of every interface but loopback.
func (g Guest) Addrs() ([]Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range as {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			bits, _ := n.Mask.Size()
			out = append(out, Addr{Interface: ifc.Name, Prefix: netip.PrefixFrom(ip.Unmap(), bits)})
		}
	}
	return out, nil
}

// Poweroff powers the guest off (see PoweroffCommand).
func (g Guest) Poweroff() error {
	cmd := g.PoweroffCommand
	if len(cmd) == 0 {
		cmd = defaultPoweroff()
	}
	if len(cmd) == 0 {
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			return fmt.Errorf("power off with reboot(2): %w", err)
		}
		return nil
	}
	if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("power off with %q: %w: %s", cmd, err, out)
	}
	return nil
}

func defaultPoweroff() []string {
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		return []string{"systemctl", "poweroff"}
	}
	if _, err := exec.LookPath("poweroff"); err != nil {
		return nil
	}
	// busybox init powers off cleanly on a signal from `poweroff`; a
	// shell script as /init (argv[0] busybox, then sh) would just die.
	exe, _ := os.Readlink("/proc/1/exe")
	cmdline, _ := os.ReadFile("/proc/1/cmdline")
	arg0, _, _ := strings.Cut(string(cmdline), "\x00")
	if filepath.Base(exe) == "busybox" && filepath.Base(arg0) == "init" {
		return []string{"poweroff"}
	}
	return []string{"poweroff", "-f"}
}

// fsFreeze and fsThaw are FIFREEZE and FITHAW: _IOWR('X', 119/120, int).
const (
	fsFreeze = 0xC0045877
	fsThaw   = 0xC0045878
)

// pseudo lists file systems that have no disk to keep consistent.
var pseudo = map[string]bool{"proc": true, "sysfs": true, "devtmpfs": true, "tmpfs": true, "ramfs": true,
	"rootfs": true, "devpts": true, "cgroup": true, "cgroup2": true, "securityfs": true, "debugfs": true,
	"tracefs": true, "pstore": true, "bpf": true, "mqueue": true, "hugetlbfs": true, "configfs": true,
	"fusectl": true, "autofs": true, "efivarfs": true, "binfmt_misc": true, "squashfs": true, "overlay": true,
	"nsfs": true, "9p": true, "virtiofs": true, "nfs": true, "nfs4": true, "cifs": true, "fuse": true}

// writableMounts returns the mount points of writable, disk-backed file
// systems, one per device, in mount order.
func (g Guest) writableMounts() ([]string, error) {
	path := g.Mounts
	if path == "" {
		path = "/proc/self/mounts"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return parseMounts(f)
}

func parseMounts(f io.Reader) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		dev, mnt, fstype, opts := fields[0], unescapeMount(fields[1]), fields[2], fields[3]
		if pseudo[fstype] || strings.HasPrefix(fstype, "fuse.") || !strings.HasPrefix(dev, "/dev/") || seen[dev] {
			continue
		}
		if !strings.HasPrefix(opts+",", "rw,") {
			continue
		}
		seen[dev] = true
		out = append(out, mnt)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of the mount table.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func ioctlMount(mnt string, req uint) error {
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.IoctlSetInt(fd, req, 0)
}

// Freeze freezes the writable disk file systems, in mount order; a file
// system that cannot be frozen (EOPNOTSUPP) is left out. On an error the
// ones already frozen are thawed.
func (g Guest) Freeze() (int, error) {
	mnts, err := g.writableMounts()
	if err != nil {
		return 0, err
	}
	var frozen []string
	for _, m := range mnts {
		err := ioctlMount(m, fsFreeze)
		switch {
		case err == nil:
			frozen = append(frozen, m)
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTTY):
		default:
			for i := len(frozen) - 1; i >= 0; i-- {
				ioctlMount(frozen[i], fsThaw)
			}
			return 0, fmt.Errorf("freeze %s: %w", m, err)
		}
	}
	return len(frozen), nil
}

// Thaw thaws the writable disk file systems, in reverse mount order;
// one that is not frozen (EINVAL) is not counted.
func (g Guest) Thaw() (int, error) {
	mnts, err := g.writableMounts()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for i := len(mnts) - 1; i >= 0; i-- {
		err := ioctlMount(mnts[i], fsThaw)
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTTY):
		default:
			errs = append(errs, fmt.Errorf("thaw %s: %w", mnts[i], err))
		}
	}
	return n, errors.Join(errs...)
}
