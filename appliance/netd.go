package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/netd"
)

// NodeIDFile is the node ID shared by the daemons that start before the
// node identity exists (netd): 32 lowercase hex digits and a newline,
// created with O_EXCL by whichever daemon needs it first.
const NodeIDFile = "node-id"

// Netd is the `shoal netd` daemon: it brings the network up (NICs,
// bond, DHCP, backplane address) and keeps it so.
func Netd(ctx context.Context, env *verb.Env, args []string) error {
	def := netd.DefaultConfig()
	fs := env.FlagSet("netd")
	dataDir := fs.String("data-dir", "/var/lib/shoal", "node data dir (node ID, leases)")
	nodeID := fs.String("node-id", "", "node ID (hex); default: from the data dir, created if missing")
	spec := fs.String("spec", def.SpecPath, "desired network spec; missing file: the defaults")
	status := fs.String("status", def.StatusPath, "where to write the observed network status")
	stateDir := fs.String("state-dir", "", "where DHCP leases are kept (default DATA-DIR/netd)")
	resolv := fs.String("resolv-conf", def.ResolvConf, "resolv.conf to write DNS servers to; empty: none")
	hostname := fs.String("hostname", "", "host name sent to the DHCP server (default shoal-<first 6 of the node ID>)")
	interval := fs.Duration("interval", def.Interval, "reconcile period")
	minRetry := fs.Duration("dhcp-min-retry", 0, "shortest wait between lease renewals (default 60s, RFC 2131)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("netd takes no arguments")
	}
	id := *nodeID
	if id == "" {
		var err error
		if id, err = LoadOrCreateNodeID(*dataDir); err != nil {
			return err
		}
	}
	if *stateDir == "" {
		*stateDir = filepath.Join(*dataDir, "netd")
	}
	if *hostname == "" && len(id) >= 6 {
		*hostname = "shoal-" + id[:6]
	}
	cfg := netd.Config{
		Log: env.Log, NodeID: id, SpecPath: *spec, StatusPath: *status, StateDir: *stateDir,
		ResolvConf: *resolv, Hostname: *hostname, Interval: *interval, DHCPMinRetry: *minRetry,
		Ready:     func() { daemon.SdNotify(false, daemon.SdNotifyReady) },
		Heartbeat: func() { daemon.SdNotify(false, daemon.SdNotifyWatchdog) },
	}
	if os.Getenv("WATCHDOG_USEC") == "" {
		cfg.Heartbeat = nil
	}
	d, err := netd.New(cfg)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// NetStatus is `shoal net status [--json]`: the network as netd sees it.
func NetStatus(ctx context.Context, env *verb.Env, args []string) error {
	fs := env.FlagSet("net status")
	asJSON := fs.Bool("json", false, "print as JSON")
	path := fs.String("status", netd.DefaultStatusPath, "netd's status file")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("net status takes no arguments")
	}
	st, err := netd.ReadStatus(*path)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return st.WriteText(env.Stdout)
}

// NetDHCPServer is `shoal net dhcp-server`: a small DHCP server on one
// interface, for test benches and the qa harness (a node that plays the
// site's DHCP server). Bindings live in memory only.
func NetDHCPServer(ctx context.Context, env *verb.Env, args []string) error {
	fs := env.FlagSet("net dhcp-server")
	iface := fs.String("iface", "", "interface to serve on (required)")
	pool := fs.String("pool", "", "address pool FIRST-LAST, inside the interface's subnet (required)")
	router := fs.String("router", "", "router to hand out (default: none)")
	dns := fs.String("dns", "", "DNS servers to hand out, comma-separated (default: none)")
	lease := fs.Duration("lease", time.Hour, "lease time")
	t1 := fs.Duration("t1", 0, "renewal time T1 (default: half the lease)")
	t2 := fs.Duration("t2", 0, "rebinding time T2 (default: 7/8 of the lease)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if *iface == "" || fs.NArg() > 0 {
		return verb.Usagef("usage: shoal net dhcp-server --iface IFACE --pool FIRST-LAST [--router IP] [--dns IP,...] [--lease D] [--t1 D] [--t2 D]")
	}
	cfg := netd.DHCPServerConfig{Interface: *iface, Lease: *lease, T1: *t1, T2: *t2, Log: env.Log}
	first, last, ok := strings.Cut(*pool, "-")
	var err1, err2 error
	cfg.First, err1 = netip.ParseAddr(first)
	cfg.Last, err2 = netip.ParseAddr(last)
	if !ok || err1 != nil || err2 != nil {
		return verb.Usagef("--pool %q: want FIRST-LAST, like 10.99.0.100-10.99.0.199", *pool)
	}
	if *router != "" {
		r, err := netip.ParseAddr(*router)
		if err != nil {
			return verb.Usagef("--router %q: %v", *router, err)
		}
		cfg.Router = r
	}
	for _, d := range strings.Split(*dns, ",") {
		if d == "" {
			continue
		}
		a, err := netip.ParseAddr(d)
		if err != nil {
			return verb.Usagef("--dns %q: %v", d, err)
		}
		cfg.DNS = append(cfg.DNS, a)
	}
	ifi, err := net.InterfaceByName(*iface)
	if err != nil {
		return fmt.Errorf("dhcp server: %w", err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("dhcp server: addresses of %s: %w", *iface, err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Masked().Contains(cfg.First) {
			cfg.Server = p
			break
		}
	}
	if !cfg.Server.IsValid() {
		return fmt.Errorf("dhcp server: %s has no IPv4 address in the pool's subnet: give it one (a static address in the network spec) first", *iface)
	}
	return netd.ServeDHCP(ctx, cfg)
}

// LoadOrCreateNodeID returns the node ID kept in dataDir: the node-id file;
// else the node_id of peer's identity.json (then also written to node-id);
// else a new random ID, written to node-id with O_EXCL so that two daemons
// starting at once agree.
func LoadOrCreateNodeID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, NodeIDFile)
	if id, err := readNodeID(path); err == nil {
		return id, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var id string
	if b, err := os.ReadFile(filepath.Join(dataDir, "identity.json")); err == nil {
		var f struct {
			NodeID string `json:"node_id"`
		}
		if json.Unmarshal(b, &f) == nil && validNodeID(f.NodeID) {
			id = f.NodeID
		}
	}
	if id == "" {
		var b [16]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("make data dir %q: %w", dataDir, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return readNodeID(path) // someone else won the race
	}
	if err != nil {
		return "", fmt.Errorf("create node ID file %q: %w", path, err)
	}
	_, werr := f.WriteString(id + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return "", fmt.Errorf("write node ID file %q: %w", path, err)
	}
	return id, nil
}

func readNodeID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !validNodeID(id) {
		return "", fmt.Errorf("node ID file %q does not hold 32 lowercase hex digits: fix or remove it (the backplane address depends on it)", path)
	}
	return id, nil
}

func validNodeID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
