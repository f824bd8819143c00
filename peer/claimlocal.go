package peer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/claim"
)

// fenceLongPoll bounds one GET /v1/fence?wait=1.
const fenceLongPoll = 30 * time.Second

// claimRoutes adds the claim and fence endpoints of the local API.
func (p *Peer) claimRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/claims", p.handleClaimList)
	mux.HandleFunc("GET /v1/claim", p.handleClaimGet)
	mux.HandleFunc("POST /v1/claim", p.handleClaimTake)
	mux.HandleFunc("GET /v1/fence", p.handleFence)
}

// claimNode returns the claim node, or writes why there is none.
func (p *Peer) claimNode(w http.ResponseWriter, member bool) *claim.Node {
	n := p.claims.node.Load()
	if n == nil {
		writeClaimErr(w, http.StatusServiceUnavailable, "", errors.New("claims are not running on this node (shutting down)"), nil)
		return nil
	}
	if member && p.ClusterID() == "" {
		writeClaimErr(w, http.StatusConflict, client.ClaimErrNotVoter, fmt.Errorf("%w: claims need a cluster; run `shoal cluster create` or `shoal cluster join`", ErrNotMember), nil)
		return nil
	}
	return n
}

func (p *Peer) handleClaimList(w http.ResponseWriter, r *http.Request) {
	n := p.claimNode(w, false)
	if n == nil {
		return
	}
	vs, err := n.LocalAll()
	if err != nil {
		writeClaimErr(w, http.StatusInternalServerError, "", fmt.Errorf("list claims: %w", err), nil)
		return
	}
	out := make([]client.ClaimView, 0, len(vs))
	for _, v := range vs {
		out = append(out, toClaimView(v))
	}
	writeJSON(w, 200, out)
}

// voterWait bounds how long a claim request waits for this node to
// become a voter (and unfenced) while a new cluster or a new member
// settles: the voter set grows by one member per tick, so a request right
// after formation would otherwise fail with not_voter for a few seconds.
const voterWait = 15 * time.Second

// awaitVoter waits, while this node is a member that is settling (not yet
// in the voter set, or fenced ever since the daemon started), until it is
// a voter and not fenced, voterWait passes or ctx ends. A voter that has
// been unfenced before returns at once, fenced or not: a node that lost
// its majority refuses without delay.
func (p *Peer) awaitVoter(ctx context.Context, n *claim.Node) {
	settling := func() bool { return p.ClusterID() != "" && !n.Voters().Contains(p.id.NodeID) }
	if !settling() && n.Fence().EverUnfenced() {
		return
	}
	deadline := time.NewTimer(voterWait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for settling() || n.Fence().Evaluate().Fenced {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		case <-p.claims.closing:
			return
		}
	}
}

func (p *Peer) handleClaimGet(w http.ResponseWriter, r *http.Request) {
	n := p.claimNode(w, true)
	if n == nil {
		return
	}
	p.awaitVoter(r.Context(), n)
	v, err := n.Read(r.Context(), r.URL.Query().Get("resource"))
	if err != nil {
		writeClaimError(w, err, nil)
		return
	}
	writeJSON(w, 200, toClaimView(v))
}

func (p *Peer) handleClaimTake(w http.ResponseWriter, r *http.Request) {
	n := p.claimNode(w, true)
	if n == nil {
		return
	}
	var req client.ClaimRequest
	if !decode(w, r, &req) {
		return
	}
	p.awaitVoter(r.Context(), n)
	// A fenced node refuses at once (ClaimNext would first spend the
	// whole deadline reading from a majority it cannot reach).
	if f := n.Fence().Evaluate(); f.Fenced {
		writeClaimError(w, fmt.Errorf("claim %q: %w (heard %d of %d voters needed)", req.Resource, claim.ErrFenced, f.Heard, f.Need), nil)
		return
	}
	holder := req.Holder
	if holder == "" {
		holder = p.id.NodeID
	}
	var c claim.Claim
	var err error
	switch {
	case req.Epoch == 0 && holder == p.id.NodeID:
		c, err = n.ClaimNext(r.Context(), req.Resource)
	case req.Epoch == 0:
		var v claim.View
		if v, err = n.Read(r.Context(), req.Resource); err == nil {
			if v.State == claim.StateHeld && v.Holder == holder {
				c = claim.Claim{Resource: v.Resource, Epoch: v.Epoch, Holder: v.Holder}
			} else {
				c, err = n.Propose(r.Context(), req.Resource, v.Next(), holder)
			}
		}
	default:
		c, err = n.Propose(r.Context(), req.Resource, req.Epoch, holder)
	}
	if err != nil {
		var won *client.Claim
		if errors.Is(err, claim.ErrTaken) {
			won = &client.Claim{Resource: c.Resource, Epoch: c.Epoch, Holder: c.Holder}
		}
		writeClaimError(w, err, won)
		return
	}
	p.log.Info("claim decided", "resource", c.Resource, "epoch", c.Epoch, "holder", c.Holder)
	writeJSON(w, 200, client.Claim{Resource: c.Resource, Epoch: c.Epoch, Holder: c.Holder})
}

