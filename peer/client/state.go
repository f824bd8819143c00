package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ErrStateResync is returned by WatchState when the revision to resume
// from is no longer kept on the node (compacted, or the node's state was
// reset): list the prefix again and watch from the revision ListState
// returns.
var ErrStateResync = errors.New("resync required")

// ErrStateNotFound is returned by GetState for a key with no live record.
var ErrStateNotFound = errors.New("no such record")

// Field kinds of a StateField.
const (
	KindRegister = "register"
	KindSet      = "set"
	KindCounter  = "counter"
)

// StateField is one field of a record as readers see it.
type StateField struct {
	Kind string `json:"kind"` // register, set or counter
	// Value is a register's bytes (by convention JSON; the CLI writes
	// plain strings).
	Value string `json:"value,omitempty"`
	// Elems are a set's present elements, sorted.
	Elems []string `json:"elems,omitempty"`
	// Count is a counter's value.
	Count int64 `json:"count,omitempty"`
}

// StateRecord is one live record of the cluster state.
type StateRecord struct {
	Key    string                `json:"key"`
	Schema uint32                `json:"schema,omitempty"` // highest schema version that wrote it
	Fields map[string]StateField `json:"fields"`
}

// StateList is the answer to ListState: the live records under a prefix
// and the local revision they reflect (watch from it).
type StateList struct {
	Rev     uint64        `json:"rev"`
	Records []StateRecord `json:"records"`
}

// StatePutRequest writes register fields of a record (field-level: other
// fields are untouched). An empty value clears a field.
type StatePutRequest struct {
	Key    string            `json:"key"`
	Fields map[string]string `json:"fields"`
}

// StateDeleteRequest deletes a whole record.
type StateDeleteRequest struct {
	Key string `json:"key"`
}

// StateWrite is the answer to a put or delete: the change it made.
type StateWrite struct {
	Origin string `json:"origin"`
	Seq    uint64 `json:"seq"`
}

// StateEvent is one change of a watched prefix. Record is nil when the
// record was deleted.
type StateEvent struct {
	Rev    uint64       `json:"rev"`
	Key    string       `json:"key"`
	Record *StateRecord `json:"record,omitempty"`
}

// StateWatchBatch is one long-poll answer: the events after the revision
// asked for, and the revision to ask from next (at least the last
// event's; beyond it when later revisions did not match the prefix).
type StateWatchBatch struct {
	Events []StateEvent `json:"events"`
	Rev    uint64       `json:"rev"`
}

// StateDigest is a hash of everything readers see on the node: nodes that
// merged the same changes have the same digest.
type StateDigest struct {
	Digest  string `json:"digest"` // hex SHA-256
	Rev     uint64 `json:"rev"`    // local revision (differs between nodes)
	Records int    `json:"records"`
	// VV is the node's version vector: per origin, the highest change
	// sequence applied.
	VV map[string]uint64 `json:"vv"`
}

// GetState returns the live record key, or an error matching
// ErrStateNotFound.
func (c *Client) GetState(ctx context.Context, key string) (StateRecord, error) {
	var r StateRecord
	err := c.do(ctx, "GET", "/v1/state/get?key="+url.QueryEscape(key), nil, &r)
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return r, fmt.Errorf("%s: %w", key, ErrStateNotFound)
	}
	return r, err
}

// ListState returns the live records whose key starts with prefix, in
// key order, and the revision they reflect.
func (c *Client) ListState(ctx context.Context, prefix string) (StateList, error) {
	var l StateList
	return l, c.do(ctx, "GET", "/v1/state/list?prefix="+url.QueryEscape(prefix), nil, &l)
}

// PutState writes register fields of the record key (field-level).
func (c *Client) PutState(ctx context.Context, key string, fields map[string]string) (StateWrite, error) {
	var w StateWrite
	return w, c.do(ctx, "POST", "/v1/state/put", StatePutRequest{Key: key, Fields: fields}, &w)
}

// DeleteState deletes the record key.
func (c *Client) DeleteState(ctx context.Context, key string) (StateWrite, error) {
	var w StateWrite
	return w, c.do(ctx, "POST", "/v1/state/delete", StateDeleteRequest{Key: key}, &w)
}

// DigestState returns the node's state digest.
func (c *Client) DigestState(ctx context.Context) (StateDigest, error) {
	var d StateDigest
	return d, c.do(ctx, "GET", "/v1/state/digest", nil, &d)
}

// WatchStateOnce long-polls for the events under prefix after revision
// from, waiting up to wait (zero: the server's default, 30 s) for the
// first one. A batch with no events means none came in time; ask again
// from its Rev. A compacted revision returns an error matching
// ErrStateResync.
func (c *Client) WatchStateOnce(ctx context.Context, prefix string, from uint64, wait time.Duration) (StateWatchBatch, error) {
	var b StateWatchBatch
	q := url.Values{"prefix": {prefix}, "from": {strconv.FormatUint(from, 10)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	err := c.do(ctx, "GET", "/v1/state/watch?"+q.Encode(), nil, &b)
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusGone {
		return b, fmt.Errorf("%w: %s", ErrStateResync, e.Msg)
	}
	return b, err
}

// WatchState calls fn for every event under prefix after revision from,
// in order, until ctx ends (then it returns nil), fn returns an error
// (returned), or the revision is compacted (an error matching
// ErrStateResync). Connection errors are retried every second, resuming
// after the last event handled, so no event is missed or repeated.
func (c *Client) WatchState(ctx context.Context, prefix string, from uint64, fn func(StateEvent) error) error {
	rev := from
	for {
		b, err := c.WatchStateOnce(ctx, prefix, rev, 0)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrStateResync):
			return err
		case err != nil:
			var e *Error
			if errors.As(err, &e) && e.Status < 500 {
				return err // a bad request: retrying does not help
			}
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		for _, ev := range b.Events {
			if err := fn(ev); err != nil {
				return err
			}
			rev = ev.Rev
		}
		rev = max(rev, b.Rev)
	}
}
