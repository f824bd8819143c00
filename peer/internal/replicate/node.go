package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

// Transport carries messages to a peer, by node ID. The HTTP-over-mTLS
// transport of the peer daemon implements it; MemNetwork does in tests.
type Transport interface {
	Push(ctx context.Context, to string, m *PushMsg) error
	Pull(ctx context.Context, to string, q *PullRequest) (*PullResponse, error)
}

// Config configures a Node.
type Config struct {
	// Store is the local replica. Required.
	Store *statestore.Store
	// Transport reaches the peers. Required.
	Transport Transport
	// Peers returns the node IDs of the other members to replicate with
	// (alive ones). Required.
	Peers func() []string
	// Members returns every member's node ID, alive or not, but not those
	// removed from the cluster: tombstones wait for all of them, and a
	// node dropped from this list must resync if it comes back. Nil: Peers.
	Members func() []string
	// Fanout is how many random peers each newly applied change is pushed
	// to (every node forwards what it newly applies, once). Zero: about
	// log2 of the cluster size, at least 3, so that the push epidemic
	// reaches every node with high probability; pulls catch the rest.
	Fanout int
	// PullInterval is the mean time between pulls from a random peer
	// (jittered ±25 %). Zero: 1 s.
	PullInterval time.Duration
	// GCInterval is the time between tombstone collections. Zero: 1 min.
	GCInterval time.Duration
	// Timeout bounds each push and each pull round trip. Zero: 5 s.
	Timeout time.Duration
	// MaxMessageBytes bounds the changes or records in one message.
	// Zero: 1 MiB.
	MaxMessageBytes int
	// Seed seeds peer selection. Zero: random.
	Seed uint64
	// Logger. Nil: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the defaults filled in.
func DefaultConfig() Config {
	return Config{PullInterval: time.Second, GCInterval: time.Minute, Timeout: 5 * time.Second, MaxMessageBytes: 1 << 20}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.Store == nil || c.Transport == nil || c.Peers == nil {
		return errors.New("replicate config: store, transport and peers are required")
	}
	if c.Fanout < 0 || c.PullInterval < 0 || c.GCInterval < 0 || c.Timeout < 0 || c.MaxMessageBytes < 0 {
		return errors.New("replicate config: intervals, fanout and sizes must not be negative")
	}
	return nil
}

// Stats counts what a Node did.
type Stats struct {
	PushesSent    int64 // push messages handed to the transport
	PushesDropped int64 // pushes skipped because the peer was busy
	PushErrors    int64
	Pulls         int64 // pull round trips completed
	PullErrors    int64
	Applied       int64 // changes applied from peers
	Snapshots     int64 // snapshot chunks imported
	Resets        int64 // times this node reset for a resync
	ClockRefused  int64 // batches refused for a peer's clock offset
}

// Node replicates one store.
type Node struct {
	cfg   Config
	store *statestore.Store
	log   *slog.Logger

	rmu sync.Mutex
	rnd *rand.Rand

	kick   chan string        // peers to pull from soon (a push showed a gap)
	pushed crdt.VersionVector // what the pusher has pushed (or found at New)

	smu  sync.Mutex
	same map[string]bool // peers whose last pull found equal vectors

	imu      sync.Mutex
	inflight map[string][]*PushMsg // peers with a push in flight → pushes queued behind it

	stats struct {
		pushesSent, pushesDropped, pushErrors, pulls, pullErrors, applied, snapshots, resets, clockRefused atomic.Int64
	}
}

// New returns a Node; call Run to start replicating.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := DefaultConfig()
	if cfg.PullInterval == 0 {
		cfg.PullInterval = d.PullInterval
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = d.GCInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = d.MaxMessageBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	pushed, err := cfg.Store.VV()
	if err != nil {
		return nil, fmt.Errorf("replicate: %w", err)
	}
	return &Node{
		pushed: pushed,
		cfg:    cfg, store: cfg.Store, log: cfg.Logger.With("component", "replicate"),
		rnd: rand.New(rand.NewPCG(seed, 0x5ee)), kick: make(chan string, 1), inflight: map[string][]*PushMsg{}, same: map[string]bool{},
	}, nil
}

// Stats returns the counters so far.
func (n *Node) Stats() Stats {
	s := &n.stats
	return Stats{
		PushesSent: s.pushesSent.Load(), PushesDropped: s.pushesDropped.Load(), PushErrors: s.pushErrors.Load(),
		Pulls: s.pulls.Load(), PullErrors: s.pullErrors.Load(), Applied: s.applied.Load(),
		Snapshots: s.snapshots.Load(), Resets: s.resets.Load(), ClockRefused: s.clockRefused.Load(),
	}
}

// Run replicates until ctx is cancelled, then waits for its goroutines
// and returns nil.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { n.pushLoop(ctx, &wg) })
	wg.Go(func() { n.pullLoop(ctx) })
	wg.Go(func() { n.gcLoop(ctx) })
	wg.Wait()
	return nil
}

