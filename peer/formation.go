package peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/ca"
	"github.com/shoal-hci/shoal/peer/internal/discovery"
)

// admitRequest is what a joining node sends to a member.
type admitRequest struct {
	NodeID   string `json:"node_id"`
	Version  string `json:"version,omitempty"`
	Hardware string `json:"hardware,omitempty"`
	API      string `json:"api,omitempty"`
	Gossip   string `json:"gossip,omitempty"`
	CodeHash string `json:"code_hash"` // sha256(code|node_id): proves the operator read the node's console
}

// admitResponse is the member's answer.
type admitResponse struct {
	Status    string   `json:"status"` // admitted, pending
	NeedCode  bool     `json:"need_code,omitempty"`
	ClusterID string   `json:"cluster_id,omitempty"`
	CACert    string   `json:"ca_cert,omitempty"`
	CAKey     string   `json:"ca_key,omitempty"`
	NodeCert  string   `json:"node_cert,omitempty"`
	Keys      []string `json:"keys,omitempty"`
	Members   []string `json:"members,omitempty"` // gossip addresses to join
	Meta      meta     `json:"meta"`
	Error     string   `json:"error,omitempty"`
}

func codeHash(code, nodeID string) string {
	h := sha256.Sum256([]byte(code + "|" + nodeID))
	return hex.EncodeToString(h[:])
}

// formOrJoin runs on unclaimed nodes every tick.
func (p *Peer) formOrJoin(ctx context.Context) {
	p.mu.Lock()
	manual := p.manual
	// Listen for three beacon periods before deciding anything, so that
	// every node on the backplane had a chance to be heard.
	warm := p.now().Sub(p.listening) >= 3*p.cfg.Timers.Beacon
	backoff := p.lastSet == "refused" && p.now().Before(p.setSince)
	p.mu.Unlock()
	ann := p.ann.Load()
	if ann == nil || manual || !warm || backoff {
		return
	}
	peers := ann.Peers()
	clusters := map[string][]discovery.Seen{}
	unclaimed := []string{p.id.NodeID}
	for _, b := range peers {
		if b.ClusterID != "" {
			clusters[b.ClusterID] = append(clusters[b.ClusterID], b)
		} else {
			unclaimed = append(unclaimed, b.NodeID)
		}
	}
	now := p.now()
	switch {
	case len(clusters) == 1:
		for id, ms := range clusters {
			// Ask the member with the lowest node ID, so that pending
			// requests of this node gather at one member. Pace: a random
			// delay that grows with the crowd of unclaimed nodes.
			p.mu.Lock()
			if p.setSince.IsZero() || p.lastSet != "join:"+id {
				p.lastSet, p.setSince = "join:"+id, now.Add(joinDelay(p.cfg.Timers, len(unclaimed)))
				p.mu.Unlock()
				return
			}
			wait := now.Before(p.setSince)
			p.mu.Unlock()
			if wait {
				return
			}
			p.log.Info("found a cluster on the backplane; asking to join", "cluster_id", id, "via", ms[0].NodeID, "api", ms[0].API)
			p.startJoin(ctx, ms[0].API, id, false) // errors are logged; retried after a back-off
		}
		return
	case len(clusters) > 1:
		p.mu.Lock()
		if p.lastSet != "many" {
			ids := make([]string, 0, len(clusters))
			for id := range clusters {
				ids = append(ids, id)
			}
			p.log.Warn("several clusters on the backplane: not joining any by itself; run `shoal cluster join ADDR` to pick one", "clusters", ids)
			p.lastSet = "many"
		}
		p.mu.Unlock()
		return
	}
	if p.cfg.FormQuorum <= 0 {
		return
	}
	slices.Sort(unclaimed)
	key := strings.Join(unclaimed, ",")
	p.mu.Lock()
	if key != p.lastSet {
		p.lastSet, p.setSince = key, now
		p.mu.Unlock()
		return
	}
	settled := now.Sub(p.setSince) >= p.cfg.Timers.Settle
	p.mu.Unlock()
	if len(unclaimed) < p.cfg.FormQuorum || !settled || unclaimed[0] != p.id.NodeID {
		return
	}
	p.log.Info("forming a cluster with the unclaimed nodes on the backplane", "nodes", len(unclaimed), "settle", p.cfg.Timers.Settle)
	if _, err := p.createCluster(p.cfg.Policy, unclaimed); err != nil {
		p.log.Error("form cluster", "err", err)
	}
}