// handleFence returns the fence; with wait=1 it long-polls until the
// fence differs from fenced/since (see client.WaitFence).
func (p *Peer) handleFence(w http.ResponseWriter, r *http.Request) {
	n := p.claimNode(w, false)
	if n == nil {
		return
	}
	q := r.URL.Query()
	if q.Get("wait") == "" {
		writeJSON(w, 200, toFenceStatus(n.Fence().Evaluate(), n.Voters()))
		return
	}
	fenced, err := strconv.ParseBool(q.Get("fenced"))
	if err != nil {
		writeClaimErr(w, http.StatusBadRequest, client.ClaimErrInvalid, fmt.Errorf("fenced=%q: want true or false", q.Get("fenced")), nil)
		return
	}
	var since time.Time
	if s := q.Get("since"); s != "" {
		if since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			writeClaimErr(w, http.StatusBadRequest, client.ClaimErrInvalid, fmt.Errorf("since=%q: want an RFC 3339 time", s), nil)
			return
		}
	}
	writeJSON(w, 200, p.waitFence(r.Context(), n, fenced, since))
}

// waitFence waits until the fence differs from (fenced, since), the
// long-poll window passes, ctx ends or the daemon stops.
func (p *Peer) waitFence(ctx context.Context, n *claim.Node, fenced bool, since time.Time) client.FenceStatus {
	ch, stop := n.Fence().Watch()
	defer stop()
	timer := time.NewTimer(fenceLongPoll)
	defer timer.Stop()
	// The fence is only re-evaluated when something happens; re-check on a
	// short tick so that a lapse of the window is seen promptly.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	cur := n.Fence().Evaluate()
	for cur.Fenced == fenced && cur.Since.Equal(since) {
		select {
		case s := <-ch:
			cur = s
		case <-tick.C:
			cur = n.Fence().Evaluate()
		case <-timer.C:
			return toFenceStatus(cur, n.Voters())
		case <-ctx.Done():
			return toFenceStatus(cur, n.Voters())
		case <-p.claims.closing:
			return toFenceStatus(cur, n.Voters())
		}
	}
	return toFenceStatus(cur, n.Voters())
}

func toClaimView(v claim.View) client.ClaimView {
	return client.ClaimView{Resource: v.Resource, Epoch: v.Epoch, Holder: v.Holder, State: string(v.State), Confirmed: v.Confirmed}
}

// writeClaimError maps a claim error to a status and code.
func writeClaimError(w http.ResponseWriter, err error, won *client.Claim) {
	status, code := http.StatusInternalServerError, ""
	switch {
	case errors.Is(err, claim.ErrInvalid):
		status, code = http.StatusBadRequest, client.ClaimErrInvalid
	case errors.Is(err, claim.ErrTaken):
		status, code = http.StatusConflict, client.ClaimErrTaken
	case errors.Is(err, claim.ErrSuperseded):
		status, code = http.StatusConflict, client.ClaimErrSuperseded
	case errors.Is(err, claim.ErrContended):
		status, code = http.StatusConflict, client.ClaimErrContended
	case errors.Is(err, claim.ErrFenced):
		status, code = http.StatusServiceUnavailable, client.ClaimErrFenced
	case errors.Is(err, claim.ErrNotVoter):
		status, code = http.StatusServiceUnavailable, client.ClaimErrNotVoter
	case errors.Is(err, claim.ErrNoQuorum):
		status, code = http.StatusServiceUnavailable, client.ClaimErrNoQuorum
	}
	writeClaimErr(w, status, code, err, won)
}

func writeClaimErr(w http.ResponseWriter, status int, code string, err error, won *client.Claim) {
	writeJSON(w, status, client.ClaimError{Code: code, Msg: err.Error(), Claim: won})
}