// randomPeers returns up to k distinct random peers (k <= 0: the
// default fanout for the cluster's size).
func (n *Node) randomPeers(k int) []string {
	peers := n.cfg.Peers()
	if k <= 0 {
		k = max(3, bits.Len(uint(len(peers))))
	}
	n.rmu.Lock()
	defer n.rmu.Unlock()
	n.rnd.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	if len(peers) > k {
		peers = peers[:k]
	}
	return peers
}

func (n *Node) jitter(d time.Duration) time.Duration {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	return d*3/4 + time.Duration(n.rnd.Int64N(int64(d/2)+1))
}

// pushLoop pushes every change applied here after New (local or from a
// peer) to Fanout random peers. Run it once per Node. Push goroutines are owned by wg.
func (n *Node) pushLoop(ctx context.Context, wg *sync.WaitGroup) {
	pushed := n.pushed
	for {
		changed := n.store.Changed()
		for {
			ch, err := n.store.ChangesSince(pushed, n.cfg.MaxMessageBytes)
			if err != nil {
				// a closed or failing store: retry later, pulls go on
				n.log.Error("read changes to push", "err", err)
				t := time.NewTimer(n.cfg.PullInterval)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				break
			}
			if ch.Snapshot {
				// more arrived than the log keeps: peers will pull it
				if pushed, err = n.store.VV(); err != nil {
					n.log.Error("read version vector", "err", err)
				}
				break
			}
			if len(ch.Changes) == 0 {
				break
			}
			for _, c := range ch.Changes {
				if c.Seq > pushed[c.Origin] {
					pushed[c.Origin] = c.Seq
				}
			}
			m := &PushMsg{From: n.store.NodeID(), Origin: n.store.Origin(), Changes: ch.Changes}
			for _, p := range n.randomPeers(n.cfg.Fanout) {
				n.pushTo(ctx, wg, p, m)
			}
			if !ch.More {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// pushTo sends m to peer without waiting: through the goroutine already
// pushing to peer when there is one (queued, at most maxQueued messages;
// beyond that the push is dropped and pulls repair it), else a new one.
func (n *Node) pushTo(ctx context.Context, wg *sync.WaitGroup, peer string, m *PushMsg) {
	n.imu.Lock()
	if q, busy := n.inflight[peer]; busy {
		if len(q) >= maxQueued {
			n.imu.Unlock()
			n.stats.pushesDropped.Add(1)
			return
		}
		n.inflight[peer] = append(q, m)
		n.imu.Unlock()
		return
	}
	n.inflight[peer] = []*PushMsg{}
	n.imu.Unlock()
	wg.Go(func() {
		for {
			n.stats.pushesSent.Add(1)
			pctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
			err := n.cfg.Transport.Push(pctx, peer, m)
			cancel()
			if err != nil {
				n.stats.pushErrors.Add(1)
				n.log.Debug("push", "peer", peer, "err", err)
			}
			n.imu.Lock()
			q := n.inflight[peer]
			if len(q) == 0 || ctx.Err() != nil {
				n.stats.pushesDropped.Add(int64(len(q)))
				delete(n.inflight, peer)
				n.imu.Unlock()
				return
			}
			m, n.inflight[peer] = q[0], q[1:]
			n.imu.Unlock()
		}
	})
}

// maxQueued bounds the pushes waiting for one busy peer.
const maxQueued = 16

// pullLoop pulls from a random peer every PullInterval (jittered), and
// at once from a peer a push showed a gap with. The first pull goes out as
// soon as there is a peer (a node that just joined catches up at once),
// checking every firstPullWait until then.
func (n *Node) pullLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	first := true
	for {
		var peer string
		select {
		case <-ctx.Done():
			return
		case peer = <-n.kick:
			first = false
		case <-t.C:
			ps := n.randomPeers(1)
			if len(ps) == 0 {
				if first {
					t.Reset(min(firstPullWait, n.cfg.PullInterval))
				} else {
					t.Reset(n.jitter(n.cfg.PullInterval))
				}
				continue
			}
			t.Reset(n.jitter(n.cfg.PullInterval))
			peer, first = ps[0], false
		}
		if err := n.PullOnce(ctx, peer); err != nil && ctx.Err() == nil {
			n.log.Debug("pull", "peer", peer, "err", err)
		}
	}
}

// firstPullWait is how often a starting node looks for a first peer to pull from.
const firstPullWait = 100 * time.Millisecond

func (n *Node) gcLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		members := n.cfg.Members
		if members == nil {
			members = n.cfg.Peers
		}
		if err := n.store.SetMembers(members()); err != nil {
			n.log.Error("record members", "err", err)
			continue
		}
		st, err := n.store.CollectGarbage()
		if err != nil {
			n.log.Error("collect tombstones", "err", err)
			continue
		}
		n.log.Debug("tombstone collection", "collected", st.Collected, "blocked", st.Blocked, "expelled", st.Expelled)
		if len(st.Expelled) > 0 {
			n.forgetSame() // the next pull to every peer carries the new marks
		}
	}
}

// PullOnce runs one anti-entropy exchange with peer: it sends its
// version vector and merges what comes back (more round trips while the
// answer is cut short by the size bound, and for a snapshot).
func (n *Node) PullOnce(ctx context.Context, peer string) error {
	for round := 0; ; round++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		more, err := n.pullRound(ctx, peer)
		if err != nil {
			n.stats.pullErrors.Add(1)
			return fmt.Errorf("pull from %s: %w", peer, err)
		}
		n.stats.pulls.Add(1)
		if !more {
			return nil
		}
	}
}