// joinPacePerNode is how much the window of an unclaimed node's random
// delay before it asks a cluster for admission grows per unclaimed node it
// hears on the backplane (itself included).
const joinPacePerNode = 50 * time.Millisecond

// joinPace is the window of that delay for a node that hears the given
// number of unclaimed nodes (itself included): joinPacePerNode each, at
// most t.JoinPace. A rack of N nodes powering on (one forms, N-1 join)
// spreads its joins over joinPace(t, N-1): 100 ms at 3 nodes, 1.55 s at 32,
// 6.35 s at 128, 12.75 s at 256, 25.55 s at 512: 20 joins a second
// however large the rack, up to t.JoinPace (30 s, 601 nodes).
func joinPace(t Timers, unclaimed int) time.Duration {
	return max(0, min(t.JoinPace, time.Duration(unclaimed)*joinPacePerNode))
}

// joinDelay is a random delay in [0, joinPace(t, unclaimed)].
func joinDelay(t Timers, unclaimed int) time.Duration {
	return time.Duration(mrand.Int64N(int64(joinPace(t, unclaimed)) + 1))
}

// createCluster makes this node the first member of a new cluster; group
// lists nodes admitted whatever the policy (the formation group).
func (p *Peer) createCluster(policy string, group []string) (string, error) {
	if policy == "" {
		policy = client.PolicyAuto
	}
	switch policy {
	case client.PolicyAuto, client.PolicyApprove, client.PolicyCode:
	default:
		return "", ErrBadPolicy
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl != nil || p.phase != client.PhaseUnclaimed && p.phase != client.PhaseJoining {
		return "", ErrAlreadyMember
	}
	now := p.now()
	clusterID := randomHex(16)
	c, err := ca.New(clusterID, now)
	if err != nil {
		return "", err
	}
	certPEM, err := c.Issue(p.id.NodeID, p.id.Public(), now)
	if err != nil {
		return "", err
	}
	keyPEM, err := c.KeyPEM()
	if err != nil {
		return "", err
	}
	key := make([]byte, 32)
	rand.Read(key)
	if err := saveKeyring(p.cfg.DataDir, [][]byte{key}); err != nil {
		return "", err
	}
	cl := &clusterState{ClusterID: clusterID, CACert: string(c.CertPEM), CAKey: string(keyPEM), NodeCert: string(certPEM),
		Policy: policy, PolicyTime: now.UTC(), PolicyBy: p.id.NodeID}
	if err := saveClusterState(p.cfg.DataDir, cl); err != nil {
		return "", err
	}
	if err := p.adoptCluster(cl); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(p.cfg.DataDir, manualFile))
	p.manual, p.join = false, nil
	for _, id := range group {
		p.formGroup[id] = true
	}
	p.mu.Unlock()
	err = p.startMembership(nil)
	p.mu.Lock()
	if err != nil {
		return "", err
	}
	p.log.Info("created cluster", "cluster_id", clusterID, "policy", policy, "formed_with", len(group))
	p.record("form", p.id.NodeID, "cluster "+clusterID)
	if a := p.ann.Load(); a != nil {
		a.Announce()
	}
	return clusterID, nil
}

// startJoin asks the member whose node API is at api for admission.
func (p *Peer) startJoin(ctx context.Context, api, clusterID string, explicit bool) error {
	p.mu.Lock()
	p.phase = client.PhaseJoining
	p.join = &joinAttempt{api: api, clusterID: clusterID, at: p.now(), explicit: explicit}
	p.mu.Unlock()
	return p.pollAdmission(ctx)
}

// pollAdmission asks again for the admission in progress; it returns the
// error that ended the attempt, if any.
func (p *Peer) pollAdmission(ctx context.Context) (err error) {
	p.mu.Lock()
	j := p.join
	code := p.code
	selfCert := p.cert
	p.mu.Unlock()
	if j == nil {
		return nil
	}
	resp, err := p.requestAdmission(ctx, j, code, selfCert)
	switch {
	case err != nil:
		p.log.Error("admission refused or failed", "api", j.api, "err", err)
		p.record("refuse", "", err.Error())
		p.mu.Lock()
		if p.join == j {
			// Back off before asking again (a removed node must not
			// hammer the cluster).
			p.join, p.phase = nil, client.PhaseUnclaimed
			p.lastSet, p.setSince = "refused", p.now().Add(10*p.cfg.Timers.Beacon)
		}
		p.mu.Unlock()
	case resp.Status == "pending":
		p.mu.Lock()
		first := !j.logged
		j.logged = true
		p.mu.Unlock()
		if first {
			if resp.NeedCode {
				p.log.Warn("waiting for approval; give the cluster this node's admission code: shoal node approve "+p.id.NodeID+" --code "+code, "code", code)
			} else {
				p.log.Warn("waiting for approval: run `shoal node approve " + p.id.NodeID + "` on a member")
			}
		}
	case resp.Status == "admitted":
		if err = p.admitted(j, resp); err != nil {
			p.log.Error("join cluster", "err", err)
			p.mu.Lock()
			p.join, p.phase = nil, client.PhaseUnclaimed
			p.mu.Unlock()
		}
	}
	return err
}

