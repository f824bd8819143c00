package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/ca"
	"github.com/shoal-hci/shoal/peer/internal/identity"
)

// nodeHandler is the HTTPS node API (port 7443): admission for nodes that
// are not members yet, and mutual-TLS endpoints for members.
func (p *Peer) nodeHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/admit", p.handleAdmit)
	mux.HandleFunc("GET /v1/keyring", p.memberOnly(p.handleKeyring))
	mux.HandleFunc("GET /v1/meta", p.memberOnly(p.handleMeta))
	mux.HandleFunc("GET /v1/pending", p.memberOnly(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, p.localPending()) }))
	mux.HandleFunc("POST /v1/approve/{id}", p.memberOnly(p.handleRemoteApprove))
	p.remoteRoutes(mux) // remoteapi.go: status, nodes, events for `--addr`
	mux.HandleFunc("/v1/svc/{name}/", p.memberOnly(func(w http.ResponseWriter, r *http.Request) {
		for _, s := range p.cfg.Services {
			if s.Name() == r.PathValue("name") {
				s.ServeHTTP(w, r)
				return
			}
		}
		http.NotFound(w, r)
	}))
	return mux
}

// memberOnly admits requests whose client certificate is signed by this
// cluster's CA and not revoked.
func (p *Peer) memberOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		c, cl := p.ca, p.cl
		p.mu.Unlock()
		var err error
		var id string
		switch {
		case cl == nil:
			err = ErrNotMember
		case r.TLS == nil || len(r.TLS.PeerCertificates) == 0:
			err = errors.New("no client certificate")
		default:
			p.mu.Lock()
			revoked := append([]string(nil), cl.Revoked...)
			p.mu.Unlock()
			id, err = c.Verify(r.TLS.PeerCertificates[0], func(n string) bool { return contains(revoked, n) })
		}
		if err != nil {
			cn := ""
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				cn = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			p.log.Warn("refused a node API call: caller is not a member of this cluster", "from", r.RemoteAddr, "peer", cn, "path", r.URL.Path, "err", err)
			p.record("refuse", cn, err.Error())
			writeErr(w, http.StatusForbidden, fmt.Errorf("refused by node %s: %w", p.id.NodeID, err))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), peerIDKey{}, id)))
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (p *Peer) handleAdmit(w http.ResponseWriter, r *http.Request) {
	var req admitRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, admitResponse{Error: "bad admission request: " + err.Error()})
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeJSON(w, http.StatusBadRequest, admitResponse{Error: "admission needs the node's client certificate"})
		return
	}
	cert := r.TLS.PeerCertificates[0]
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || cert.Subject.CommonName != req.NodeID || !identity.ValidNodeID(req.NodeID) {
		p.log.Warn("refused admission: certificate does not match the node ID", "from", r.RemoteAddr, "node", req.NodeID)
		writeJSON(w, http.StatusForbidden, admitResponse{Error: "client certificate does not match node ID " + req.NodeID})
		return
	}
	now := p.now()
	p.mu.Lock()
	cl, c := p.cl, p.ca
	if cl == nil {
		p.mu.Unlock()
		writeJSON(w, http.StatusConflict, admitResponse{Error: "node " + p.id.NodeID + " is not in a cluster"})
		return
	}
	if cl.revoked(req.NodeID) {
		p.mu.Unlock()
		p.log.Warn("refused admission of a removed node", "peer", req.NodeID, "from", r.RemoteAddr)
		p.record("refuse", req.NodeID, "removed node asked for admission")
		writeJSON(w, http.StatusForbidden, admitResponse{Error: "node " + req.NodeID + " was removed from cluster " + cl.ClusterID + "; wipe its data dir to add it as a new node"})
		return
	}
	_, memberErr := c.Verify(cert, nil) // already holds a certificate of ours (e.g. lost its files)
	ok = cl.Policy == client.PolicyAuto || p.formGroup[req.NodeID] || p.approved[req.NodeID] || memberErr == nil
	if !ok {
		pn, seen := p.pending[req.NodeID]
		if !seen {
			pn = &pendingNode{Member: client.Member{ID: req.NodeID, Name: "shoal-" + req.NodeID[:6], State: client.StatePending,
				Gossip: req.Gossip, API: req.API, Version: req.Version, Hardware: req.Hardware}, since: now}
			p.pending[req.NodeID] = pn
		}
		pn.codeHash = req.CodeHash
		policy := cl.Policy
		p.mu.Unlock()
		if !seen {
			p.log.Warn("node waits for approval", "peer", req.NodeID, "hardware", req.Hardware, "policy", policy, "approve_with", "shoal node approve "+req.NodeID)
			p.record("pending", req.NodeID, "hardware "+req.Hardware)
		}
		writeJSON(w, http.StatusAccepted, admitResponse{Status: "pending", NeedCode: policy == client.PolicyCode})
		return
	}
	delete(p.pending, req.NodeID)
	delete(p.approved, req.NodeID)
	resp := admitResponse{Status: "admitted", ClusterID: cl.ClusterID, CACert: cl.CACert, CAKey: cl.CAKey, Meta: cl.meta()}
	p.mu.Unlock()
	certPEM, err := c.Issue(req.NodeID, pub, now)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, admitResponse{Error: err.Error()})
		return
	}
	resp.NodeCert = string(certPEM)
	keys, err := loadKeyring(p.cfg.DataDir)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, admitResponse{Error: err.Error()})
		return
	}
	resp.Keys = encodeKeys(keys)
	resp.Members = admitJoinAddrs(p.GossipAddr(), p.id.NodeID, p.members())
	p.log.Info("admitted node", "peer", req.NodeID, "from", r.RemoteAddr)
	p.record("admit", req.NodeID, "hardware "+req.Hardware)
	writeJSON(w, http.StatusOK, resp)
}

