package claim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Transport carries a proposer's requests to other nodes' acceptors. The
// daemon implements it over HTTPS with mutual TLS; the receiving side calls
// Acceptor.Prepare/Accept/Read and answers Ping. Calls honour ctx. An error
// means no reply (lost, refused, timed out): it is never an answer.
type Transport interface {
	Prepare(ctx context.Context, to string, q PrepareRequest) (Reply, error)
	Accept(ctx context.Context, to string, q AcceptRequest) (Reply, error)
	Read(ctx context.Context, to string, q ReadRequest) (Reply, error)
	// Ping succeeds when node to is up and counts this node as a member.
	Ping(ctx context.Context, to string) error
}

// ErrUnreachable is returned by MemTransport for a node that is down or cut off.
var ErrUnreachable = errors.New("node unreachable")

// MemTransport connects acceptors in one process, for tests and
// benchmarks. Nodes can be marked down or cut off from each other.
type MemTransport struct {
	// Latency, if set, is called for every call and the call waits that
	// long first (honouring ctx). Set it before use.
	Latency func(from, to string) time.Duration

	mu        sync.Mutex
	acceptors map[string]*Acceptor
	down      map[string]bool
	cut       map[[2]string]bool
}

// NewMemTransport returns an empty MemTransport.
func NewMemTransport() *MemTransport {
	return &MemTransport{acceptors: map[string]*Acceptor{}, down: map[string]bool{}, cut: map[[2]string]bool{}}
}

// Add registers node id's acceptor (replacing any previous one: a restart).
func (t *MemTransport) Add(id string, a *Acceptor) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.acceptors[id] = a
}

// SetDown marks a node down (every call to it fails) or up.
func (t *MemTransport) SetDown(id string, down bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.down[id] = down
}

// Partition cuts every link between a node of group a and a node of group b.
func (t *MemTransport) Partition(a, b []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			t.cut[[2]string{x, y}] = true
			t.cut[[2]string{y, x}] = true
		}
	}
}

// Heal removes every partition.
func (t *MemTransport) Heal() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cut = map[[2]string]bool{}
}

// From returns the Transport seen by node from.
func (t *MemTransport) From(from string) Transport { return memEnd{t, from} }

func (t *MemTransport) target(ctx context.Context, from, to string) (*Acceptor, error) {
	if t.Latency != nil {
		if d := t.Latency(from, to); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-ctx.Done():
				tm.Stop()
				return nil, ctx.Err()
			case <-tm.C:
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.acceptors[to]
	if !ok || t.down[to] || t.down[from] || t.cut[[2]string{from, to}] {
		return nil, fmt.Errorf("%s to %s: %w", from, to, ErrUnreachable)
	}
	return a, nil
}

type memEnd struct {
	t    *MemTransport
	from string
}

func (e memEnd) Prepare(ctx context.Context, to string, q PrepareRequest) (Reply, error) {
	a, err := e.t.target(ctx, e.from, to)
	if err != nil {
		return Reply{}, err
	}
	return a.Prepare(q)
}

func (e memEnd) Accept(ctx context.Context, to string, q AcceptRequest) (Reply, error) {
	a, err := e.t.target(ctx, e.from, to)
	if err != nil {
		return Reply{}, err
	}
	return a.Accept(q)
}

func (e memEnd) Read(ctx context.Context, to string, q ReadRequest) (Reply, error) {
	a, err := e.t.target(ctx, e.from, to)
	if err != nil {
		return Reply{}, err
	}
	return a.Read(q)
}

func (e memEnd) Ping(ctx context.Context, to string) error {
	_, err := e.t.target(ctx, e.from, to)
	return err
}
