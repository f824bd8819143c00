package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/identity"
)

// Default ports and paths (DESIGN.md, common facts).
const (
	DefaultGossipPort = 7946
	DefaultAPIPort    = 7443
	DefaultDataDir    = "/var/lib/shoal"
	DefaultRunDir     = "/run/shoal"
)

// BeaconConn carries discovery beacons (UDP multicast on a node, an
// in-process hub in tests). Same method set as discovery.Conn.
type BeaconConn interface {
	Send(p []byte) error
	Recv(buf []byte) (int, error)
	Close() error
}

// Timers are the gossip and control-loop timings. DefaultConfig gives LAN
// values tuned for a backplane; peertest tightens them.
type Timers struct {
	// Tick is the control loop period: formation, auto-join, healing.
	Tick time.Duration
	// Beacon is the discovery beacon period (jittered ±25%).
	Beacon time.Duration
	// Settle is how long the set of unclaimed peers must stay the same
	// before they form a cluster.
	Settle time.Duration
	// JoinPace bounds the random delay before an unclaimed node asks for
	// admission; the delay grows with the number of unclaimed nodes seen
	// (50 ms each, joinPace) up to this bound, so a rack powering on joins
	// at about 20 nodes a second whatever its size (a mass join costs
	// gossip in proportion to N², see docs/peer.md "Scale"). Zero: no delay.
	JoinPace time.Duration
	// Memberlist timers.
	ProbeInterval, ProbeTimeout, GossipInterval time.Duration
	SuspicionMult                               int
	// SmallCluster, SmallProbeInterval and SmallProbeTimeout: a node that
	// expects at most SmallCluster members when its gossip starts (itself
	// and the nodes of its cluster or unclaimed ones heard on the
	// backplane, or its join addresses or serf snapshot if more; see
	// expectedMembers) probes with these instead of ProbeInterval and
	// ProbeTimeout. memberlist's suspicion timeout is proportional to the
	// probe interval, so a crash is seen about twice as fast; large
	// clusters keep the stock timers, which survive CPU starvation (see
	// docs/peer.md "Scale"). Zero SmallCluster: always ProbeInterval.
	SmallCluster                          int
	SmallProbeInterval, SmallProbeTimeout time.Duration
	// RetransmitMult is memberlist's retransmission multiplier (every
	// member retransmits each update it learns RetransmitMult ×
	// ⌈log10(N+1)⌉ times) for a node that expects at most LargeCluster
	// members when its gossip starts; it shrinks by one per doubling above
	// that, to no less than MinRetransmitMult (retransmitMult). Every
	// update costs N × that many messages, which is what a mass join of
	// hundreds of nodes spends its CPU on; what gossip misses, the re-sync
	// after joining, heal and push/pull repair (docs/peer.md "Scale").
	// Zero RetransmitMult: memberlist's default (4); zero LargeCluster: no
	// shrinking.
	RetransmitMult, MinRetransmitMult int
	LargeCluster                      int
	// PushPull is the base full-state sync interval. memberlist multiplies
	// it by up to ceil(log2(N/32))+1 above 32 nodes; at 5 s that is at most
	// 30 s for N ≤ 1000 (stock: 30 s growing to 180 s).
	PushPull time.Duration
	// HealGrace is how long a member of this cluster heard on the
	// backplane must have been missing from this node's gossip before the
	// tick's heal joins it (a newcomer's arrival rumour reaches every member
	// well within it; see missingMembers). Zero: at once.
	HealGrace time.Duration
	// Serf timers: how often failed members are retried and reaped, how
	// long failed and left members are kept.
	ReconnectInterval, ReapInterval, ReconnectTimeout, TombstoneTimeout time.Duration
	// DeadReclaim lets a node that comes back with the same name and a new
	// address take its name back after this long (memberlist#157).
	DeadReclaim time.Duration
	// MetaSync is how often a member pulls cluster settings (policy,
	// revocations) from a random member over mutual TLS.
	MetaSync time.Duration
}

