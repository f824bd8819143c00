package claim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Paths of the claim RPCs, below the prefix the daemon mounts them at
// (for peer's node channel: /v1/svc/claim).
const (
	PathPrepare = "/prepare"
	PathAccept  = "/accept"
	PathRead    = "/read"
	PathPing    = "/ping"
)

// Handler serves this node's acceptor to the other voters, at prefix:
// POST prefix/prepare, prefix/accept, prefix/read with a JSON request
// (at most MaxMessageSize bytes), answered 200 with a JSON Reply; and
// GET prefix/ping, answered 204. caller returns the node ID of the caller,
// verified by the channel (the mutual-TLS certificate). Callers outside the
// current voter set get 403 and no answer: a removed node cannot count on
// anyone and fences itself. A ballot must carry the caller's own ID (400). A request from a voter counts as hearing from
// it. A store failure is a 500: the acceptor did not answer.
func (n *Node) Handler(prefix string, caller func(*http.Request) string) http.Handler {
	prefix = strings.TrimSuffix(prefix, "/")
	mux := http.NewServeMux()
	rpc := func(path string, serve func(caller string, body []byte) (Reply, error)) {
		mux.HandleFunc("POST "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
			id, ok := n.admit(w, r, caller)
			if !ok {
				return
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, MaxMessageSize+1))
			if err != nil {
				http.Error(w, fmt.Sprintf("read claim request: %v", err), http.StatusBadRequest)
				return
			}
			rep, err := serve(id, body)
			if err != nil {
				status := http.StatusInternalServerError
				if isInvalid(err) {
					status = http.StatusBadRequest
				}
				http.Error(w, err.Error(), status)
				return
			}
			out, err := Encode(rep)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(out)
		})
	}
	rpc(PathPrepare, func(id string, b []byte) (Reply, error) {
		q, err := DecodePrepare(b)
		if err != nil {
			return Reply{}, err
		}
		if err := ownBallot(id, q.Ballot); err != nil {
			return Reply{}, err
		}
		return n.acceptor.Prepare(q)
	})
	rpc(PathAccept, func(id string, b []byte) (Reply, error) {
		q, err := DecodeAccept(b)
		if err != nil {
			return Reply{}, err
		}
		if err := ownBallot(id, q.Ballot); err != nil {
			return Reply{}, err
		}
		return n.acceptor.Accept(q)
	})
	rpc(PathRead, func(_ string, b []byte) (Reply, error) {
		q, err := DecodeRead(b)
		if err != nil {
			return Reply{}, err
		}
		return n.acceptor.Read(q)
	})
	mux.HandleFunc("GET "+prefix+PathPing, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := n.admit(w, r, caller); ok {
			w.WriteHeader(http.StatusNoContent)
		}
	})
	return mux
}

func (n *Node) admit(w http.ResponseWriter, r *http.Request, caller func(*http.Request) string) (string, bool) {
	id := caller(r)
	if id == "" || !n.Voters().Contains(id) {
		n.log.Debug("refused a claim request from a non-voter", "node", id, "path", r.URL.Path)
		http.Error(w, fmt.Sprintf("node %q is not a voter of this cluster (removed, or not admitted yet)", id), http.StatusForbidden)
		return "", false
	}
	n.fence.Heard(id)
	return id, true
}

// ownBallot refuses a ballot issued in another node's name.
func ownBallot(caller string, b Ballot) error {
	if b.Node != caller {
		return fmt.Errorf("%w: node %s sent a ballot of node %s", ErrInvalid, caller, b.Node)
	}
	return nil
}

func isInvalid(err error) bool { return errors.Is(err, ErrInvalid) }

// HTTPTransport is the Transport over the node channel: it calls Handler
// on other nodes. Its fields are funcs so that the daemon can bind them
// once the channel is up.
type HTTPTransport struct {
	// Client returns the mutual-TLS client.
	Client func() *http.Client
	// URL returns the URL of path on node id.
	URL func(id, path string) (string, error)
	// Prefix is where the other nodes mount Handler ("/v1/svc/claim").
	Prefix string
}

// Prepare implements Transport.
func (t *HTTPTransport) Prepare(ctx context.Context, to string, q PrepareRequest) (Reply, error) {
	return t.call(ctx, to, PathPrepare, q)
}

// Accept implements Transport.
func (t *HTTPTransport) Accept(ctx context.Context, to string, q AcceptRequest) (Reply, error) {
	return t.call(ctx, to, PathAccept, q)
}

// Read implements Transport.
func (t *HTTPTransport) Read(ctx context.Context, to string, q ReadRequest) (Reply, error) {
	return t.call(ctx, to, PathRead, q)
}

// Ping implements Transport.
func (t *HTTPTransport) Ping(ctx context.Context, to string) error {
	u, err := t.URL(to, t.Prefix+PathPing)
	if err != nil {
		return fmt.Errorf("ping %s: %w", to, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("ping %s: %w", to, err)
	}
	resp, err := t.Client().Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", to, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, MaxMessageSize))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("ping %s: status %s", to, resp.Status)
	}
	return nil
}

func (t *HTTPTransport) call(ctx context.Context, to, path string, q validator) (Reply, error) {
	body, err := Encode(q)
	if err != nil {
		return Reply{}, err
	}
	u, err := t.URL(to, t.Prefix+path)
	if err != nil {
		return Reply{}, fmt.Errorf("claim %s to %s: %w", path, to, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Reply{}, fmt.Errorf("claim %s to %s: %w", path, to, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.Client().Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("claim %s to %s: %w", path, to, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxMessageSize+1))
	if err != nil {
		return Reply{}, fmt.Errorf("claim %s to %s: read reply: %w", path, to, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, fmt.Errorf("claim %s to %s: status %s: %s", path, to, resp.Status, bytes.TrimSpace(b))
	}
	r, err := DecodeReply(b)
	if err != nil {
		return Reply{}, fmt.Errorf("claim %s to %s: %w", path, to, err)
	}
	return r, nil
}
