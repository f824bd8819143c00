package discovery

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Conn sends and receives raw beacons.
type Conn interface {
	Send(p []byte) error
	// Recv blocks for the next datagram; it returns an error once closed.
	Recv(buf []byte) (int, error)
	Close() error
}

// Config configures an Announcer.
type Config struct {
	Conn     Conn
	Interval time.Duration // between beacons; zero means 2s
	Expiry   time.Duration // a node not heard for this long is forgotten; zero means 4×Interval
	Self     func() Beacon // the beacon to send, read before each send
	Log      *slog.Logger
	Now      func() time.Time // zero means time.Now
}

// Announcer sends this node's beacon and keeps a table of the others.
type Announcer struct {
	cfg  Config
	mu   sync.Mutex
	seen map[string]Seen
	kick chan struct{}
}

// New returns an Announcer.
func New(cfg Config) *Announcer {
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Expiry == 0 {
		cfg.Expiry = 4 * cfg.Interval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Announcer{cfg: cfg, seen: map[string]Seen{}, kick: make(chan struct{}, 1)}
}

// Announce sends a beacon now (after a state change) instead of waiting.
func (a *Announcer) Announce() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Peers returns the nodes heard within the expiry, sorted by node ID.
func (a *Announcer) Peers() []Seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	var out []Seen
	for id, s := range a.seen {
		if now.Sub(s.At) > a.cfg.Expiry {
			delete(a.seen, id)
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// Run sends and receives until ctx ends; it closes the Conn.
func (a *Announcer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, MaxBeacon+1)
		for {
			n, err := a.cfg.Conn.Recv(buf)
			if err != nil {
				if ctx.Err() == nil {
					a.cfg.Log.Warn("discovery receive stopped", "err", err)
				}
				return
			}
			b, err := ParseBeacon(buf[:n])
			if err != nil {
				a.cfg.Log.Debug("ignoring datagram on discovery port", "err", err)
				continue
			}
			self := a.cfg.Self()
			if b.NodeID == self.NodeID {
				continue
			}
			a.mu.Lock()
			a.seen[b.NodeID] = Seen{Beacon: b, At: a.cfg.Now()}
			a.mu.Unlock()
		}
	}()
	defer wg.Wait()
	defer a.cfg.Conn.Close()
	for {
		if err := a.cfg.Conn.Send(a.cfg.Self().Marshal()); err != nil && ctx.Err() == nil {
			a.cfg.Log.Debug("send discovery beacon", "err", err)
		}
		// Jitter ±25% so that nodes powered on together spread out.
		d := a.cfg.Interval*3/4 + time.Duration(rand.Int64N(int64(a.cfg.Interval/2)+1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-a.kick:
			t.Stop()
		case <-t.C:
		}
	}
}