type keyringReply struct {
	Keys []string `json:"keys"` // primary first
}

func (p *Peer) handleKeyring(w http.ResponseWriter, r *http.Request) {
	keys, err := loadKeyring(p.cfg.DataDir)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, keyringReply{Keys: encodeKeys(keys)})
}

func (p *Peer) handleMeta(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	m := p.cl.meta()
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, m)
}

func (p *Peer) handleRemoteApprove(w http.ResponseWriter, r *http.Request) {
	var req client.ApproveRequest
	json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req)
	if err := p.approveLocal(r.PathValue("id"), req.Code); err != nil {
		writeErr(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// approveLocal approves a node pending at this member.
func (p *Peer) approveLocal(id, code string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pn, ok := p.pending[id]
	if !ok {
		return fmt.Errorf("%w: node %s is not waiting for approval at this member", ErrUnknownNode, id)
	}
	if p.cl.Policy == client.PolicyCode && codeHash(code, id) != pn.codeHash {
		p.log.Warn("wrong admission code given for node", "peer", id)
		return fmt.Errorf("%w for node %s: read the six-digit code on its console", ErrWrongCode, id)
	}
	p.approved[id] = true
	delete(p.pending, id)
	p.log.Info("node approved; admitted on its next request", "peer", id)
	p.record("approve", id, "")
	return nil
}

// mtlsClient is an HTTPS client that presents this node's certificate and
// accepts only members of its cluster.
func (p *Peer) mtlsClient() (*http.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl == nil {
		return nil, ErrNotMember
	}
	revoked := append([]string(nil), p.cl.Revoked...)
	cfg := p.ca.ClientTLS(p.cert, func(n string) bool { return contains(revoked, n) })
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// callMember makes an mTLS request to the node API at api and decodes the
// JSON reply into out.
func (p *Peer) callMember(ctx context.Context, method, api, path string, in, out any) error {
	hc, err := p.mtlsClient()
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	var body io.Reader
	if in != nil {
		body = strings.NewReader(string(mustJSON(in)))
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+api+path, body)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("call member at %s: %w", api, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		var e client.Error
		json.Unmarshal(b, &e)
		switch {
		case resp.StatusCode == http.StatusForbidden && strings.Contains(e.Msg, ErrWrongCode.Error()):
			return remoteError{ErrWrongCode, e.Msg}
		case resp.StatusCode == http.StatusNotFound:
			return remoteError{ErrUnknownNode, e.Msg}
		}
		return fmt.Errorf("member at %s: %s: %s", api, resp.Status, e.Msg)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (p *Peer) aliveAPIs() []string {
	var apis []string
	for _, m := range p.members() {
		if m.State == client.StateAlive && m.ID != p.id.NodeID && m.API != "" {
			apis = append(apis, m.API)
		}
	}
	rand.Shuffle(len(apis), func(i, j int) { apis[i], apis[j] = apis[j], apis[i] })
	return apis
}

// remoteError is a member's error message matching one of our sentinels.
type remoteError struct {
	sentinel error
	msg      string
}

func (e remoteError) Error() string { return e.msg }
func (e remoteError) Unwrap() error { return e.sentinel }

// remotePending collects the nodes waiting for approval at other members.
func (p *Peer) remotePending(ctx context.Context) []client.Member {
	apis := p.aliveAPIs()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var out []client.Member
	for _, api := range apis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms []client.Member
			if err := p.callMember(ctx, "GET", api, "/v1/pending", nil, &ms); err != nil {
				p.log.Debug("list pending nodes of a member", "api", api, "err", err)
				return
			}
			mu.Lock()
			out = append(out, ms...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (p *Peer) localPending() []client.Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []client.Member
	for _, pn := range p.pending {
		out = append(out, pn.Member)
	}
	return out
}

// syncMeta pulls cluster settings from a random member and merges them.
func (p *Peer) syncMeta(ctx context.Context) {
	apis := p.aliveAPIs()
	if len(apis) == 0 {
		return
	}
	var m meta
	if err := p.callMember(ctx, "GET", apis[0], "/v1/meta", nil, &m); err != nil {
		p.log.Debug("sync cluster settings", "err", err)
		return
	}
	p.mu.Lock()
	if p.cl != nil {
		p.mergeMetaLocked(m)
	}
	p.mu.Unlock()
}

// fetchKeyring gets the gossip keyring of a member over mutual TLS and
// installs keys this node lacks (missed rotation while it was down). It
// reports whether the members refused this node as removed.
func (p *Peer) fetchKeyring(ctx context.Context, apis []string) (removed bool) {
	for _, api := range apis {
		if api == "" {
			continue
		}
		var kr keyringReply
		if err := p.callMember(ctx, "GET", api, "/v1/keyring", nil, &kr); err != nil {
			if strings.Contains(err.Error(), ca.ErrRevoked.Error()) {
				p.log.Error("this node was removed from its cluster by an operator: members refuse it; it stops gossiping. Run `shoal cluster leave` (or wipe the data dir) to add it again as a new node", "api", api)
				return true
			}
			p.log.Warn("fetch gossip keyring from member", "api", api, "err", err)
			continue
		}
		keys, err := parseKeyring(mustJSON(kr.Keys))
		if err != nil {
			continue
		}
		s := p.serfInstance()
		if s == nil {
			return false
		}
		km := s.KeyManager()
		local, err := km.ListKeys()
		if err != nil {
			return false
		}
		enc := encodeKeys(keys)
		added := 0
		for _, k := range enc {
			if _, ok := local.Keys[k]; !ok {
				if _, err := km.InstallKey(k); err == nil {
					added++
				}
			}
		}
		if added > 0 {
			if _, err := km.UseKey(enc[0]); err != nil {
				p.log.Warn("use fetched gossip key", "err", err)
			}
			p.log.Info("installed gossip keys fetched from a member (rotated while this node was away)", "keys", added, "api", api)
			p.record("key-rotate", p.id.NodeID, "fetched keyring")
		}
		return false
	}
	return false
}

// meshView is the Mesh given to Services.
type meshView struct{ p *Peer }

func (m meshView) Self() string             { return m.p.id.NodeID }
func (m meshView) Members() []client.Member { return m.p.members() }
func (m meshView) HTTPClient() *http.Client {
	hc, err := m.p.mtlsClient()
	if err != nil {
		// Not a member (left): a client that refuses every server.
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS13,
			VerifyConnection:   func(tls.ConnectionState) error { return ErrNotMember },
			InsecureSkipVerify: true, // VerifyConnection refuses every server
		}}}
	}
	return hc
}
func (m meshView) URL(id, path string) (string, error) {
	for _, mem := range m.p.members() {
		if mem.ID == id && mem.API != "" {
			return "https://" + mem.API + path, nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrUnknownNode, id)
}

func (p *Peer) startServices(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.svcCancel != nil || p.svcHold || len(p.cfg.Services) == 0 {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	p.svcCancel = cancel
	for _, s := range p.cfg.Services {
		p.svcWG.Add(1)
		go func() {
			defer p.svcWG.Done()
			if err := s.Run(sctx, meshView{p}); err != nil {
				p.log.Error("service stopped", "service", s.Name(), "err", err)
			}
		}()
	}
}

func (p *Peer) stopServices() {
	p.mu.Lock()
	cancel := p.svcCancel
	p.svcCancel = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.svcWG.Wait()
}
