package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/claim"
	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
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
	version   uint64       // of voters: each one-member change decided by a claim adds one
	since     time.Time    // first time this node saw itself a member without a voter record
	published string       // the voter set last reported in the cluster state (cluster + list)
	waiting   string       // the voter change last logged as waiting
	wonLogged string       // the voter change last logged as won by another node
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
	cfg.OnDecided = p.recordClaim
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
		cs.updateVoters(ctx, n)
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
	Version   uint64   `json:"version,omitempty"`
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
	cs.cluster, cs.voters, cs.version = r.ClusterID, r.Voters, r.Version
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

// updateVoters recomputes the voters, one member at a time (see
// stepVoters), persists them when they changed, gives them to the claim
// node and reports them in the cluster state.
func (cs *claimService) updateVoters(ctx context.Context, n *claim.Node) {
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
	old, ver := cs.voters, cs.version
	if cs.cluster != cluster {
		old, ver = nil, 0
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
	cs.mu.Unlock()
	target := computeVoters(old, self, members, revoked, fresh)
	step := stepVoters(old, ver, target, self, cs.reportedVoters(cluster))
	if step.Propose {
		// The change from version ver is decided by a claim: whoever wins
		// (claimVotersResource, version) takes its step; the others follow
		// its report.
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		version, won := cs.claimVoterStep(vctx, n, ver)
		cancel()
		if won {
			step.Version = version
		} else {
			step = voterStep{Voters: old, Version: ver}
		}
	}
	cs.mu.Lock()
	changed := cs.cluster != cluster || !slices.Equal(step.Voters, cs.voters) || step.Version != cs.version
	if changed {
		cs.cluster, cs.voters, cs.version = cluster, step.Voters, step.Version
	}
	logWait := ""
	if len(step.WaitFor) > 0 {
		logWait = fmt.Sprint(target, step.WaitFor)
	}
	logIt := logWait != "" && logWait != cs.waiting
	cs.waiting = logWait
	cs.mu.Unlock()
	if logIt {
		p.log.Warn("claim voter change waits until every voter has applied the current voter set (one change at a time; a voter that is down must come back or be removed)",
			"voters", len(old), "target", len(target), "waiting_for", step.WaitFor)
	}
	if changed {
		if err := writeVotersFile(filepath.Join(p.cfg.DataDir, votersFile), mustJSON(voterRecord{ClusterID: cluster, Voters: step.Voters, Version: step.Version})); err != nil {
			p.log.Warn("persist claim voters", "err", err)
		}
		vs, err := claim.NewVoterSet(step.Voters...)
		if err != nil {
			p.log.Warn("claim voters", "err", err)
			return
		}
		p.log.Info("claim voters changed", "voters", len(step.Voters), "majority", vs.Majority(), "version", step.Version)
		n.SetVoters(vs)
	}
	cs.publishVoters(n, cluster, step.Voters, step.Version)
}

// claimVoterStep claims the right to take the next voter change from
// version ver and returns the version won: ver+1, or a later one when
// that epoch of the claim is contended (nobody can win it, so nobody took
// a step there). It reports false when another node holds the next
// version (follow its report), a proposal of it is still open, or no
// majority answered (try again on the next tick).
func (cs *claimService) claimVoterStep(ctx context.Context, n *claim.Node, ver uint64) (uint64, bool) {
	self := cs.p.id.NodeID
	v, err := n.Read(ctx, claimVotersResource)
	if err != nil {
		cs.p.log.Debug("claim voter change: read", "err", err)
		return 0, false
	}
	epoch := ver + 1
	if v.Epoch > ver {
		switch {
		case v.State == claim.StateHeld && v.Holder == self:
			return v.Epoch, true // won before (a restart in between) and not taken yet
		case v.State == claim.StateHeld:
			cs.logWinner(v.Epoch, v.Holder)
			return 0, false
		case v.State == claim.StateContended:
			epoch = v.Epoch + 1
		default:
			return 0, false // open: someone is deciding it now
		}
	}
	c, err := n.Propose(ctx, claimVotersResource, epoch, self)
	switch {
	case err == nil:
		return epoch, true
	case errors.Is(err, claim.ErrTaken):
		cs.logWinner(epoch, c.Holder)
	default:
		cs.p.log.Debug("claim voter change", "version", epoch, "err", err)
	}
	return 0, false
}

// logWinner logs, once per version, that another node won a voter
// change this node waits to see reported.
func (cs *claimService) logWinner(version uint64, holder string) {
	cs.mu.Lock()
	key := fmt.Sprintf("won %d %s", version, holder)
	first := cs.wonLogged != key
	cs.wonLogged = key
	cs.mu.Unlock()
	if first {
		cs.p.log.Info("claim voter change decided by another node; following its report once it arrives (if that node is gone for good, voter changes wait until it is back)",
			"version", version, "by", holder)
	}
}

// Voter changes, one at a time. Any majority of a voter set and any
// majority of the same set with one member more or less share a voter, so
// nodes whose sets differ by one member cannot decide two holders for one
// (resource, epoch); sets that differ by two can. So the voter set has a
// version, and each change of one member is decided by a claim on
// (claimVotersResource, version+1): exactly one node takes the step from a
// version, the others adopt what it reports. A step is proposed only once
// every voter of the current version reports (in the cluster state) that
// it uses it and runs no claim on an older set any more. Then all voters
// are at version v or v+1: no two are more than one member apart.

// claimVotersResource is the claim that decides each voter change.
const claimVotersResource = "claim-voters"

// claimVotersPrefix is where each node reports the voter set it uses:
// claim-voters/<node ID>, fields cluster, version and voters (IDs joined
// by ",").
const claimVotersPrefix = "claim-voters/"

// voterReport is a node's claim-voters record.
type voterReport struct {
	Voters  []string
	Version uint64
}

// voterStep is what updateVoters does on one tick.
type voterStep struct {
	Voters  []string // the set to use from now on (the current one when nothing changes)
	Version uint64
	// Propose: Voters is one step from the current set; use it only after
	// winning the claim (claimVotersResource, Version).
	Propose bool
	WaitFor []string // voters that have not reported the current version yet
}

// stepVoters decides the next voter set from the current one (cur at
// version ver), the set computed from membership (target) and the
// reports of the other nodes (node ID → report, this cluster only):
//   - without a current set (a node just admitted, or the cluster just
//     created), adopt the highest version reported (ties: the lowest
//     reporter), or take target at version 0 when nobody reports yet;
//   - when a voter of cur reports a higher version, adopt the highest:
//     someone won the claim for the next step;
//   - else, toward target, one member per step (the first removal, else
//     the first addition, in ID order), to be claimed at ver+1, once every
//     voter of cur except this node and a member the step removes reports
//     version ver, and a member the step adds reports ver too or never
//     reported (a fresh node). A node that is not in cur takes no step
//     itself.
func stepVoters(cur []string, ver uint64, target []string, self string, reported map[string]voterReport) voterStep {
	ids := slices.Sorted(maps.Keys(reported))
	if len(cur) == 0 {
		best := ""
		for _, id := range ids {
			if len(reported[id].Voters) > 0 && (best == "" || reported[id].Version > reported[best].Version) {
				best = id
			}
		}
		if best != "" {
			return voterStep{Voters: slices.Clone(reported[best].Voters), Version: reported[best].Version}
		}
		return voterStep{Voters: target}
	}
	var ahead *voterReport
	for _, id := range cur {
		if r, ok := reported[id]; ok && id != self && r.Version > ver && len(r.Voters) > 0 && (ahead == nil || r.Version > ahead.Version) {
			ahead = &r
		}
	}
	if ahead != nil {
		return voterStep{Voters: slices.Clone(ahead.Voters), Version: ahead.Version}
	}
	keep := voterStep{Voters: cur, Version: ver}
	if slices.Equal(cur, target) || !slices.Contains(cur, self) {
		return keep
	}
	next := slices.Clone(cur)
	if i := slices.IndexFunc(cur, func(id string) bool { return !slices.Contains(target, id) }); i >= 0 {
		next = slices.Delete(next, i, i+1)
	} else if i := slices.IndexFunc(target, func(id string) bool { return !slices.Contains(cur, id) }); i >= 0 {
		next = append(next, target[i])
		slices.Sort(next)
	}
	for _, id := range cur {
		if id == self || !slices.Contains(next, id) {
			continue
		}
		if r, ok := reported[id]; !ok || r.Version != ver {
			keep.WaitFor = append(keep.WaitFor, id)
		}
	}
	// A member added back after it was removed may still hold the set of
	// an old version (it was partitioned, or its revocation had not
	// reached everyone) and count stale voters with it: add it only once
	// it reports the current version (it adopts it from any voter of its
	// old set), or when it never reported (a fresh node).
	for _, id := range next {
		if r, ok := reported[id]; ok && !slices.Contains(cur, id) && id != self && r.Version != ver {
			keep.WaitFor = append(keep.WaitFor, id)
		}
	}
	if len(keep.WaitFor) > 0 {
		return keep
	}
	return voterStep{Voters: next, Version: ver + 1, Propose: true}
}

// reportedVoters reads the voter reports of this cluster's nodes from the
// cluster state.
func (cs *claimService) reportedVoters(cluster string) map[string]voterReport {
	out := map[string]voterReport{}
	st := cs.p.store.Load()
	if st == nil {
		return out
	}
	es, _, err := st.List(claimVotersPrefix)
	if err != nil {
		return out
	}
	for _, e := range es {
		if string(e.Record.Value("cluster")) != cluster {
			continue
		}
		var r voterReport
		if v := string(e.Record.Value("voters")); v != "" {
			r.Voters = strings.Split(v, ",")
		}
		r.Version, _ = strconv.ParseUint(string(e.Record.Value("version")), 10, 64)
		out[strings.TrimPrefix(e.Key, claimVotersPrefix)] = r
	}
	return out
}

// publishVoters reports the voter set this node uses in the cluster
// state, once no claim that started on an older set is still running.
func (cs *claimService) publishVoters(n *claim.Node, cluster string, voters []string, version uint64) {
	rep := strings.Join(voters, ",")
	key := fmt.Sprintf("%s/%d/%s", cluster, version, rep)
	cs.mu.Lock()
	same := cs.published == key
	cs.mu.Unlock()
	st := cs.p.store.Load()
	if same || st == nil || !n.VotersSettled() {
		return
	}
	if _, err := st.Put(claimVotersPrefix+cs.p.id.NodeID, map[string][]byte{
		"cluster": []byte(cluster), "version": []byte(strconv.FormatUint(version, 10)), "voters": []byte(rep)}); err != nil {
		cs.p.log.Warn("report claim voters in the cluster state", "err", err)
		return
	}
	cs.mu.Lock()
	cs.published = key
	cs.mu.Unlock()
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

// recordClaim writes a decided claim into the cluster state, for display:
// record claim/<resource>, field e<epoch> = holder (client.ClaimRecordKey,
// client.ClaimFromState). One field per epoch, so that two nodes writing
// different epochs at once never replace a higher epoch with a lower one
// under last-writer-wins (the same epoch always has the same holder).
// Lower epoch fields this node sees are cleared in the same write; a
// record that already shows this epoch or a later one is left alone.
// The acceptors stay the truth: this is a display copy.
func (p *Peer) recordClaim(c claim.Claim) {
	st := p.store.Load()
	if st == nil {
		return
	}
	key := client.ClaimRecordKey(c.Resource)
	var ops []crdt.Op
	r, err := st.Get(key)
	switch {
	case err == nil:
		for name := range r.Fields {
			if e, ok := client.ClaimEpochOfField(name); ok {
				if e >= c.Epoch {
					return
				}
				ops = append(ops, crdt.Op{Field: name, Set: true}) // an empty value clears it
			}
		}
	case !errors.Is(err, statestore.ErrNotFound):
		p.log.Warn("record claim in the cluster state", "resource", c.Resource, "epoch", c.Epoch, "err", err)
		return
	}
	ops = append(ops, crdt.Op{Field: client.ClaimEpochField(c.Epoch), Set: true, Value: []byte(c.Holder)})
	if _, err := st.Write(key, ops...); err != nil {
		p.log.Warn("record claim in the cluster state", "resource", c.Resource, "epoch", c.Epoch, "err", err)
	}
}
