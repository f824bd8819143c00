package appliance

import (
	"context"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/peer"
)

// Hypervisor runs the `shoal hypervisor` daemon: it runs the VMs placed
// on this node under QEMU, places VMs that run nowhere and fails over
// those of failed nodes.
func Hypervisor(ctx context.Context, env *verb.Env, args []string) error {
	cfg := hypervisor.DefaultConfig()
	fs := env.FlagSet("hypervisor")
	dataDir := fs.String("data-dir", peer.DefaultDataDir, "node data dir (the node ID)")
	fs.StringVar(&cfg.PeerSocket, "peer-socket", cfg.PeerSocket, "shoal peer's local API socket")
	fs.StringVar(&cfg.NBDSocket, "nbd-socket", cfg.NBDSocket, "scribe's NBD socket (VSD disks)")
	fs.StringVar(&cfg.RuntimeDir, "runtime-dir", cfg.RuntimeDir, "one directory per VM: QMP, serial and agent sockets, logs (at most 62 bytes)")
	fs.StringVar(&cfg.QEMU, "qemu", "", "qemu-system-x86_64 binary (default: from PATH)")
	fs.StringVar(&cfg.Accel, "accel", "", "kvm or tcg (default: probed when the first VM starts)")
	fs.StringVar(&cfg.Bridge, "bridge", "", "bridge the NICs of network \"default\" join as taps (default: QEMU user-mode networking)")
	fs.DurationVar(&cfg.StopGrace, "stop-grace", cfg.StopGrace, "how long a stop waits for the guest to power off before QEMU quits")
	fs.StringVar(&cfg.ConsoleListen, "console-listen", cfg.ConsoleListen, "serve this node's VM consoles to other members here (mutual TLS; \"\": not at all)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("hypervisor takes no arguments")
	}
	id, err := LoadOrCreateNodeID(*dataDir)
	if err != nil {
		return err
	}
	cfg.NodeID = id
	cfg.DataDir = *dataDir
	cfg.Log = env.Log

	return runDaemon(ctx, env, func(ready func()) (daemonRunner, error) {
		cfg.Ready = ready
		return hypervisor.New(cfg)
	})
}
