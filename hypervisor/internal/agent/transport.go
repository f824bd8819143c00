package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mdlayher/vsock"
)

// Transport opens a stream to the host.
type Transport interface {
	// Name says which transport this is, for logs.
	Name() string
	// Open connects to the host. The stream ends (EOF) when the host
	// side goes away; Close must unblock a pending Read or Write.
	Open(ctx context.Context) (io.ReadWriteCloser, error)
}

// DefaultTransports returns virtio-vsock to the host (CID 2, VsockPort),
// then the virtio-serial port PortName: the first that opens is used.
func DefaultTransports() []Transport {
	return []Transport{Vsock{Port: VsockPort}, Serial{Port: PortName}}
}

// Vsock dials the host over AF_VSOCK.
type Vsock struct {
	Port uint32
}

// Name implements Transport.
func (v Vsock) Name() string { return fmt.Sprintf("vsock:2:%d", v.Port) }

// Open implements Transport. It fails at once without a vsock transport
// in the guest kernel or a listener on the host.
func (v Vsock) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	if _, err := os.Stat("/dev/vsock"); err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	c, err := vsock.Dial(vsock.Host, v.Port, nil)
	if err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	return c, nil
}

// Serial opens a virtio-serial port by name.
type Serial struct {
	Port string // the port's name, like PortName
	// Dev and Sys are the /dev and /sys roots. Zero: "/dev", "/sys".
	Dev, Sys string
}

// Name implements Transport.
func (s Serial) Name() string { return "virtio-serial:" + s.Port }

// Path finds the port's device: /dev/virtio-ports/NAME (made by udev),
// else the /dev/vportNpM whose /sys/class/virtio-ports/*/name is NAME
// (guests without udev).
func (s Serial) Path() (string, error) {
	dev, sys := s.Dev, s.Sys
	if dev == "" {
		dev = "/dev"
	}
	if sys == "" {
		sys = "/sys"
	}
	p := filepath.Join(dev, "virtio-ports", s.Port)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	names, _ := filepath.Glob(filepath.Join(sys, "class", "virtio-ports", "*", "name"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err == nil && strings.TrimSpace(string(b)) == s.Port {
			return filepath.Join(dev, filepath.Base(filepath.Dir(n))), nil
		}
	}
	return "", fmt.Errorf("virtio-serial port %q: not in %s/virtio-ports nor %s/class/virtio-ports", s.Port, dev, sys)
}

// Open implements Transport. A port whose host side is not connected
// opens, then reads EOF at once: the agent retries.
func (s Serial) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	p, err := s.Path()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open virtio-serial port: %w", err)
	}
	return f, nil
}