// pullRound does one round trip and reports whether another is needed.
func (n *Node) pullRound(ctx context.Context, peer string) (bool, error) {
	resetting, err := n.store.NeedsReset()
	if err != nil {
		return false, err
	}
	vv, err := n.store.VV()
	if err != nil {
		return false, err
	}
	marks, err := n.store.ResyncMarks()
	if err != nil {
		return false, err
	}
	q := &PullRequest{From: n.store.NodeID(), Origin: n.store.Origin(), VV: vv, Snapshot: resetting, Resync: marks}
	if !resetting && n.wasSame(peer) {
		// quiet so far: send a hash of the vector, not the vector
		q.VV, q.VVHash, q.Resync = nil, HashVV(vv), nil
	}
	resp, err := n.call(ctx, peer, q)
	if err != nil {
		return false, err
	}
	if resp.NeedVV && q.VVHash != nil {
		q.VV, q.VVHash, q.Resync = vv, nil, marks
		if resp, err = n.call(ctx, peer, q); err != nil {
			return false, err
		}
	}
	n.setSame(peer, resp.Same)
	must, err := n.store.MustResync(resp.From, resp.Origin)
	if err != nil {
		return false, err
	}
	if must && !(resp.Reset && n.store.NodeID() > resp.From) {
		// The peer was away past the rejoin horizon: merge nothing from
		// it; it resets when it pulls from us. When both sides marked each
		// other (a partition longer than the horizon), the node with the
		// higher ID resets.
		return false, fmt.Errorf("%s (%s): %w", resp.From, resp.Origin, ErrMustResync)
	}
	if resp.Reset && !resetting {
		n.log.Warn("this node was away longer than the rejoin horizon: resetting its state from a peer's snapshot; its unreplicated writes are dropped", "peer", peer)
		n.stats.resets.Add(1)
		if err := n.store.Reset(); err != nil {
			return false, err
		}
		// Keep the peer's expulsions: the other nodes of the side this
		// node was on must reset too, and it must not merge from them.
		if _, err := n.store.AdoptResync(resp.Resync); err != nil {
			return false, err
		}
		n.forgetSame()
		return true, nil // ask again, as a resetting node, from the first chunk
	}
	if resp.Snapshot != nil {
		// a transfer from the first chunk to the last, in one go
		for {
			if err := n.store.ImportSnapshot(resp.Snapshot); err != nil {
				n.noteClock(peer, err)
				return false, err
			}
			n.stats.snapshots.Add(1)
			if !resp.Snapshot.More {
				break
			}
			es := resp.Snapshot.Entries
			if len(es) == 0 {
				return false, fmt.Errorf("%w: snapshot chunk with more but no entries", ErrBadMessage)
			}
			q.Snapshot, q.SnapshotAfter = true, es[len(es)-1].Key
			if resp, err = n.call(ctx, peer, q); err != nil {
				return false, err
			}
			if resp.Snapshot == nil {
				return false, fmt.Errorf("%w: snapshot transfer interrupted", ErrBadMessage)
			}
		}
		return false, n.ackFrom(resp)
	}
	if len(resp.Changes) > 0 {
		k, err := n.store.Apply(resp.Changes)
		n.stats.applied.Add(int64(k))
		if err != nil {
			n.noteClock(peer, err)
			return false, err
		}
	}
	if err := n.ackFrom(resp); err != nil {
		return false, err
	}
	return resp.More, nil
}

