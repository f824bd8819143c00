package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Claim states (ClaimView.State), as in docs/claims.md.
const (
	ClaimNone        = "none"        // never claimed
	ClaimHeld        = "held"        // Holder is decided at Epoch
	ClaimOpen        = "open"        // Epoch was started, no holder decided (yet)
	ClaimContended   = "contended"   // no holder can win Epoch any more; claim the next one
	ClaimUnconfirmed = "unconfirmed" // local view: accepted here, not known to be decided
)

// Claim error codes (ClaimError.Code).
const (
	ClaimErrTaken      = "taken"      // another holder was decided at that epoch (ClaimError.Claim names it)
	ClaimErrSuperseded = "superseded" // a majority is at a higher epoch
	ClaimErrContended  = "contended"  // no new proposal can win that epoch; claim the next one
	ClaimErrNoQuorum   = "no_quorum"  // no majority answered: the outcome is unknown, get before acting
	ClaimErrFenced     = "fenced"     // this node is fenced and refuses to propose
	ClaimErrNotVoter   = "not_voter"  // this node is not a voter (not a member, removed, or not settled yet)
	ClaimErrInvalid    = "invalid"    // bad resource, holder or epoch; nothing was sent
)

// Claim is a holder decided for (Resource, Epoch).
type Claim struct {
	Resource string `json:"resource"`
	Epoch    uint64 `json:"epoch"`
	Holder   string `json:"holder"`
}

// ClaimView is what a node knows of a resource's claim.
type ClaimView struct {
	Resource string `json:"resource"`
	Epoch    uint64 `json:"epoch"`            // the highest epoch known started
	Holder   string `json:"holder,omitempty"` // the holder at Epoch, if any
	State    string `json:"state"`            // none, held, open, contended, unconfirmed
	// Confirmed: the view came from a majority round; otherwise it is this
	// node's last known view and may be stale (never act on it).
	Confirmed bool `json:"confirmed"`
}

// ClaimRequest proposes Holder for (Resource, Epoch). Epoch 0 means the
// next epoch: read the current one with a majority and propose one more
// (nothing is proposed if Holder already holds the highest epoch). Empty
// Holder means this node.
type ClaimRequest struct {
	Resource string `json:"resource"`
	Epoch    uint64 `json:"epoch,omitempty"`
	Holder   string `json:"holder,omitempty"`
}

// ClaimError is the error of a claim call that reached the daemon.
type ClaimError struct {
	Status int    `json:"-"`
	Code   string `json:"code"` // ClaimErr*, or empty for other errors
	Msg    string `json:"error"`
	// Claim is the winner when Code is taken.
	Claim *Claim `json:"claim,omitempty"`
}

func (e *ClaimError) Error() string { return e.Msg }

