package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/claim"
)

// Files in the data dir for claims (docs/claims.md).
const (
	claimsFile = "claims.db"         // the acceptor's promises (bbolt, fsynced)
	votersFile = "claim-voters.json" // the voter set, so that a restart never shrinks it
)

// claimPrefix is where the claim Service is mounted on the node API.
const claimPrefix = "/v1/svc/claim"

// claimService is this node's claims: the acceptor served to the other
// voters (the Service "claim"), the proposer behind the local API, the
// fence, and the voter set derived from membership.
//
// The voter set is persisted (votersFile, keyed by cluster ID) and only
// grows from membership: a member joins it when gossip shows it, and
// leaves it only when it is removed (revoked) or has left gracefully. So
// a restarted node, which sees only itself in gossip for a moment, keeps
// its voters and cannot become a majority of one. A node with no voter
// record for its cluster waits until gossip shows another member, or
// Timers.Settle (a cluster of one), before it has voters at all.
type claimService struct {
	p       *Peer
	node    atomic.Pointer[claim.Node] // set by open, nil after close
	store   *claim.BoltStore
	handler http.Handler
	closing chan struct{} // closed by endWaits: ends long polls
	endOnce sync.Once

	mu        sync.Mutex
	hc        *http.Client // cached mutual-TLS client
	hcRevoked int          // revocations when hc was built
	cluster   string       // cluster of voters
	voters    []string     // sorted
	since     time.Time    // first time this node saw itself a member without a voter record
}

func newClaimService(p *Peer) *claimService {
	return &claimService{p: p, closing: make(chan struct{})}
}

// Name implements Service.
func (cs *claimService) Name() string { return "claim" }

// ServeHTTP implements Service: the acceptor's RPCs for the other voters.
func (cs *claimService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if cs.node.Load() == nil || cs.handler == nil {
		http.Error(w, "claims are not running on this node", http.StatusServiceUnavailable)
		return
	}
	cs.handler.ServeHTTP(w, r)
}

// open opens the acceptor's store and builds the node; Run calls it before
// serving.
func (cs *claimService) open() error {
	p := cs.p
	store, err := claim.OpenBolt(filepath.Join(p.cfg.DataDir, claimsFile))
	if err != nil {
		return fmt.Errorf("open claims: %w", err)
	}
	if err := store.Check(); err != nil {
		store.Close()
		return fmt.Errorf("claims store %s: %w; the node must not vote with a damaged store: remove the node and re-admit it with a fresh data dir", filepath.Join(p.cfg.DataDir, claimsFile), err)
	}
	cfg := claim.DefaultConfig(p.id.NodeID)
	cfg.Log = p.log.With("component", "claim")
	t := &claim.HTTPTransport{Client: cs.client, URL: meshView{p}.URL, Prefix: claimPrefix}
	cs.loadVoters()
	vs, err := claim.NewVoterSet(cs.currentVoters()...)
	if err != nil {
		store.Close()
		return fmt.Errorf("claim voters: %w", err)
	}
	n, err := claim.New(cfg, store, t, vs)
	if err != nil {
		store.Close()
		return err
	}
	cs.store = store
	cs.handler = n.Handler(claimPrefix, PeerNodeID)
	cs.node.Store(n)
	return nil
}

// close waits for requests in flight and closes the store; Run calls it
// after the servers and Services stopped.
func (cs *claimService) close() {
	n := cs.node.Swap(nil)
	cs.endWaits()
	if n == nil {
		return
	}
	n.Close()
	if err := cs.store.Close(); err != nil {
		cs.p.log.Warn("close claims store", "err", err)
	}
	cs.mu.Lock()
	if cs.hc != nil {
		cs.hc.CloseIdleConnections()
	}
	cs.mu.Unlock()
}

// endWaits makes every fence long poll return now (the daemon stops).
func (cs *claimService) endWaits() { cs.endOnce.Do(func() { close(cs.closing) }) }