func (p *Peer) requestAdmission(ctx context.Context, j *joinAttempt, code string, self tls.Certificate) (admitResponse, error) {
	body, _ := json.Marshal(admitRequest{NodeID: p.id.NodeID, Version: p.cfg.Version, Hardware: p.cfg.Hardware,
		API: p.APIAddr(), Gossip: p.GossipAddr(), CodeHash: codeHash(code, p.id.NodeID)})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.JoinerTLS(self, j.clusterID)}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "POST", "https://"+j.api+"/v1/admit", bytes.NewReader(body))
	if err != nil {
		return admitResponse{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return admitResponse{}, fmt.Errorf("ask %s for admission: %w", j.api, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ar admitResponse
	if err := json.Unmarshal(b, &ar); err != nil {
		return admitResponse{}, fmt.Errorf("admission reply from %s: %s: %w", j.api, resp.Status, err)
	}
	if resp.StatusCode >= 300 {
		return admitResponse{}, fmt.Errorf("%w by %s: %s", ErrRefused, j.api, ar.Error)
	}
	return ar, nil
}

// admitted installs what the cluster handed over and starts gossip.
func (p *Peer) admitted(j *joinAttempt, r admitResponse) error {
	if j.clusterID != "" && r.ClusterID != j.clusterID {
		return fmt.Errorf("admitted into cluster %s, expected %s", r.ClusterID, j.clusterID)
	}
	c, err := ca.Parse([]byte(r.CACert), []byte(r.CAKey))
	if err != nil || c.ClusterID != r.ClusterID {
		return fmt.Errorf("cluster CA in admission reply: %v", err)
	}
	keys, err := parseKeyring(mustJSON(r.Keys))
	if err != nil {
		return err
	}
	cl := &clusterState{ClusterID: r.ClusterID, CACert: r.CACert, CAKey: r.CAKey, NodeCert: r.NodeCert}
	cl.merge(r.Meta)
	p.mu.Lock()
	if p.join != j || p.cl != nil {
		p.mu.Unlock()
		return nil // superseded (leave, create) while the request was out
	}
	if err := saveKeyring(p.cfg.DataDir, keys); err != nil {
		p.mu.Unlock()
		return err
	}
	if err := saveClusterState(p.cfg.DataDir, cl); err != nil {
		p.mu.Unlock()
		return err
	}
	if err := p.adoptCluster(cl); err != nil {
		forgetCluster(p.cfg.DataDir)
		p.mu.Unlock()
		return err
	}
	os.Remove(filepath.Join(p.cfg.DataDir, manualFile))
	p.manual, p.join = false, nil
	p.mu.Unlock()
	p.log.Info("admitted into cluster", "cluster_id", r.ClusterID, "via", j.api)
	p.record("admit", p.id.NodeID, "into cluster "+r.ClusterID)
	if err := p.startMembership(r.Members); err != nil {
		return err
	}
	if a := p.ann.Load(); a != nil {
		a.Announce()
	}
	return nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func hostPortDefault(addr string, port string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), port)
}

// admitJoinMembers is how many gossip addresses an admission reply lists.
const admitJoinMembers = 8

// admitJoinAddrs is the list of gossip addresses an admission reply hands
// the new node (which joins through three of them, see joinOne): the
// admitter's own (self) and up to admitJoinMembers-1 other alive members
// chosen at random. Every joiner of a rack powering on asks the same member
// (the lowest node ID), so a fixed pick would make the same few members
// absorb every join.
func admitJoinAddrs(self, selfID string, members []client.Member) []string {
	var others []string
	for _, m := range members {
		if m.State == client.StateAlive && m.ID != selfID && m.Gossip != self {
			others = append(others, m.Gossip)
		}
	}
	mrand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	return append([]string{self}, others[:min(admitJoinMembers-1, len(others))]...)
}
