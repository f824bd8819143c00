// Package client is the Go client of shoal peer's local API, served over
// HTTP on a UNIX socket (/run/shoal/peer.sock by default). The CLI and the
// other subsystems use it; it defines the API's JSON types. A Client is
// safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// DefaultSocket is where shoal peer listens on a node.
const DefaultSocket = "/run/shoal/peer.sock"

// Member states.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateFailed  = "failed"
	StateLeaving = "leaving"
	StateLeft    = "left"
	StatePending = "pending" // waiting for admission (approve or code policy)
)

// Node phases of the local node.
const (
	PhaseUnclaimed = "unclaimed" // not in a cluster; looking for peers to form or a cluster to join
	PhaseJoining   = "joining"   // asked a cluster for admission, waiting
	PhaseMember    = "member"    // in a cluster
	PhaseRemoved   = "removed"   // removed by an operator: gossip stopped; `shoal cluster leave` makes it unclaimed
)

// Admission policies.
const (
	PolicyAuto    = "auto"
	PolicyApprove = "approve"
	PolicyCode    = "code"
)

// Member is one node as this node sees it.
type Member struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	State    string            `json:"state"`
	Gossip   string            `json:"gossip,omitempty"`
	API      string            `json:"api,omitempty"`
	Version  string            `json:"version,omitempty"`
	Roles    string            `json:"roles,omitempty"`
	Hardware string            `json:"hardware,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// Peer is a node heard on the backplane by discovery.
type Peer struct {
	ID        string `json:"id"`
	ClusterID string `json:"cluster_id,omitempty"`
	State     string `json:"state"`
	API       string `json:"api,omitempty"`
	Version   string `json:"version,omitempty"`
}

// Status is `shoal status`.
type Status struct {
	ClusterID string   `json:"cluster_id"` // empty while unclaimed
	Phase     string   `json:"phase"`
	Policy    string   `json:"policy,omitempty"`
	Self      Member   `json:"self"`
	Members   []Member `json:"members"`
	Pending   []Member `json:"pending,omitempty"`
	// Code is the six-digit code an operator gives to `shoal node approve
	// --code` when the cluster asks for one; shown while joining.
	Code string `json:"code,omitempty"`
	// Foreign lists other clusters and unclaimed nodes heard on the
	// backplane; clusters never merge by themselves.
	Foreign []Peer `json:"foreign,omitempty"`
	// Fence is this node's fence while it is a member (claim.go).
	Fence *FenceStatus `json:"fence,omitempty"`
}

// Event is a membership event.
type Event struct {
	Time   time.Time `json:"time"`
	Type   string    `json:"type"` // join, fail, leave, recover, update, reap, admit, remove, pending, refuse, form, key-rotate
	NodeID string    `json:"node_id,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// JoinRequest asks the local node to join the cluster of the node at Addr
// (its node API, host:port; port 7443 when omitted).
type JoinRequest struct {
	Addr string `json:"addr"`
}

// ApproveRequest approves a pending node.
type ApproveRequest struct {
	Code string `json:"code,omitempty"`
}

// CreateRequest creates a cluster with this node alone.
type CreateRequest struct {
	Policy string `json:"policy,omitempty"`
}

// PolicyRequest sets the cluster's admission policy.
type PolicyRequest struct {
	Policy string `json:"policy"`
}

// Error is an error returned by the API.
type Error struct {
	Status int    `json:"-"`
	Msg    string `json:"error"`
}

func (e *Error) Error() string { return e.Msg }

// Client talks to one node's local API.
type Client struct {
	hc     *http.Client
	base   string
	remote string // a member's node API (host:port) for NewRemote; empty for the local socket
}

// New returns a client of the API on the UNIX socket at path.
func New(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr}, base: "http://peer"}
}

// Status returns the node's view of the cluster.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Nodes lists the members and pending nodes.
func (c *Client) Nodes(ctx context.Context) ([]Member, error) {
	var m []Member
	return m, c.do(ctx, "GET", "/v1/nodes", nil, &m)
}

// Events returns the recent membership events, oldest first.
func (c *Client) Events(ctx context.Context) ([]Event, error) {
	var e []Event
	return e, c.do(ctx, "GET", "/v1/events", nil, &e)
}

// CreateCluster makes this unclaimed node the first member of a new cluster.
func (c *Client) CreateCluster(ctx context.Context, req CreateRequest) (Status, error) {
	var s Status
	return s, c.do(ctx, "POST", "/v1/cluster/create", req, &s)
}

// JoinCluster asks the cluster of the node at addr to admit this node.
func (c *Client) JoinCluster(ctx context.Context, addr string) (Status, error) {
	var s Status
	return s, c.do(ctx, "POST", "/v1/cluster/join", JoinRequest{Addr: addr}, &s)
}

// LeaveCluster leaves the cluster gracefully and forgets it: the node is
// unclaimed afterwards.
func (c *Client) LeaveCluster(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/cluster/leave", nil, nil)
}

// RotateKey installs a new gossip key on every member, makes it primary and
// removes the old ones.
func (c *Client) RotateKey(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/cluster/rotate-key", nil, nil)
}

// SetPolicy sets the cluster's admission policy.
func (c *Client) SetPolicy(ctx context.Context, policy string) error {
	return c.do(ctx, "POST", "/v1/cluster/policy", PolicyRequest{Policy: policy}, nil)
}

// Approve admits a pending node.
func (c *Client) Approve(ctx context.Context, id, code string) error {
	return c.do(ctx, "POST", "/v1/nodes/"+url.PathEscape(id)+"/approve", ApproveRequest{Code: code}, nil)
}

// Remove forgets a node for good: it leaves membership and its certificate
// stops working.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/nodes/"+url.PathEscape(id), nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.call(ctx, method, path, in, out, func(status int, body []byte) error {
		e := &Error{Status: status}
		if json.Unmarshal(body, e) != nil || e.Msg == "" {
			return nil
		}
		return e
	})
}

// call makes one request of the local API. An answer of status 300 or
// more becomes the error apiErr makes of its body, or, when apiErr returns
// nil (no JSON error in the body), an Error naming the status.
func (c *Client) call(ctx context.Context, method, path string, in, out any, apiErr func(status int, body []byte) error) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil && c.remote != "" {
		return remoteError(c.remote, err) // remote.go
	}
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("reach shoal peer: %w (is `shoal peer` running?)", err)
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read reply: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		if err := apiErr(resp.StatusCode, b); err != nil {
			return err
		}
		return &Error{Status: resp.StatusCode, Msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode reply: %w", method, path, err)
		}
	}
	return nil
}
