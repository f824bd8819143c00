package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
	"github.com/shoal-hci/shoal/peer/internal/replicate"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

// stateFile is the state store in the data dir.
const stateFile = "state.db"

// StateConfig tunes the cluster state store and its replication. The zero
// value gives the defaults of each field.
type StateConfig struct {
	// PullInterval is the mean time between anti-entropy pulls from a
	// random member. Zero: 1 s.
	PullInterval time.Duration
	// GCInterval is the time between tombstone collections. Zero: 1 min.
	GCInterval time.Duration
	// RejoinHorizon is how long a member may stay silent before it must
	// reload from a snapshot. Zero: 7 days.
	RejoinHorizon time.Duration
	// EventsKeep is how many cluster events the store keeps; EventsMaxAge
	// how long. Zero: 10000 events, 30 days.
	EventsKeep   int
	EventsMaxAge time.Duration
	// PruneInterval is the time between event prunes. Zero: 10 min.
	PruneInterval time.Duration
	// NoSync skips fsync on commit. Tests only: a crash loses writes.
	NoSync bool
}

func (c StateConfig) withDefaults() StateConfig {
	if c.EventsKeep == 0 {
		c.EventsKeep = 10000
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = 30 * 24 * time.Hour
	}
	if c.PruneInterval == 0 {
		c.PruneInterval = 10 * time.Minute
	}
	return c
}

// stateSchemas are the record types the daemon knows, at their current
// versions. Evolve them only by adding fields (with a default) and bumping
// the version (docs/state.md, "Schema evolution").
var stateSchemas = map[string]crdt.Schema{
	"node": {Type: "node", Version: 1, Fields: []crdt.FieldSpec{
		{Name: "name", Kind: crdt.KindRegister, Since: 1},
		{Name: "roles", Kind: crdt.KindSet, Since: 1},
		{Name: "labels", Kind: crdt.KindSet, Since: 1},
	}},
	"event": {Type: "event", Version: 1, Fields: []crdt.FieldSpec{
		{Name: "kind", Kind: crdt.KindRegister, Since: 1},
		{Name: "message", Kind: crdt.KindRegister, Since: 1},
		{Name: "time", Kind: crdt.KindRegister, Since: 1},
	}},
	"setting": {Type: "setting", Version: 1, Fields: []crdt.FieldSpec{
		{Name: "value", Kind: crdt.KindRegister, Since: 1},
	}},
}

// openState opens DataDir/state.db with this node's ID as origin.
func (p *Peer) openState() (*statestore.Store, error) {
	sc := p.cfg.State
	return statestore.Open(statestore.Config{
		Path:          filepath.Join(p.cfg.DataDir, stateFile),
		NodeID:        p.id.NodeID,
		Now:           p.now,
		Logger:        p.log.With("component", "state"),
		Schemas:       stateSchemas,
		RejoinHorizon: sc.RejoinHorizon,
		NoSync:        sc.NoSync,
	})
}

// stateStore returns the open store, or an error an API caller can act on.
func (p *Peer) stateStore() (*statestore.Store, error) {
	st := p.store.Load()
	if st == nil {
		return nil, errStateClosed
	}
	return st, nil
}

var errStateClosed = errors.New("the cluster state store is not open (shoal peer is starting or stopping): retry in a moment")

// stateEventKinds are the membership events that become cluster event
// records; the others (refused gossip, tag updates) would only be noise.
var stateEventKinds = map[string]bool{"join": true, "fail": true, "leave": true, "recover": true, "reap": true,
	"admit": true, "remove": true, "pending": true, "form": true, "key-rotate": true}

// stateEvent stores a membership event as a cluster event record.
func (p *Peer) stateEvent(typ, node, detail string) {
	st := p.store.Load()
	if st == nil || !stateEventKinds[typ] {
		return
	}
	msg := "member " + typ
	if node != "" {
		msg += ": " + node
	}
	attrs := map[string]string{"node": node, "seen_by": p.id.NodeID}
	if detail != "" {
		attrs["detail"] = detail
	}
	if _, err := st.AddEvent("member."+typ, msg, attrs); err != nil {
		p.log.Warn("store cluster event", "kind", typ, "err", err)
	}
}

