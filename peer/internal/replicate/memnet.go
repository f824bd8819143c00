package replicate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Handler is the receiving side of the protocol (a *Node).
type Handler interface {
	HandlePush(ctx context.Context, m *PushMsg) error
	HandlePull(ctx context.Context, q *PullRequest) (*PullResponse, error)
}

// MemNetwork connects Nodes in one process. Every message is encoded and
// decoded on the way, and counted. Faults are set with the exported
// fields before use or with the methods at any time.
type MemNetwork struct {
	// Loss is the probability that a message is lost (a lost pull fails
	// with ErrUnreachable; a lost push vanishes).
	Loss float64
	// Dup is the probability that a push is delivered twice.
	Dup float64
	// MaxDelay, when positive, delivers pushes after a random delay up to
	// it, in another goroutine, so they arrive reordered.
	MaxDelay time.Duration

	mu      sync.Mutex
	rnd     *rand.Rand
	nodes   map[string]Handler
	group   map[string]int // partition group of each node; absent: 0
	slow    map[string]time.Duration
	closing bool
	wg      sync.WaitGroup

	pushBytes, pullBytes, messages atomic.Int64
}

// NewMemNetwork returns an empty network whose faults are drawn from seed.
func NewMemNetwork(seed uint64) *MemNetwork {
	return &MemNetwork{rnd: rand.New(rand.NewPCG(seed, 0x11e7)), nodes: map[string]Handler{}, group: map[string]int{}, slow: map[string]time.Duration{}}
}

// Add attaches a node.
func (m *MemNetwork) Add(id string, h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[id] = h
}

// Remove detaches a node (it becomes unreachable, as if dead).
func (m *MemNetwork) Remove(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, id)
}

// Partition splits the network: nodes in different groups cannot reach
// each other; nodes not named are in group 0 with each other.
func (m *MemNetwork) Partition(groups ...[]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.group = map[string]int{}
	for i, g := range groups {
		for _, id := range g {
			m.group[id] = i + 1
		}
	}
}

// Heal removes every partition.
func (m *MemNetwork) Heal() { m.Partition() }

// SetSlow makes every message to id take d before it is handled (a slow
// peer; with a long d, a hung one).
func (m *MemNetwork) SetSlow(id string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.slow[id] = d
}

// Bytes returns the encoded bytes carried so far by pushes and by pulls
// (requests and responses), and the number of messages.
func (m *MemNetwork) Bytes() (push, pull, messages int64) {
	return m.pushBytes.Load(), m.pullBytes.Load(), m.messages.Load()
}

// Close waits for delayed deliveries in flight and stops new ones.
func (m *MemNetwork) Close() {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.wg.Wait()
}

// Transport returns the transport node from uses.
func (m *MemNetwork) Transport(from string) Transport { return memTransport{m, from} }

type memTransport struct {
	m    *MemNetwork
	from string
}

// route returns the handler for to, whether the message is lost, and the
// slowness of the target.
func (m *MemNetwork) route(from, to string) (Handler, bool, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.nodes[to]
	if h == nil || m.group[from] != m.group[to] || m.closing {
		return nil, true, 0
	}
	return h, m.Loss > 0 && m.rnd.Float64() < m.Loss, m.slow[to]
}

func (m *MemNetwork) draw(p float64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return p > 0 && m.rnd.Float64() < p
}

func (m *MemNetwork) delay() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.MaxDelay <= 0 {
		return 0
	}
	return time.Duration(m.rnd.Int64N(int64(m.MaxDelay)))
}

func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (t memTransport) Push(ctx context.Context, to string, msg *PushMsg) error {
	m := t.m
	b := msg.Marshal()
	m.pushBytes.Add(int64(len(b)))
	m.messages.Add(1)
	h, lost, slow := m.route(t.from, to)
	if h == nil {
		return fmt.Errorf("push to %s: %w", to, ErrUnreachable)
	}
	if lost {
		return nil
	}
	if err := wait(ctx, slow); err != nil {
		return err
	}
	copies := 1
	if m.draw(m.Dup) {
		copies = 2
	}
	for range copies {
		dm, err := UnmarshalPush(b)
		if err != nil {
			return err
		}
		if d := m.delay(); d > 0 {
			m.mu.Lock()
			if m.closing {
				m.mu.Unlock()
				return nil
			}
			m.wg.Go(func() {
				wait(context.Background(), d)
				h.HandlePush(context.Background(), dm)
			})
			m.mu.Unlock()
			continue
		}
		if err := h.HandlePush(ctx, dm); err != nil {
			return err
		}
	}
	return nil
}

func (t memTransport) Pull(ctx context.Context, to string, q *PullRequest) (*PullResponse, error) {
	m := t.m
	b := q.Marshal()
	m.pullBytes.Add(int64(len(b)))
	m.messages.Add(1)
	h, lost, slow := m.route(t.from, to)
	if h == nil || lost {
		return nil, fmt.Errorf("pull from %s: %w", to, ErrUnreachable)
	}
	if err := wait(ctx, slow); err != nil {
		return nil, err
	}
	dq, err := UnmarshalPullRequest(b)
	if err != nil {
		return nil, err
	}
	resp, err := h.HandlePull(ctx, dq)
	if err != nil {
		return nil, err
	}
	rb := resp.Marshal()
	m.pullBytes.Add(int64(len(rb)))
	m.messages.Add(1)
	if m.draw(m.Loss) {
		return nil, fmt.Errorf("pull response from %s: %w", to, ErrUnreachable)
	}
	return UnmarshalPullResponse(rb)
}
