package netd

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Default paths on a node.
const (
	DefaultSpecPath   = "/etc/shoal/network.json"
	DefaultStatusPath = "/run/shoal/net.json"
	DefaultStateDir   = "/var/lib/shoal/netd"
	DefaultResolvConf = "/run/shoal/resolv.conf"
)

// Config configures netd. The zero value of each field is documented;
// DefaultConfig fills the node's paths.
type Config struct {
	// Log receives netd's log; nil discards it.
	Log *slog.Logger
	// NodeID is this node's ID (hex, from the node identity); the
	// backplane address is derived from it. Required.
	NodeID string
	// SpecPath is the desired network spec written by first-boot setup;
	// a missing file means the defaults. "": always the defaults.
	SpecPath string
	// StatusPath is where the observed Status is written. Required.
	StatusPath string
	// StateDir keeps DHCP leases across restarts. "": not kept.
	StateDir string
	// ResolvConf is written with the DNS servers of the lease (or the
	// spec). "": DNS is not written.
	ResolvConf string
	// Hostname is sent to the DHCP server (option 12). "": none.
	Hostname string
	// Interval is the reconcile period; 0: 1 s.
	Interval time.Duration
	// Ready is called once, when the LAN and the backplane are up
	// (sd_notify READY=1 in the daemon). nil: nothing.
	Ready func()
	// Heartbeat is called after every pass (sd_notify WATCHDOG=1). nil:
	// nothing.
	Heartbeat func()
	// DHCPMinRetry is the shortest wait between lease renewal attempts;
	// 0: 60 s (RFC 2131). Tests shorten it.
	DHCPMinRetry time.Duration
	// DHCPFallbackAfter is how many DHCP attempts fail before the IPv4
	// link-local fallback; 0: 2 (about 10 s).
	DHCPFallbackAfter int
}

// DefaultConfig returns the configuration of a node, without NodeID.
func DefaultConfig() Config {
	return Config{
		SpecPath:   DefaultSpecPath,
		StatusPath: DefaultStatusPath,
		StateDir:   DefaultStateDir,
		ResolvConf: DefaultResolvConf,
		Interval:   time.Second,
	}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("%w: NodeID is empty (the backplane address is derived from it)", ErrBadConfig)
	}
	for _, r := range c.NodeID {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return fmt.Errorf("%w: NodeID %q is not lowercase hex", ErrBadConfig, c.NodeID)
		}
	}
	if c.StatusPath == "" {
		return fmt.Errorf("%w: StatusPath is empty", ErrBadConfig)
	}
	for name, p := range map[string]string{"SpecPath": c.SpecPath, "StatusPath": c.StatusPath, "StateDir": c.StateDir, "ResolvConf": c.ResolvConf} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%w: %s %q is not an absolute path", ErrBadConfig, name, p)
		}
	}
	if c.Interval < 0 || c.DHCPMinRetry < 0 || c.DHCPFallbackAfter < 0 {
		return fmt.Errorf("%w: negative Interval, DHCPMinRetry or DHCPFallbackAfter", ErrBadConfig)
	}
	return nil
}
