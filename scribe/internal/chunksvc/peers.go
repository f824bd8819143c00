package chunksvc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Peers keeps one Client per node: it dials on first use and again once
// a Client's connection has failed. It is what a replvol.Pool needs for
// the nodes other than its own. Safe for concurrent use.
type Peers struct {
	// TLS holds this node's client certificate and the cluster CA.
	// Required.
	TLS *tls.Config
	// Addr returns a node's chunk service address (host:7948). Required.
	Addr func(node string) (string, error)
	// DialTimeout bounds one dial. Zero value: 5 s.
	DialTimeout time.Duration

	mu      sync.Mutex
	clients map[string]*Client
}

// Client returns the connection to node, dialling it if needed.
func (p *Peers) Client(ctx context.Context, node string) (*Client, error) {
	p.mu.Lock()
	c := p.clients[node]
	p.mu.Unlock()
	if c != nil && c.Err() == nil {
		return c, nil
	}
	addr, err := p.Addr(node)
	if err != nil {
		return nil, fmt.Errorf("chunk service of node %s: %w: %w", node, ErrUnreachable, err)
	}
	timeout := p.DialTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := Dial(ctx, addr, p.TLS)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clients == nil {
		p.clients = map[string]*Client{}
	}
	if cur := p.clients[node]; cur != nil && cur != c && cur.Err() == nil {
		nc.Close() // another caller dialled first
		return cur, nil
	}
	if c != nil {
		c.Close()
	}
	p.clients[node] = nc
	return nc, nil
}

// Forget closes and drops the connection to node (a node stopped or left).
func (p *Peers) Forget(node string) {
	p.mu.Lock()
	c := p.clients[node]
	delete(p.clients, node)
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Close closes every connection.
func (p *Peers) Close() error {
	p.mu.Lock()
	cs := p.clients
	p.clients = nil
	p.mu.Unlock()
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