// stateService replicates the state store over the mutual-TLS node
// channel: POST /v1/svc/state/push and /v1/svc/state/pull carry the
// canonical encodings of replicate's messages.
type stateService struct {
	p    *Peer
	node atomic.Pointer[replicate.Node] // nil while the store is closed
	tr   *stateTransport                // set by open, before node
}

func (s *stateService) Name() string { return "state" }

// maxStateBody bounds a replication request or answer: messages hold about
// MaxMessageBytes (1 MiB) of changes, give or take one change of up to a
// few MiB.
const maxStateBody = 16 << 20

// Status codes of refused replication requests.
const (
	statusMustResync  = http.StatusGone                // the sender was away past the rejoin horizon
	statusClockOffset = http.StatusUnprocessableEntity // changes stamped too far ahead of our clock
)

func (s *stateService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.node.Load()
	if n == nil {
		writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("the state store of node %s is not open (starting or stopping)", s.p.id.NodeID))
		return
	}
	if r.Method != http.MethodPost {
		writeErr(w, http.StatusMethodNotAllowed, errors.New("state replication takes POST"))
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxStateBody+1))
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("read request: %w", err))
		return
	}
	if len(b) > maxStateBody {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Errorf("replication message over %d bytes", maxStateBody))
		return
	}
	caller := PeerNodeID(r)
	switch r.URL.Path {
	case "/v1/svc/state/push":
		m, err := replicate.UnmarshalPush(b)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		if m.From != caller {
			writeErr(w, http.StatusForbidden, fmt.Errorf("push from node %s claims to be from %s", caller, m.From))
			return
		}
		if err := n.HandlePush(r.Context(), m); err != nil {
			writeErr(w, replicationStatus(err), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "/v1/svc/state/pull":
		q, err := replicate.UnmarshalPullRequest(b)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		if q.From != caller {
			writeErr(w, http.StatusForbidden, fmt.Errorf("pull from node %s claims to be from %s", caller, q.From))
			return
		}
		resp, err := n.HandlePull(r.Context(), q)
		if err != nil {
			writeErr(w, replicationStatus(err), err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(resp.Marshal())
	default:
		http.NotFound(w, r)
	}
}

func replicationStatus(err error) int {
	switch {
	case errors.Is(err, replicate.ErrMustResync):
		return statusMustResync
	case errors.Is(err, hlc.ErrClockOffset):
		return statusClockOffset
	case errors.Is(err, replicate.ErrBadMessage):
		return http.StatusBadRequest
	case errors.Is(err, statestore.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// open makes the replicator of st. It exists as long as the store is
// open, so that pushes and pulls are answered as soon as this node is a
// member (before Run starts on the next control tick); Run runs it.
func (s *stateService) open(st *statestore.Store) error {
	sc := s.p.cfg.State
	mesh := meshView{s.p}
	s.tr = &stateTransport{mesh: mesh, log: s.p.log.With("component", "replicate"), now: s.p.now}
	n, err := replicate.New(replicate.Config{
		Store:        st,
		Transport:    s.tr,
		Peers:        func() []string { return s.p.statePeers(mesh, false) },
		Members:      func() []string { return s.p.statePeers(mesh, true) },
		PullInterval: sc.PullInterval,
		GCInterval:   sc.GCInterval,
		Logger:       s.p.log.With("component", "replicate"),
	})
	if err != nil {
		return fmt.Errorf("state replication: %w", err)
	}
	s.node.Store(n)
	return nil
}

// close forgets the replicator, before the store closes.
func (s *stateService) close() { s.node.Store(nil) }

// Run replicates until ctx ends. It runs while the node is a member.
func (s *stateService) Run(ctx context.Context, mesh Mesh) error {
	st, err := s.p.stateStore()
	if err != nil {
		return err
	}
	n := s.node.Load()
	if n == nil {
		return errStateClosed
	}
	sc := s.p.cfg.State.withDefaults()
	tr := s.tr
	if old := tr.hc.Swap(mesh.HTTPClient()); old != nil {
		old.CloseIdleConnections()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { n.Run(ctx) })
	t := time.NewTicker(sc.PruneInterval)
	defer t.Stop()
	refresh := time.NewTicker(time.Minute)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh.C:
			// a fresh client picks up revocations made since
			old := tr.hc.Swap(mesh.HTTPClient())
			old.CloseIdleConnections()
		case <-t.C:
			if k, err := st.PruneEvents(sc.EventsKeep, sc.EventsMaxAge); err != nil {
				s.p.log.Warn("prune cluster events", "err", err)
			} else if k > 0 {
				s.p.log.Debug("pruned cluster events", "n", k)
			}
		}
	}
}

// statePeers returns the other members to replicate with: alive ones, or
// (all) every member not removed and not left. Left nodes reset their
// state when they leave, so they reload from a snapshot if they come back.
func (p *Peer) statePeers(mesh Mesh, all bool) []string {
	p.mu.Lock()
	var revoked []string
	if p.cl != nil {
		revoked = append(revoked, p.cl.Revoked...)
	}
	p.mu.Unlock()
	var out []string
	for _, m := range mesh.Members() {
		if m.ID == p.id.NodeID || contains(revoked, m.ID) {
			continue
		}
		switch m.State {
		case client.StateAlive, client.StateSuspect:
		case client.StateFailed:
			if !all {
				continue
			}
		default:
			continue
		}
		out = append(out, m.ID)
	}
	return out
}

// stateTransport carries replication messages over the mutual-TLS node
// channel.
type stateTransport struct {
	mesh   Mesh
	hc     atomic.Pointer[http.Client]
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex
	warned map[string]time.Time // kind of refusal -> last logged
}

func (t *stateTransport) Push(ctx context.Context, to string, m *replicate.PushMsg) error {
	_, err := t.post(ctx, to, "/v1/svc/state/push", m.Marshal())
	return err
}

func (t *stateTransport) Pull(ctx context.Context, to string, q *replicate.PullRequest) (*replicate.PullResponse, error) {
	b, err := t.post(ctx, to, "/v1/svc/state/pull", q.Marshal())
	if err != nil {
		return nil, err
	}
	return replicate.UnmarshalPullResponse(b)
}

func (t *stateTransport) post(ctx context.Context, to, path string, body []byte) ([]byte, error) {
	u, err := t.mesh.URL(to, path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	hc := t.hc.Load()
	if hc == nil {
		return nil, fmt.Errorf("state replication to %s: not running yet", to)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("state replication to %s: %w", to, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxStateBody+1))
	if err != nil {
		return nil, fmt.Errorf("state replication to %s: read answer: %w", to, err)
	}
	if len(b) > maxStateBody {
		return nil, fmt.Errorf("state replication to %s: answer over %d bytes", to, maxStateBody)
	}
	if resp.StatusCode < 300 {
		return b, nil
	}
	msg := string(bytes.TrimSpace(b))
	var e client.Error
	if json.Unmarshal(b, &e) == nil && e.Msg != "" {
		msg = e.Msg
	}
	switch resp.StatusCode {
	case statusMustResync:
		return nil, fmt.Errorf("node %s refused our changes: %s: %w", to, msg, replicate.ErrMustResync)
	case statusClockOffset:
		t.warnOnce("clock", "a member refused this node's changes: they are stamped too far ahead of its clock; fix this node's time source (NTP)", "peer", to)
		return nil, fmt.Errorf("node %s refused our changes: %s: %w", to, msg, hlc.ErrClockOffset)
	}
	return nil, fmt.Errorf("state replication to %s: %s: %s", to, resp.Status, msg)
}

// warnOnce logs a refusal at most once a minute per kind.
func (t *stateTransport) warnOnce(kind, msg string, args ...any) {
	t.mu.Lock()
	last, seen := t.warned[kind]
	now := t.now()
	due := !seen || now.Sub(last) >= time.Minute
	if due {
		if t.warned == nil {
			t.warned = map[string]time.Time{}
		}
		t.warned[kind] = now
	}
	t.mu.Unlock()
	if due {
		t.log.Warn(msg, args...)
	}
}

// resetState drops the state of the cluster this node left: it reloads
// from a snapshot of whichever cluster it joins next instead of carrying
// the old cluster's records into it.
func (p *Peer) resetState() {
	st := p.store.Load()
	if st == nil {
		return
	}
	if err := st.Reset(); err != nil {
		p.log.Error("drop the cluster state of the cluster left; remove "+filepath.Join(p.cfg.DataDir, stateFile)+" while shoal peer is stopped", "err", err)
		return
	}
	p.log.Info("dropped the state of the cluster left; it reloads from the next cluster's members")
}