// Run implements Service: the probe loop that feeds the fence, and voter
// updates from membership, until ctx ends.
func (cs *claimService) Run(ctx context.Context, _ Mesh) error {
	n := cs.node.Load()
	if n == nil {
		return nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); n.Run(ctx) }()
	t := time.NewTicker(cs.p.cfg.Timers.Tick)
	defer t.Stop()
	for {
		cs.updateVoters(n)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// client returns the cached mutual-TLS client, rebuilt when the
// revocations changed (so that removed nodes are refused as servers too).
func (cs *claimService) client() *http.Client {
	p := cs.p
	p.mu.Lock()
	revoked := -1
	if p.cl != nil {
		revoked = len(p.cl.Revoked)
	}
	p.mu.Unlock()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.hc != nil && cs.hcRevoked == revoked {
		return cs.hc
	}
	hc, err := p.mtlsClient()
	if err != nil {
		return meshView{p}.HTTPClient() // refuses every server
	}
	if cs.hc != nil {
		cs.hc.CloseIdleConnections()
	}
	hc.Timeout = 0 // every claim request has its own context deadline
	cs.hc, cs.hcRevoked = hc, revoked
	return hc
}

// voterRecord is votersFile.
type voterRecord struct {
	ClusterID string   `json:"cluster_id"`
	Voters    []string `json:"voters"`
}

func (cs *claimService) loadVoters() {
	b, err := os.ReadFile(filepath.Join(cs.p.cfg.DataDir, votersFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			cs.p.log.Warn("read claim voters; rebuilding them from membership", "err", err)
		}
		return
	}
	r, err := parseVoterRecord(b)
	if err != nil {
		cs.p.log.Error("claim voters file is damaged; rebuilding them from membership (check that `shoal status` shows every member as a voter)", "path", filepath.Join(cs.p.cfg.DataDir, votersFile), "err", err)
		return
	}
	cs.mu.Lock()
	cs.cluster, cs.voters = r.ClusterID, r.Voters
	cs.mu.Unlock()
}

// parseVoterRecord decodes votersFile and checks it: a cluster ID and
// valid, sorted, unique voter IDs.
func parseVoterRecord(b []byte) (voterRecord, error) {
	var r voterRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return voterRecord{}, fmt.Errorf("parse claim voters: %w", err)
	}
	if r.ClusterID == "" {
		return voterRecord{}, errors.New("parse claim voters: no cluster ID")
	}
	for i, id := range r.Voters {
		if err := claim.ValidHolder(id); err != nil {
			return voterRecord{}, fmt.Errorf("parse claim voters: %w", err)
		}
		if i > 0 && r.Voters[i-1] >= id {
			return voterRecord{}, fmt.Errorf("parse claim voters: not sorted or not unique at %q", id)
		}
	}
	return r, nil
}

// currentVoters returns the voters of the current cluster (none when this
// node is not a member or the record belongs to another cluster).
func (cs *claimService) currentVoters() []string {
	id := cs.p.ClusterID()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if id == "" || cs.cluster != id {
		return nil
	}
	return slices.Clone(cs.voters)
}

// computeVoters derives the voter set from the persisted one and
// membership (see claimService).
func computeVoters(old []string, self string, members []client.Member, revoked []string, fresh bool) []string {
	set := map[string]bool{}
	for _, id := range old {
		set[id] = true
	}
	if len(old) > 0 || !fresh {
		set[self] = true
		for _, m := range members {
			set[m.ID] = true
		}
	}
	for _, m := range members {
		if m.State == client.StateLeft {
			delete(set, m.ID)
		}
	}
	for _, id := range revoked {
		delete(set, id)
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// updateVoters recomputes the voters, persists them when they changed and
// gives them to the claim node.
func (cs *claimService) updateVoters(n *claim.Node) {
	p := cs.p
	p.mu.Lock()
	if p.cl == nil {
		p.mu.Unlock()
		return
	}
	cluster := p.cl.ClusterID
	revoked := slices.Clone(p.cl.Revoked)
	p.mu.Unlock()
	members := p.members()
	self := p.id.NodeID
	now := p.now()

	cs.mu.Lock()
	old := cs.voters
	if cs.cluster != cluster {
		old = nil
	}
	// Without a voter record, wait until gossip shows another member or
	// Settle passed: a node just admitted must not vote alone.
	fresh := false
	if len(old) == 0 {
		if cs.since.IsZero() {
			cs.since = now
		}
		others := false
		for _, m := range members {
			others = others || (m.ID != self && m.State != client.StateLeft)
		}
		fresh = !others && now.Sub(cs.since) < p.cfg.Timers.Settle
	}
	next := computeVoters(old, self, members, revoked, fresh)
	changed := cs.cluster != cluster || !slices.Equal(next, cs.voters)
	if changed {
		cs.cluster, cs.voters = cluster, next
	}
	cs.mu.Unlock()
	if !changed {
		return
	}
	if err := writeVotersFile(filepath.Join(p.cfg.DataDir, votersFile), mustJSON(voterRecord{ClusterID: cluster, Voters: next})); err != nil {
		p.log.Warn("persist claim voters", "err", err)
	}
	vs, err := claim.NewVoterSet(next...)
	if err != nil {
		p.log.Warn("claim voters", "err", err)
		return
	}
	if len(old) > 0 && diffCount(old, next) > 1 {
		p.log.Warn("claim voter set changed by more than one node at once; admit or remove one node at a time (docs/claims.md)", "old", len(old), "new", len(next))
	}
	p.log.Info("claim voters changed", "voters", len(next), "majority", vs.Majority())
	n.SetVoters(vs)
}

func diffCount(a, b []string) int {
	d := 0
	for _, x := range a {
		if !slices.Contains(b, x) {
			d++
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			d++
		}
	}
	return d
}

// writeVotersFile writes b to path through a synced temporary file.
func writeVotersFile(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fenceStatus is the fence for the local API; ok is false before Run.
func (cs *claimService) fenceStatus() (client.FenceStatus, bool) {
	n := cs.node.Load()
	if n == nil {
		return client.FenceStatus{}, false
	}
	return toFenceStatus(n.Fence().Evaluate(), n.Voters()), true
}

func toFenceStatus(s claim.FenceState, v claim.VoterSet) client.FenceStatus {
	return client.FenceStatus{Fenced: s.Fenced, Since: s.Since.UTC(), Heard: s.Heard, Need: s.Need, Voters: slices.Clone(v.IDs())}
}
