package scribe

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"
)

// Defaults of a node.
const (
	DefaultDataDir     = "/var/lib/shoal"
	DefaultPeerSocket  = "/run/shoal/peer.sock"
	DefaultNBDSocket   = "/run/shoal/scribe.sock"
	DefaultChunkListen = ":7948"
	// DefaultDiskGlob is where the qa harness puts a node's data disks.
	DefaultDiskGlob = "/var/lib/shoal/disks/disk*"
)

// Config configures the scribe daemon. Zero values mean the defaults
// noted on each field.
type Config struct {
	// DataDir is shoal peer's data dir, read for this node's identity and
	// cluster credentials (never written). Zero value: /var/lib/shoal.
	DataDir string
	// StateDir is where the daemon keeps its own state: the generation
	// register (StateDir/register), which also keeps each VSD's fence
	// epoch across restarts. Zero value: DataDir/scribe.
	StateDir string
	// PeerSocket is shoal peer's local API. Zero value:
	// /run/shoal/peer.sock.
	PeerSocket string
	// NBDSocket is where VSDs are served to local clients (QEMU), one
	// export per VSD name. Zero value: /run/shoal/scribe.sock.
	NBDSocket string
	// ChunkListen is the chunk service's listen address (mutual TLS).
	// Zero value: ":7948".
	ChunkListen string
	// Advertise is the chunk service address other nodes dial. Zero
	// value: this node's gossip (backplane) host with the port the chunk
	// service listens on.
	Advertise string
	// DiskGlobs are the data disks (see package disks). Zero value: every
	// whole block device but the boot disk.
	DiskGlobs []string
	// ForceFormat lists disks formatted even if they hold foreign data.
	// Zero value: none.
	ForceFormat []string
	// Buffered opens disks without O_DIRECT. Zero value: O_DIRECT where
	// the file system allows it.
	Buffered bool
	// NoUring does the disks' I/O with blocking system calls. Zero value:
	// O_DIRECT disks go through io_uring where the kernel allows it.
	NoUring bool
	// WriteThrough acknowledges a write only once every replica has it.
	// Zero value: a write without FUA is acknowledged once ordered and
	// reaches the replicas in the background, as a disk's volatile write
	// cache (replvol.Config.WriteBack); FLUSH and FUA are unchanged.
	WriteThrough bool
	// Interval paces the control loop: waiting for membership, refreshing
	// this node's record and the view of other nodes, publishing the
	// status of open VSDs. Zero value: 2 s.
	Interval time.Duration
	// DialTimeout bounds a connection to another node's chunk service.
	// Zero value: 3 s.
	DialTimeout time.Duration
	// ReplicaTimeout bounds each request to a replica. Zero value:
	// replvol's default (10 s).
	ReplicaTimeout time.Duration
	// Log is the daemon's logger. Zero value: slog.Default().
	Log *slog.Logger
	// Ready is called once, when the NBD socket is served and shoal peer
	// answered (not waiting for cluster membership: a node that is not a
	// member yet refuses VSDs with a clear error). Zero value: nothing.
	Ready func()
	// Now is the clock. Zero value: time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults of an appliance node spelled out.
func DefaultConfig() Config {
	return Config{
		DataDir: DefaultDataDir, PeerSocket: DefaultPeerSocket, NBDSocket: DefaultNBDSocket,
		ChunkListen: DefaultChunkListen, Interval: 2 * time.Second, DialTimeout: 3 * time.Second,
		Log: slog.Default(), Now: time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.PeerSocket == "" {
		c.PeerSocket = d.PeerSocket
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(c.DataDir, "scribe")
	}
	if c.NBDSocket == "" {
		c.NBDSocket = d.NBDSocket
	}
	if c.ChunkListen == "" {
		c.ChunkListen = d.ChunkListen
	}
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.Log == nil {
		c.Log = d.Log
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate reports a configuration the daemon cannot run with.
func (c Config) Validate() error {
	switch {
	case c.Interval < 0 || c.DialTimeout < 0 || c.ReplicaTimeout < 0:
		return errors.New("scribe config: negative duration")
	case len(c.NBDSocket) > 107:
		return fmt.Errorf("scribe config: NBD socket path %q is longer than 107 bytes", c.NBDSocket)
	}
	if c.ChunkListen != "" {
		if _, _, err := net.SplitHostPort(c.ChunkListen); err != nil {
			return fmt.Errorf("scribe config: chunk listen address %q: %w", c.ChunkListen, err)
		}
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			return fmt.Errorf("scribe config: advertise address %q: %w", c.Advertise, err)
		}
	}
	for _, g := range append(append([]string(nil), c.DiskGlobs...), c.ForceFormat...) {
		if _, err := filepath.Match(g, ""); err != nil {
			return fmt.Errorf("scribe config: disk pattern %q: %w", g, err)
		}
	}
	return nil
}