func (n *Node) call(ctx context.Context, peer string, q *PullRequest) (*PullResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	return n.cfg.Transport.Pull(cctx, peer, q)
}

func (n *Node) ackFrom(resp *PullResponse) error {
	if resp.Same {
		vv, err := n.store.VV()
		if err != nil {
			return err
		}
		return n.store.Ack(resp.From, resp.Origin, vv)
	}
	return n.store.Ack(resp.From, resp.Origin, resp.VV)
}

func (n *Node) noteClock(peer string, err error) {
	if errors.Is(err, hlc.ErrClockOffset) {
		n.stats.clockRefused.Add(1)
		n.log.Warn("refused changes stamped too far in the future: a node's clock runs ahead; fix its time source", "via_peer", peer, "err", err)
	}
}

// HandlePush merges a peer's pushed changes. A gap (changes missing
// before these) makes the node pull from that peer soon.
func (n *Node) HandlePush(ctx context.Context, m *PushMsg) error {
	must, err := n.store.MustResync(m.From, m.Origin)
	if err != nil {
		return err
	}
	if must {
		return fmt.Errorf("push from %s (%s): %w", m.From, m.Origin, ErrMustResync)
	}
	k, err := n.store.Apply(m.Changes)
	n.stats.applied.Add(int64(k))
	if err != nil {
		n.noteClock(m.From, err)
		return err
	}
	vv, err := n.store.VV()
	if err != nil {
		return err
	}
	for _, c := range m.Changes {
		if c.Seq > vv[c.Origin] {
			n.pullSoon(m.From)
			break
		}
	}
	return nil
}

// wasSame reports whether the last pull from peer found equal vectors.
func (n *Node) wasSame(peer string) bool {
	n.smu.Lock()
	defer n.smu.Unlock()
	return n.same[peer]
}

func (n *Node) setSame(peer string, same bool) {
	n.smu.Lock()
	defer n.smu.Unlock()
	if same {
		n.same[peer] = true
	} else {
		delete(n.same, peer)
	}
}

// forgetSame makes the next pull to every peer send the full version
// vector, and with it this node's resync marks.
func (n *Node) forgetSame() {
	n.smu.Lock()
	defer n.smu.Unlock()
	clear(n.same)
}

// pullSoon asks the puller to pull from peer next, if it is not busy.
func (n *Node) pullSoon(peer string) {
	select {
	case n.kick <- peer:
	default:
	}
}

// HandlePull answers a peer's pull request.
func (n *Node) HandlePull(ctx context.Context, q *PullRequest) (*PullResponse, error) {
	resp := &PullResponse{From: n.store.NodeID(), Origin: n.store.Origin()}
	must, err := n.store.MustResync(q.From, q.Origin)
	if err != nil {
		return nil, err
	}
	if must {
		resp.Reset = true
		if resp.Resync, err = n.store.ResyncMarks(); err != nil {
			return nil, err
		}
		return resp, nil
	}
	if added, err := n.store.AdoptResync(q.Resync); err != nil {
		return nil, err
	} else if added {
		n.forgetSame() // pass the marks on with the next pulls
	}
	if q.VVHash != nil {
		vv, err := n.store.VV()
		if err != nil {
			return nil, err
		}
		if q.Snapshot || !bytes.Equal(q.VVHash, HashVV(vv)) {
			resp.NeedVV = true
			return resp, nil
		}
		if err := n.store.Ack(q.From, q.Origin, vv); err != nil {
			return nil, err
		}
		resp.Same = true
		return resp, nil
	}
	defer func() { n.setSame(q.From, resp.Same) }()
	if err := n.store.Ack(q.From, q.Origin, q.VV); err != nil {
		return nil, err
	}
	if q.Snapshot {
		if resp.Snapshot, err = n.store.Snapshot(q.SnapshotAfter, n.cfg.MaxMessageBytes); err != nil {
			return nil, err
		}
		resp.VV = resp.Snapshot.VV
		return resp, nil
	}
	vv, err := n.store.VV()
	if err != nil {
		return nil, err
	}
	if !vv.Dominates(q.VV) {
		n.pullSoon(q.From) // the requester has changes we lack
	}
	if vv.Equal(q.VV) {
		resp.Same = true
		return resp, nil
	}
	resp.VV = vv
	ch, err := n.store.ChangesSince(q.VV, n.cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	if ch.Snapshot {
		if resp.Snapshot, err = n.store.Snapshot("", n.cfg.MaxMessageBytes); err != nil {
			return nil, err
		}
		resp.VV = resp.Snapshot.VV
		return resp, nil
	}
	resp.Changes, resp.More = ch.Changes, ch.More
	return resp, nil
}
