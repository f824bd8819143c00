package scribe

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/disks"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// redialAfter is how long a node whose chunk service refused a connection
// is reported unreachable without trying again: requests fail fast
// instead of each waiting for a dial.
const redialAfter = time.Second

// pool is replvol.Pool over this node's disks (in-process) and the other
// nodes' chunk services, as the cluster state and membership describe
// them. Safe for concurrent use.
type pool struct {
	self        string
	local       *chunksvc.LocalReplica
	localDisks  []*disks.Disk
	tls         *tls.Config
	dialTimeout time.Duration
	now         func() time.Time

	mu    sync.Mutex
	nodes map[string]NodeRecord // other nodes
	up    map[string]bool       // alive or suspect in gossip
	// returns counts nodes seen coming back up (down before, up now):
	// open VSDs with unavailable extents rescan when it changes.
	returns uint64
	conns   map[string]*conn
}

type conn struct {
	mu     sync.Mutex
	cl     *chunksvc.Client
	addr   string
	failed time.Time
}

var _ replvol.Pool = (*pool)(nil)

// update replaces the view of the other nodes.
func (p *pool) update(recs []NodeRecord, members []client.Member) {
	up := map[string]bool{}
	known := map[string]bool{}
	for _, m := range members {
		known[m.ID] = m.State != client.StateLeft
		up[m.ID] = m.State == client.StateAlive || m.State == client.StateSuspect
	}
	nodes := map[string]NodeRecord{}
	for _, r := range recs {
		if r.Node != p.self && known[r.Node] {
			nodes[r.Node] = r
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, u := range up {
		if u && p.up != nil && !p.up[n] {
			p.returns++
		}
	}
	p.nodes, p.up = nodes, up
}

// returned is how many times a node came back up so far.
func (p *pool) returned() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.returns
}

// Nodes implements replvol.Pool: this node and every other member that
// serves a chunk service (with or without disks), up or down.
func (p *pool) Nodes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []string{p.self}
	for node, r := range p.nodes {
		if r.Addr != "" {
			out = append(out, node)
		}
	}
	return out
}

// isUp reports whether node is alive (or suspect) in gossip.
func (p *pool) isUp(node string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up[node]
}

// Disks implements replvol.Pool: this node's disks with live free space,
// and every disk the other members published, up or down.
func (p *pool) Disks() []replvol.Disk {
	var out []replvol.Disk
	for _, d := range p.localDisks {
		out = append(out, replvol.Disk{Node: p.self, ID: d.ID(), Free: d.Free()})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for node, r := range p.nodes {
		for _, d := range r.Disks {
			out = append(out, replvol.Disk{Node: node, ID: d.ID, Free: d.Free})
		}
	}
	return out
}

// Replica implements replvol.Pool.
func (p *pool) Replica(node string) (replvol.Replica, error) {
	if node == p.self {
		return p.local, nil
	}
	p.mu.Lock()
	r, ok := p.nodes[node]
	up := p.up[node]
	c := p.conns[node]
	if c == nil {
		c = &conn{}
		p.conns[node] = c
	}
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("node %s has no chunk service record: %w", node, chunksvc.ErrUnreachable)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl != nil && c.cl.Err() == nil && c.addr == r.Addr {
		return c.cl, nil
	}
	if !up {
		return nil, fmt.Errorf("node %s is down: %w", node, chunksvc.ErrUnreachable)
	}
	if c.addr == r.Addr && p.now().Sub(c.failed) < redialAfter {
		return nil, fmt.Errorf("node %s (%s) refused a connection moments ago: %w", node, r.Addr, chunksvc.ErrUnreachable)
	}
	if c.cl != nil {
		c.cl.Close()
		c.cl = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.dialTimeout)
	defer cancel()
	cl, err := chunksvc.Dial(ctx, r.Addr, p.tls)
	c.addr = r.Addr
	if err != nil {
		c.failed = p.now()
		return nil, err
	}
	c.cl = cl
	return cl, nil
}

// close closes every connection.
func (p *pool) close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		if c.cl != nil {
			c.cl.Close()
			c.cl = nil
		}
		c.mu.Unlock()
	}
}