// ClaimCode returns the ClaimErr* code of err, or "" if it has none.
func ClaimCode(err error) string {
	var e *ClaimError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// FenceStatus is this node's fence (docs/claims.md): a node that has not
// heard from a majority of voters within the fence window is fenced; it
// refuses to claim, its hypervisor pauses VMs and scribe stops writing.
type FenceStatus struct {
	Fenced bool      `json:"fenced"`
	Since  time.Time `json:"since"` // when Fenced last changed
	Heard  int       `json:"heard"` // voters (self included) heard within the window
	Need   int       `json:"need"`  // the majority
	Voters []string  `json:"voters"`
}

// Claim proposes a claim (see ClaimRequest) and returns it when
// req.Holder (this node by default) won. Errors are *ClaimError; match
// their Code with ClaimCode.
func (c *Client) Claim(ctx context.Context, req ClaimRequest) (Claim, error) {
	var out Claim
	return out, c.claimCall(ctx, "POST", "/v1/claim", req, &out)
}

// GetClaim reads resource's claim from a majority of voters
// (linearizable: at least as new as every claim decided before the call).
func (c *Client) GetClaim(ctx context.Context, resource string) (ClaimView, error) {
	var out ClaimView
	return out, c.claimCall(ctx, "GET", "/v1/claim?resource="+url.QueryEscape(resource), nil, &out)
}

// Claims lists this node's last known view of every claim, without asking
// anyone: cheap, possibly stale, for display.
func (c *Client) Claims(ctx context.Context) ([]ClaimView, error) {
	var out []ClaimView
	return out, c.claimCall(ctx, "GET", "/v1/claims", nil, &out)
}

// Fence returns this node's fence now.
func (c *Client) Fence(ctx context.Context) (FenceStatus, error) {
	var out FenceStatus
	return out, c.claimCall(ctx, "GET", "/v1/fence", nil, &out)
}

// WaitFence blocks until the fence differs from last (Fenced or Since
// changed), ctx ends, or the daemon's long-poll window (about 30 s) passes,
// and returns the state then (which may equal last: call again).
// Subscribers loop on it, starting from Fence:
//
//	st, err := c.Fence(ctx)
//	for err == nil { act(st); st, err = c.WaitFence(ctx, st) }
//
// A change of Since means the node was fenced in between even if Fenced is
// false again: a holder must re-read its claims (GetClaim) before resuming.
func (c *Client) WaitFence(ctx context.Context, last FenceStatus) (FenceStatus, error) {
	var out FenceStatus
	q := url.Values{"wait": {"1"}, "fenced": {strconv.FormatBool(last.Fenced)}, "since": {last.Since.Format(time.RFC3339Nano)}}
	return out, c.claimCall(ctx, "GET", "/v1/fence?"+q.Encode(), nil, &out)
}

// FenceSource is what WatchFence reads: a Client, or a test fake.
type FenceSource interface {
	Fence(ctx context.Context) (FenceStatus, error)
	WaitFence(ctx context.Context, last FenceStatus) (FenceStatus, error)
}

// WatchFence follows this node's fence until ctx ends: onChange gets the
// first state read and every later one that differs (Fenced or Since).
// While the daemon cannot be asked (not a member yet, restarting) it
// tries again every retry.
func WatchFence(ctx context.Context, src FenceSource, retry time.Duration, onChange func(FenceStatus)) {
	var last FenceStatus
	seen, polling := false, false
	for ctx.Err() == nil {
		var st FenceStatus
		var err error
		if polling {
			st, err = src.WaitFence(ctx, last)
		} else {
			st, err = src.Fence(ctx)
		}
		if err != nil {
			polling = false
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		polling = true
		if seen && st.Fenced == last.Fenced && st.Since.Equal(last.Since) {
			continue
		}
		seen, last = true, st
		onChange(st)
	}
}

func (c *Client) claimCall(ctx context.Context, method, path string, in, out any) error {
	return c.call(ctx, method, path, in, out, func(status int, body []byte) error {
		e := &ClaimError{Status: status}
		if json.Unmarshal(body, e) != nil || e.Msg == "" {
			e.Msg = fmt.Sprintf("%s %s: HTTP %d", method, path, status)
		}
		return e
	})
}

// ClaimRecordPrefix is where decided claims are recorded in the cluster
// state, for display: one record per resource, claim/<resource>, with one
// field per epoch, e<epoch> = holder. The record is a copy for display
// (`shoal state ls claim/`); the acceptors are the truth (GetClaim).
const ClaimRecordPrefix = "claim/"

// ClaimRecordKey returns the state key recording resource's holders.
func ClaimRecordKey(resource string) string { return ClaimRecordPrefix + resource }

// ClaimEpochField returns the state field naming the holder of epoch.
func ClaimEpochField(epoch uint64) string { return "e" + strconv.FormatUint(epoch, 10) }

// ClaimEpochOfField returns the epoch of a field named by ClaimEpochField.
func ClaimEpochOfField(name string) (uint64, bool) {
	if len(name) < 2 || name[0] != 'e' || name[1] == '0' || name[1] == '+' {
		return 0, false
	}
	e, err := strconv.ParseUint(name[1:], 10, 64)
	return e, err == nil && e > 0
}

// ClaimFromState returns the claim a claim/<resource> state record shows:
// the holder of its highest epoch field. ok is false when r is not such
// a record or holds no epoch.
func ClaimFromState(r StateRecord) (c Claim, ok bool) {
	resource, found := strings.CutPrefix(r.Key, ClaimRecordPrefix)
	if !found || resource == "" {
		return Claim{}, false
	}
	for name, f := range r.Fields {
		if e, isEpoch := ClaimEpochOfField(name); isEpoch && f.Value != "" && e > c.Epoch {
			c = Claim{Resource: resource, Epoch: e, Holder: f.Value}
		}
	}
	return c, c.Epoch > 0
}