// Config configures a Peer. Zero values are documented per field; use
// DefaultConfig for a node.
type Config struct {
	// DataDir holds identity.json, cluster.json, keyring.json and the serf
	// snapshot. Required.
	DataDir string
	// Socket is the local API's UNIX socket (mode 0600). Required.
	Socket string
	// NodeID is the ID this node goes by before peer first runs (the data
	// dir's node-id file, which netd may have made first: the backplane
	// address derives from it). A new identity adopts it; a stored one must
	// match it. Empty means a random ID for a new identity.
	NodeID string
	// Bind is the backplane IP for gossip and the node API. Empty means
	// auto: a fd53:686f:616c::/64 address if there is one, else the first
	// global unicast address; never loopback.
	Bind string
	// GossipPort and APIPort: zero means any free port (tests).
	GossipPort, APIPort int
	// Beacons is the discovery medium. Nil means UDP multicast on port
	// DiscoveryPort of the interfaces in DiscoveryInterfaces (all when empty).
	Beacons             BeaconConn
	DiscoveryPort       int
	DiscoveryInterfaces []string
	// NoDiscovery turns discovery off: no formation or auto-join, only
	// explicit create/join (benchmarks, isolated tests).
	NoDiscovery bool
	// FormQuorum is how many unclaimed nodes (counting this one) must see
	// each other to form a cluster by themselves. Zero or less turns
	// zero-config formation off.
	FormQuorum int
	// Policy is the admission policy of a cluster this node creates
	// (auto, approve, code). Empty means auto.
	Policy string
	// Version, Roles and Hardware are announced in tags and beacons.
	Version, Roles, Hardware string
	Timers                   Timers
	// Services run on the mutual-TLS node channel once the node is a member
	// (state replication, claims). May be empty.
	Services []Service
	// State tunes the cluster state store (DataDir/state.db) and its
	// replication; the zero value gives the defaults.
	State StateConfig
	// GossipBlocked, when set, drops gossip packets and connections to and
	// from the host:port addresses for which it returns true: a network
	// partition for tests (peertest). Nil on a node.
	GossipBlocked func(addr string) bool
	// Log receives the daemon's logs. Nil means discard.
	Log *slog.Logger
	// Ready is called once, when the local API serves. May be nil.
	Ready func()
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the configuration of a node.
func DefaultConfig() Config {
	return Config{
		DataDir:    DefaultDataDir,
		Socket:     filepath.Join(DefaultRunDir, "peer.sock"),
		GossipPort: DefaultGossipPort,
		APIPort:    DefaultAPIPort,
		FormQuorum: 3,
		Policy:     client.PolicyAuto,
		Timers:     DefaultTimers(),
	}
}

// DefaultTimers are the backplane timings.
func DefaultTimers() Timers {
	return Timers{
		Tick:               time.Second,
		Beacon:             2 * time.Second,
		Settle:             10 * time.Second,
		JoinPace:           30 * time.Second,
		ProbeInterval:      time.Second,
		ProbeTimeout:       500 * time.Millisecond,
		GossipInterval:     100 * time.Millisecond, // stock 200 ms; see docs/peer.md "Scale"
		SuspicionMult:      4,                      // stock; 3 melts down under CPU starvation, see docs/peer.md "Scale"
		SmallCluster:       256,
		SmallProbeInterval: 500 * time.Millisecond,
		SmallProbeTimeout:  250 * time.Millisecond,
		RetransmitMult:     4, // stock
		LargeCluster:       128,
		MinRetransmitMult:  2,
		PushPull:           5 * time.Second,
		HealGrace:          2 * time.Second,
		ReconnectInterval:  10 * time.Second,
		ReapInterval:       15 * time.Second,
		ReconnectTimeout:   72 * time.Hour,
		TombstoneTimeout:   30 * time.Minute,
		DeadReclaim:        5 * time.Second,
		MetaSync:           30 * time.Second,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	if c.Socket == "" {
		errs = append(errs, errors.New("socket path is empty"))
	}
	if c.NodeID != "" && !identity.ValidNodeID(c.NodeID) {
		errs = append(errs, fmt.Errorf("node ID %q is not 32 lowercase hex digits", c.NodeID))
	}
	if c.Bind != "" && net.ParseIP(c.Bind) == nil {
		errs = append(errs, fmt.Errorf("bind address %q is not an IP address", c.Bind))
	}
	if ip := net.ParseIP(c.Bind); ip != nil && ip.IsLinkLocalUnicast() {
		errs = append(errs, fmt.Errorf("bind address %s is link-local: gossip cannot bind zoned addresses (memberlist#115); use the backplane's fd53:686f:616c:: address", c.Bind))
	}
	for _, p := range []int{c.GossipPort, c.APIPort, c.DiscoveryPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("port %d out of range", p))
		}
	}
	switch c.Policy {
	case "", client.PolicyAuto, client.PolicyApprove, client.PolicyCode:
	default:
		errs = append(errs, fmt.Errorf("admission policy %q: want auto, approve or code", c.Policy))
	}
	t := c.Timers
	for name, d := range map[string]time.Duration{"tick": t.Tick, "beacon": t.Beacon, "probe interval": t.ProbeInterval,
		"probe timeout": t.ProbeTimeout, "gossip interval": t.GossipInterval, "push/pull": t.PushPull,
		"reconnect interval": t.ReconnectInterval, "reap interval": t.ReapInterval, "meta sync": t.MetaSync} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("timer %s must be positive", name))
		}
	}
	if t.SmallCluster > 0 && (t.SmallProbeTimeout <= 0 || t.SmallProbeInterval <= t.SmallProbeTimeout) {
		errs = append(errs, errors.New("small-cluster probe timers: want 0 < timeout < interval"))
	}
	if t.RetransmitMult < 0 || t.LargeCluster > 0 && t.MinRetransmitMult <= 0 {
		errs = append(errs, errors.New("retransmit multipliers: want RetransmitMult ≥ 0, and MinRetransmitMult > 0 when LargeCluster is set"))
	}
	if t.HealGrace < 0 {
		errs = append(errs, errors.New("heal grace must not be negative"))
	}
	if t.SuspicionMult <= 0 {
		errs = append(errs, errors.New("suspicion multiplier must be positive"))
	}
	return errors.Join(errs...)
}
