// Command shoal-agent runs inside a guest VM and talks to its host's
// shoal hypervisor over virtio-vsock, or the virtio-serial port
// org.shoal.agent.0 where there is no vsock: heartbeats, the guest's IP
// addresses, graceful shutdown, file system freeze and thaw. Build it
// static (CGO_ENABLED=0); it needs no configuration.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shoal-hci/shoal/hypervisor/internal/agent"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "shoal-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("shoal-agent", flag.ContinueOnError)
	transport := fs.String("transport", "auto", "how to reach the host: auto (vsock, else virtio-serial), vsock or serial")
	port := fs.String("port", agent.PortName, "name of the virtio-serial port")
	vport := fs.Uint("vsock-port", agent.VsockPort, "vsock port on the host (CID 2)")
	poweroff := fs.String("poweroff", "", "command that powers the guest off (default: systemctl poweroff on systemd, else poweroff)")
	debug := fs.Bool("debug", false, "log connection changes")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version)
		return nil
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	cfg := agent.DefaultConfig()
	cfg.Version = version
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	vs, ser := agent.Vsock{Port: uint32(*vport)}, agent.Serial{Port: *port}
	switch *transport {
	case "auto":
		cfg.Transports = []agent.Transport{vs, ser}
	case "vsock":
		cfg.Transports = []agent.Transport{vs}
	case "serial":
		cfg.Transports = []agent.Transport{ser}
	default:
		return fmt.Errorf("unknown -transport %q: use auto, vsock or serial", *transport)
	}
	cfg.System = agent.Guest{PoweroffCommand: strings.Fields(*poweroff)}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Logger.Info("shoal-agent starting", "version", version, "transport", *transport)
	return a.Run(ctx)
}
