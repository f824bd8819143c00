package peer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/shoal-hci/shoal/peer/client"
)

// localHandler is the local API on the UNIX socket (see peer/client).
func (p *Peer) localHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, p.clusterStatus(r.Context())) })
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		st := p.clusterStatus(r.Context())
		writeJSON(w, 200, append(st.Members, st.Pending...))
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, p.events.list()) })
	mux.HandleFunc("POST /v1/cluster/create", func(w http.ResponseWriter, r *http.Request) {
		var req client.CreateRequest
		if !decode(w, r, &req) {
			return
		}
		if _, err := p.createCluster(req.Policy, nil); err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, 200, p.Status())
	})
	mux.HandleFunc("POST /v1/cluster/join", func(w http.ResponseWriter, r *http.Request) {
		var req client.JoinRequest
		if !decode(w, r, &req) {
			return
		}
		if err := p.Join(r.Context(), req.Addr); err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, 200, p.Status())
	})
	mux.HandleFunc("POST /v1/cluster/leave", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Leave(); err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("POST /v1/cluster/rotate-key", func(w http.ResponseWriter, r *http.Request) {
		if err := p.RotateKey(); err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("POST /v1/cluster/policy", func(w http.ResponseWriter, r *http.Request) {
		var req client.PolicyRequest
		if !decode(w, r, &req) {
			return
		}
		if err := p.SetPolicy(req.Policy); err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("POST /v1/nodes/{id}/approve", func(w http.ResponseWriter, r *http.Request) {
		var req client.ApproveRequest
		if !decode(w, r, &req) {
			return
		}
		if err := p.Approve(r.Context(), r.PathValue("id"), req.Code); err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("DELETE /v1/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Remove(r.Context(), r.PathValue("id")); err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	p.stateRoutes(mux)
	p.claimRoutes(mux) // claimlocal.go
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotMember), errors.Is(err, ErrAlreadyMember), errors.Is(err, ErrNodeAlive):
		return http.StatusConflict
	case errors.Is(err, ErrUnknownNode):
		return http.StatusNotFound
	case errors.Is(err, ErrWrongCode), errors.Is(err, ErrRefused):
		return http.StatusForbidden
	case errors.Is(err, ErrBadPolicy):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// clusterStatus is Status with the nodes pending at every member (a node
// waits at the member it asked).
func (p *Peer) clusterStatus(ctx context.Context) client.Status {
	st := p.Status()
	if st.ClusterID == "" {
		return st
	}
	seen := map[string]bool{}
	for _, m := range st.Pending {
		seen[m.ID] = true
	}
	for _, m := range p.remotePending(ctx) {
		if !seen[m.ID] {
			seen[m.ID] = true
			st.Pending = append(st.Pending, m)
		}
	}
	slices.SortFunc(st.Pending, func(a, b client.Member) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// Status is this node's view: cluster, members, pending and foreign nodes.
func (p *Peer) Status() client.Status {
	members := p.members()
	p.mu.Lock()
	st := client.Status{Phase: p.phase, Members: members}
	self := client.Member{ID: p.id.NodeID, Name: p.id.Hostname(), State: client.StateAlive, Gossip: p.GossipAddr(),
		API: p.APIAddr(), Version: p.cfg.Version, Roles: p.cfg.Roles, Hardware: p.cfg.Hardware}
	if p.cl != nil {
		st.ClusterID, st.Policy = p.cl.ClusterID, p.cl.Policy
	} else {
		self.State = client.StatePending
		if p.phase == client.PhaseJoining {
			st.Code = p.code
		}
	}
	st.Self = self
	for _, pn := range p.pending {
		st.Pending = append(st.Pending, pn.Member)
	}
	p.mu.Unlock()
	if f, ok := p.claims.fenceStatus(); ok && st.ClusterID != "" {
		st.Fence = &f
	}
	if st.Members == nil {
		st.Members = []client.Member{self}
	}
	if a := p.ann.Load(); a != nil {
		for _, b := range a.Peers() {
			if b.ClusterID != st.ClusterID || st.ClusterID == "" {
				st.Foreign = append(st.Foreign, client.Peer{ID: b.NodeID, ClusterID: b.ClusterID, State: b.State, API: b.API, Version: b.Version})
			}
		}
	}
	return st
}

// Join asks the cluster of the node whose API is at addr (port 7443 when
// omitted) for admission, and waits up to a minute for the answer
// (returning early with the node pending when the policy needs approval).
func (p *Peer) Join(ctx context.Context, addr string) error {
	if addr == "" {
		return errors.New("join needs the address of a member's node API")
	}
	addr = hostPortDefault(addr, strconv.Itoa(DefaultAPIPort))
	p.mu.Lock()
	if p.cl != nil {
		p.mu.Unlock()
		return ErrAlreadyMember
	}
	p.mu.Unlock()
	return p.startJoin(ctx, addr, "", true)
}

// Leave leaves the cluster gracefully and forgets it. The node stays
// unclaimed (no formation, no auto-join) until create or join.
func (p *Peer) Leave() error {
	p.mu.Lock()
	if p.cl == nil {
		p.mu.Unlock()
		return ErrNotMember
	}
	// Hold the Services down while leaving: the control loop still sees
	// phase member and would start them again while stopServices waits.
	p.svcHold = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.svcHold = false
		p.mu.Unlock()
	}()
	p.stopServices()
	p.stopMembership(true)
	p.resetState()
	p.mu.Lock()
	defer p.mu.Unlock()
	id := p.cl.ClusterID
	if err := forgetCluster(p.cfg.DataDir); err != nil {
		return fmt.Errorf("forget cluster: %w", err)
	}
	os.WriteFile(filepath.Join(p.cfg.DataDir, manualFile), []byte("left the cluster; join or create explicitly\n"), 0o600)
	p.cl, p.ca, p.phase, p.manual, p.join = nil, nil, client.PhaseUnclaimed, true, nil
	clear(p.pending)
	clear(p.approved)
	clear(p.formGroup)
	if err := p.selfSign(); err != nil {
		return err
	}
	p.log.Info("left the cluster; this node is unclaimed and waits for `shoal cluster create` or `shoal cluster join`", "cluster_id", id)
	p.record("leave", p.id.NodeID, "left cluster "+id)
	if a := p.ann.Load(); a != nil {
		a.Announce()
	}
	return nil
}

// RotateKey installs a fresh gossip key on every member, makes it primary
// and removes the old keys. If a member does not answer, the rotation
// stops with the old key still primary (nothing lost); members that were
// down fetch the new keyring over mutual TLS when they come back.
func (p *Peer) RotateKey() error {
	s := p.serfInstance()
	if s == nil {
		return ErrNotMember
	}
	km := s.KeyManager()
	old, err := km.ListKeys()
	if err != nil {
		return fmt.Errorf("list gossip keys: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	if err := keyQuery(km.InstallKey, key); err != nil {
		return fmt.Errorf("install new gossip key (old key still in use): %w", err)
	}
	if err := keyQuery(km.UseKey, key); err != nil {
		return fmt.Errorf("make new gossip key primary (old key still installed): %w", err)
	}
	for k := range old.Keys {
		if k == key {
			continue
		}
		if r, err := km.RemoveKey(k); err != nil {
			p.log.Warn("remove old gossip key", "err", err, "messages", r.Messages)
		}
	}
	p.log.Info("gossip key rotated")
	p.record("key-rotate", p.id.NodeID, "")
	return nil
}

// keyQuery runs a keyring query (install or use a key; both idempotent)
// until every member answers, up to 5 times: serf's query timeout is a few
// gossip rounds, and a member busy for longer answers late, not never.
func keyQuery(op func(string) (*serf.KeyResponse, error), key string) error {
	var err error
	for range 5 {
		var r *serf.KeyResponse
		if r, err = op(key); err == nil {
			return nil
		}
		if r != nil && len(r.Messages) > 0 {
			err = fmt.Errorf("%w %v", err, r.Messages)
		}
	}
	return err
}

// SetPolicy sets the cluster's admission policy on every member.
func (p *Peer) SetPolicy(policy string) error {
	switch policy {
	case client.PolicyAuto, client.PolicyApprove, client.PolicyCode:
	default:
		return ErrBadPolicy
	}
	p.mu.Lock()
	if p.cl == nil {
		p.mu.Unlock()
		return ErrNotMember
	}
	now := p.now().UTC()
	if !now.After(p.cl.PolicyTime) {
		now = p.cl.PolicyTime.Add(time.Nanosecond)
	}
	p.mergeMetaLocked(meta{Policy: policy, PolicyTime: now, PolicyBy: p.id.NodeID})
	s := p.serf
	p.mu.Unlock()
	p.log.Info("admission policy set", "policy", policy)
	if s != nil {
		return s.UserEvent(eventPolicy, []byte(policy+"|"+strconv.FormatInt(now.UnixNano(), 10)+"|"+p.id.NodeID), false)
	}
	return nil
}

// Approve admits a node waiting for approval at any member.
func (p *Peer) Approve(ctx context.Context, id, code string) error {
	p.mu.Lock()
	if p.cl == nil {
		p.mu.Unlock()
		return ErrNotMember
	}
	p.mu.Unlock()
	err := p.approveLocal(id, code)
	if err == nil || !errors.Is(err, ErrUnknownNode) {
		return err
	}
	// Not pending here: ask every other member.
	var wrong error
	for _, api := range p.aliveAPIs() {
		e := p.callMember(ctx, "POST", api, "/v1/approve/"+id, client.ApproveRequest{Code: code}, nil)
		if e == nil {
			return nil
		}
		if errors.Is(e, ErrWrongCode) {
			wrong = e
		}
	}
	if wrong != nil {
		return wrong
	}
	return fmt.Errorf("%w: node %s is not waiting for approval at any member (`shoal node ls` shows pending nodes)", ErrUnknownNode, id)
}

// Remove forgets a node for good: it is revoked (its certificate and any
// later admission request are refused on every member), pruned from gossip,
// and the gossip key is rotated so it cannot read gossip either.
func (p *Peer) Remove(ctx context.Context, id string) error {
	if id == p.id.NodeID {
		return errors.New("cannot remove this node itself: run `shoal cluster leave` here, or remove it from another member")
	}
	s := p.serfInstance()
	if s == nil {
		return ErrNotMember
	}
	known := false
	for _, m := range p.members() {
		if m.ID != id {
			continue
		}
		known = true
		if m.State == client.StateAlive || m.State == client.StateSuspect {
			return fmt.Errorf("%w: node %s is %s; stop it (or run `shoal cluster leave` on it) before removing it", ErrNodeAlive, id, m.State)
		}
	}
	if !known {
		for _, m := range append(p.localPending(), p.remotePending(ctx)...) {
			known = known || m.ID == id
		}
	}
	p.mu.Lock()
	if !known && !p.cl.revoked(id) {
		p.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	p.mergeMetaLocked(meta{Revoked: []string{id}})
	p.mu.Unlock()
	if err := s.UserEvent(eventRevoke, []byte(id), false); err != nil {
		p.log.Warn("broadcast removal", "err", err)
	}
	if err := s.RemoveFailedNodePrune(id); err != nil {
		p.log.Warn("prune removed node from gossip", "peer", id, "err", err)
	}
	p.log.Info("node removed from the cluster for good", "peer", id)
	p.record("remove", id, "")
	if err := p.RotateKey(); err != nil {
		p.log.Warn("rotate gossip key after removal; run `shoal cluster rotate-key` again", "err", err)
	}
	return nil
}
