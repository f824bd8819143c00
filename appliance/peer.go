package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shoal-hci/shoal/appliance/internal/buildinfo"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer"
)

// Peer runs the `shoal peer` daemon: identity, discovery, formation,
// admission, gossip membership and the local and node APIs.
func Peer(ctx context.Context, env *verb.Env, args []string) error {
	cfg := peer.DefaultConfig()
	fs := env.FlagSet("peer")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data dir: identity, cluster state, keyring")
	runDir := fs.String("run-dir", peer.DefaultRunDir, "runtime dir; the local API socket is RUN-DIR/peer.sock")
	socket := fs.String("socket", "", "local API socket (default RUN-DIR/peer.sock)")
	fs.StringVar(&cfg.Bind, "bind", "", "backplane IP for gossip and the node API (default: auto, an fd53:686f:616c::/64 address, else the first global unicast address)")
	fs.IntVar(&cfg.GossipPort, "gossip-port", cfg.GossipPort, "gossip port (tcp+udp)")
	fs.IntVar(&cfg.APIPort, "api-port", cfg.APIPort, "node API port (HTTPS, mutual TLS)")
	fs.IntVar(&cfg.DiscoveryPort, "discovery-port", 7947, "discovery beacon port (udp)")
	ifs := fs.String("discovery-interfaces", "", "comma-separated interfaces for discovery beacons (default: every up multicast interface)")
	noDisc := fs.Bool("no-discovery", false, "turn discovery off: no zero-config formation or auto-join")
	fs.IntVar(&cfg.FormQuorum, "form-quorum", cfg.FormQuorum, "unclaimed nodes (counting this one) that form a cluster by themselves; 0 turns formation off")
	fs.DurationVar(&cfg.Timers.Settle, "settle", cfg.Timers.Settle, "how long the unclaimed set must stay the same before forming")
	fs.StringVar(&cfg.Policy, "policy", cfg.Policy, "admission policy of a cluster this node forms: auto, approve or code")
	fs.StringVar(&cfg.Roles, "roles", "", "roles announced in gossip tags")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("peer takes no arguments")
	}
	cfg.Socket = *socket
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(*runDir, "peer.sock")
	}
	if *ifs != "" {
		cfg.DiscoveryInterfaces = strings.Split(*ifs, ",")
	}
	cfg.NoDiscovery = *noDisc
	// netd and peer agree on one node ID through the data dir's node-id file.
	id, err := LoadOrCreateNodeID(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.NodeID = id
	cfg.Version = buildinfo.Get().Version
	cfg.Hardware = hardwareFingerprint()
	cfg.Log = env.Log

	return runDaemon(ctx, env, func(ready func()) (daemonRunner, error) {
		cfg.Ready = ready
		return peer.New(cfg)
	})
}

// hardwareFingerprint is what an operator compares before approving a
// node: a short hash of the DMI product UUID and the MAC addresses of the
// physical NICs.
func hardwareFingerprint() string {
	var parts []string
	if b, err := os.ReadFile("/sys/class/dmi/id/product_uuid"); err == nil {
		parts = append(parts, strings.TrimSpace(string(b)))
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, ifi := range ifs {
			if ifi.Flags&net.FlagLoopback == 0 && len(ifi.HardwareAddr) > 0 {
				parts = append(parts, ifi.HardwareAddr.String())
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	slices.Sort(parts)
	h := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	s := hex.EncodeToString(h[:6])
	return fmt.Sprintf("%s-%s-%s", s[:4], s[4:8], s[8:])
}
