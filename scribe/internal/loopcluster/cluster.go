package loopcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// Config describes a Cluster.
type Config struct {
	// Dir holds the disk files. Required.
	Dir string
	// Nodes is the number of nodes. Zero value: 3.
	Nodes int
	// DisksPerNode is the number of disks of each node. Zero value: 1.
	DisksPerNode int
	// DiskSize is the size of each disk file in bytes. Zero value: 256 MiB.
	DiskSize int64
	// Direct opens the disks with O_DIRECT. Zero value: buffered.
	Direct bool
	// Log receives the servers' logs. Zero value: discarded.
	Log *slog.Logger
	// WrapDevice, if set, wraps each disk a node opens when it starts
	// (a test's fault or probe). Zero value: the disks as they are.
	WrapDevice func(node string, d chunkstore.Device) chunkstore.Device
}

// ErrDown: the node is stopped.
var ErrDown = errors.New("node is down")

// Node is one node of a Cluster.
type Node struct {
	ID    string
	paths []string
	cert  tls.Certificate
	addr  string

	// Guarded by Cluster.mu.
	reg    *genreg.Dir // the node's generation register, in Dir/ID-register
	stores []*chunkstore.Store
	local  *chunksvc.LocalReplica
	up     bool
	cancel context.CancelFunc
	done   chan error
}

// Cluster is a set of in-process nodes and a replvol.Pool over them.
type Cluster struct {
	cfg   Config
	ca    *CA
	nodes []*Node

	peers *chunksvc.Peers

	mu sync.Mutex
}

// Start formats the disks, starts every node and returns the Cluster.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.DisksPerNode == 0 {
		cfg.DisksPerNode = 1
	}
	if cfg.DiskSize == 0 {
		cfg.DiskSize = 256 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ca, err := NewCA()
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, ca: ca}
	owner, err := ca.Issue("owner")
	if err != nil {
		return nil, err
	}
	c.peers = &chunksvc.Peers{TLS: ca.ClientTLS(owner), Addr: func(node string) (string, error) {
		if c.Addr(node) == "" {
			return "", fmt.Errorf("no node %q", node)
		}
		return c.Addr(node), nil
	}}
	for i := range cfg.Nodes {
		n := &Node{ID: fmt.Sprintf("node%d", i+1)}
		if n.cert, err = ca.Issue(n.ID); err != nil {
			return nil, err
		}
		for d := range cfg.DisksPerNode {
			path := filepath.Join(cfg.Dir, fmt.Sprintf("%s-disk%d", n.ID, d))
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				return nil, err
			}
			if err := os.Truncate(path, cfg.DiskSize); err != nil {
				return nil, err
			}
			dev, err := chunkstore.OpenFile(path, chunkstore.FileOptions{Direct: cfg.Direct})
			if err != nil {
				return nil, err
			}
			_, err = chunkstore.Format(dev, chunkstore.FormatOptions{})
			dev.Close()
			if err != nil {
				return nil, err
			}
			n.paths = append(n.paths, path)
		}
		c.nodes = append(c.nodes, n)
		if err := c.Start(n.ID); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Nodes returns the node IDs.
func (c *Cluster) Nodes() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.ID)
	}
	return out
}

func (c *Cluster) node(id string) (*Node, error) {
	for _, n := range c.nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q", id)
}

