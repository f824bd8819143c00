package appliance

import (
	"context"
	"flag"
	"log/slog"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/netd"
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
	bridge := fs.String("bridge", "", "bridge the NICs of network \"default\" join as taps (default: the LAN bridge netd names in its status; \"none\" or \"\": QEMU user-mode networking)")
	netStatus := fs.String("net-status", netd.DefaultStatusPath, "netd's status file, which names the default bridge")
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
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "bridge" })
	cfg.Bridge = vmBridge(env.Log, given, *bridge, *netStatus)

	return runDaemon(ctx, env, func(ready func()) (daemonRunner, error) {
		cfg.Ready = ready
		return hypervisor.New(cfg)
	})
}

// vmBridge picks the bridge VM NICs on network "default" join: the one
// given with --bridge ("none" or "" for QEMU user-mode networking), else
// the LAN bridge in netd's status; without a status (no netd: tests, a
// harness with static addresses) or a bridge in it, user-mode
// networking. It says what it chose, once, at start.
func vmBridge(log *slog.Logger, given bool, bridge, statusPath string) string {
	if given {
		if bridge == "none" {
			bridge = ""
		}
		if bridge == "" {
			log.Info("VM NICs use QEMU user-mode networking (--bridge none)")
		} else {
			log.Info("VM NICs join the bridge given with --bridge", "bridge", bridge)
		}
		return bridge
	}
	st, err := netd.ReadStatus(statusPath)
	switch {
	case err != nil:
		log.Info("no network status from netd: VM NICs use QEMU user-mode networking", "err", err)
		return ""
	case st.Bridge == "":
		log.Info("netd names no LAN bridge (lan.bridge is off in the network spec, or another link holds its name): VM NICs use QEMU user-mode networking", "status", statusPath)
		return ""
	}
	log.Info("VM NICs join netd's LAN bridge", "bridge", st.Bridge, "over", st.LANPort)
	return st.Bridge
}