// Start opens node's disks and serves them (again).
func (c *Cluster) Start(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.up {
		return nil
	}
	reg, err := genreg.Open(filepath.Join(c.cfg.Dir, n.ID+"-register"))
	if err != nil {
		return err
	}
	var stores []*chunkstore.Store
	for _, p := range n.paths {
		f, err := chunkstore.OpenFile(p, chunkstore.FileOptions{Direct: c.cfg.Direct})
		if err != nil {
			return err
		}
		var dev chunkstore.Device = f
		if c.cfg.WrapDevice != nil {
			dev = c.cfg.WrapDevice(n.ID, f)
		}
		s, err := chunkstore.Open(dev)
		if err != nil {
			dev.Close()
			return err
		}
		stores = append(stores, s)
	}
	addr := n.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	n.addr = ln.Addr().String()
	srv, err := chunksvc.NewServer(chunksvc.ServerConfig{
		Stores:   stores,
		Register: reg,
		TLS:      c.ca.ServerTLS(n.cert),
		Authorize: func(cert *x509.Certificate) (string, error) {
			return cert.Subject.CommonName, nil
		},
		Log: c.cfg.Log.With("node", n.ID),
	})
	if err != nil {
		ln.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	local := chunksvc.Local(stores).WithRegister(reg)
	if err := local.FenceFromRegister(ctx); err != nil {
		cancel()
		ln.Close()
		return err
	}
	n.stores, n.reg, n.local, n.up, n.cancel, n.done = stores, reg, local, true, cancel, make(chan error, 1)
	go func() { n.done <- srv.Serve(ctx, ln) }()
	return nil
}

// Stop kills node: its connections close, new ones are refused (the
// Pool's Replica fails with the dial error), its stores are closed.
func (c *Cluster) Stop(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !n.up {
		return nil
	}
	n.cancel()
	err = <-n.done
	for _, s := range n.stores {
		s.Close()
	}
	n.reg.Close()
	n.up, n.stores, n.local, n.reg = false, nil, nil, nil
	c.peers.Forget(id)
	return err
}

// Check runs chunkstore.Store.Check on every disk of every running node.
func (c *Cluster) Check(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, n := range c.nodes {
		for _, s := range n.stores {
			if err := s.Check(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.ID, err))
			}
		}
		if n.reg != nil {
			if err := n.reg.Check(); err != nil {
				errs = append(errs, fmt.Errorf("%s: register: %w", n.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Stores returns node's open stores (nil while it is down).
func (c *Cluster) Stores(id string) []*chunkstore.Store {
	n, err := c.node(id)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.stores
}

// Close stops every node.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, c.Stop(n.ID))
	}
	errs = append(errs, c.peers.Close())
	return errors.Join(errs...)
}

// Pool returns the cluster as seen from node local: its own disks are
// reached in-process, the others over the chunk service. local may be ""
// (an owner outside the cluster: every node over the network).
func (c *Cluster) Pool(local string) *Pool { return &Pool{c: c, local: local, cut: map[string]bool{}} }

// Pool is one node's view of the cluster.
type Pool struct {
	c     *Cluster
	local string
	cut   map[string]bool // guarded by c.mu
}

var _ replvol.Pool = (*Pool)(nil)

// Cut makes node unreachable from this view only (a partition), or
// reachable again.
func (p *Pool) Cut(node string, cut bool) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.cut[node] = cut
}

// Nodes implements replvol.Pool: every node, up or down.
func (p *Pool) Nodes() []string { return p.c.Nodes() }

// Register returns node's generation register (nil while it is down).
func (c *Cluster) Register(id string) *genreg.Dir {
	n, err := c.node(id)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.reg
}

// Disks implements replvol.Pool: every disk, up or down.
func (p *Pool) Disks() []replvol.Disk {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	var out []replvol.Disk
	for _, n := range p.c.nodes {
		for i, path := range n.paths {
			d := replvol.Disk{Node: n.ID}
			if i < len(n.stores) {
				s := n.stores[i]
				st := s.Stats()
				d.ID, d.Free = s.Superblock().DiskID, int64(st.Chunks-st.Used)*s.ChunkSize()
			} else if id, err := diskID(path); err == nil {
				d.ID = id
			}
			out = append(out, d)
		}
	}
	return out
}

func diskID(path string) (chunkstore.ID, error) {
	dev, err := chunkstore.OpenFile(path, chunkstore.FileOptions{})
	if err != nil {
		return chunkstore.ID{}, err
	}
	defer dev.Close()
	sb, err := chunkstore.ReadSuperblock(dev)
	return sb.DiskID, err
}

// Replica implements replvol.Pool.
func (p *Pool) Replica(node string) (replvol.Replica, error) {
	n, err := p.c.node(node)
	if err != nil {
		return nil, err
	}
	p.c.mu.Lock()
	down := p.cut[node] || (node == p.local && !n.up)
	local := n.local
	p.c.mu.Unlock()
	if down {
		return nil, fmt.Errorf("node %s: %w", node, ErrDown)
	}
	if node == p.local {
		return local, nil
	}
	// A stopped node is dialled all the same: its closed listener
	// refuses the connection, as a dead node's port would.
	return p.c.peers.Client(context.Background(), node)
}

// Addr is node's chunk service address.
func (c *Cluster) Addr(id string) string {
	n, err := c.node(id)
	if err != nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.addr
}

// ClientTLS is a TLS config with a certificate of the cluster's CA, as a
// node dialling another uses.
func (c *Cluster) ClientTLS() *tls.Config { return c.peers.TLS }

// Corrupt flips a byte of block (4 KiB) of the chunk for key on node's
// disks, behind the store's back (bit rot).
func (c *Cluster) Corrupt(node string, key chunkstore.ChunkKey, block int) error {
	n, err := c.node(node)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range n.stores {
		info, ok := s.Info(key)
		if !ok {
			continue
		}
		sb := s.Superblock()
		off := int64(sb.DataOffset) + int64(info.Slot)*int64(sb.ChunkSize) + int64(block)*chunkstore.BlockSize + 100
		f, err := os.OpenFile(n.paths[i], os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		b[0] ^= 0xff
		_, err = f.WriteAt(b, off)
		return err
	}
	return fmt.Errorf("node %s holds no chunk for extent %d", node, key.Extent)
}
