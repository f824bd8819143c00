package claim

import (
	"fmt"
	"sync"
)

// Acceptor is the Paxos acceptor of one node for every resource. It
// handles one request at a time, saves its record durably before it
// answers, and enforces, per resource:
//
//   - a request for an epoch lower than its record's epoch is refused
//     (a higher epoch supersedes a lower one: a stale owner cannot come
//     back to an old epoch once a majority has moved on);
//   - within an epoch, Paxos: no promise or accept below the promise;
//   - within an epoch it accepts one holder only: once it accepted h at
//     epoch e it refuses any other holder at e, whatever the ballot.
//
// Refusing is always safe (it is indistinguishable from a lost message), so
// these rules only ever remove behaviours of plain single-decree Paxos.
type Acceptor struct {
	mu    sync.Mutex
	store Store
}

// NewAcceptor returns an acceptor over store.
func NewAcceptor(store Store) *Acceptor { return &Acceptor{store: store} }

// Store returns the acceptor's store.
func (a *Acceptor) Store() Store { return a.store }

// Check verifies the store (see Store.Check).
func (a *Acceptor) Check() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store.Check()
}

// Prepare handles phase 1a. An error means nothing was promised (bad
// request or the store failed): the caller must not answer.
func (a *Acceptor) Prepare(q PrepareRequest) (Reply, error) {
	if err := q.Validate(); err != nil {
		return Reply{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r, err := a.store.Load(q.Resource)
	if err != nil {
		return Reply{}, err
	}
	switch {
	case q.Epoch < r.Epoch:
		return Reply{Record: r}, nil
	case q.Epoch > r.Epoch:
		r.Epoch, r.Promised = q.Epoch, q.Ballot
	case q.Ballot.Less(r.Promised):
		return Reply{Record: r}, nil
	case q.Ballot == r.Promised:
		return Reply{OK: true, Record: r}, nil // duplicate: already durable
	default:
		r.Promised = q.Ballot
	}
	if err := a.store.Save(q.Resource, r); err != nil {
		return Reply{}, fmt.Errorf("promise %q epoch %d: %w", q.Resource, q.Epoch, err)
	}
	return Reply{OK: true, Record: r}, nil
}

// Accept handles phase 2a. An error means nothing was accepted.
func (a *Acceptor) Accept(q AcceptRequest) (Reply, error) {
	if err := q.Validate(); err != nil {
		return Reply{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r, err := a.store.Load(q.Resource)
	if err != nil {
		return Reply{}, err
	}
	switch {
	case q.Epoch < r.Epoch:
		return Reply{Record: r}, nil
	case q.Epoch == r.Epoch && q.Ballot.Less(r.Promised):
		return Reply{Record: r}, nil
	case q.Epoch == r.Epoch && r.Accepted != nil && r.Accepted.Epoch == q.Epoch && r.Accepted.Holder != q.Holder:
		return Reply{Record: r}, nil // one holder per epoch per acceptor
	}
	want := Record{Epoch: q.Epoch, Promised: q.Ballot, Accepted: &Accepted{Epoch: q.Epoch, Ballot: q.Ballot, Holder: q.Holder}}
	if r.Epoch == want.Epoch && r.Promised == want.Promised && r.Accepted != nil && *r.Accepted == *want.Accepted {
		return Reply{OK: true, Record: r}, nil // duplicate
	}
	if err := a.store.Save(q.Resource, want); err != nil {
		return Reply{}, fmt.Errorf("accept %q epoch %d: %w", q.Resource, q.Epoch, err)
	}
	return Reply{OK: true, Record: want}, nil
}

// Read returns the record of a resource (the zero Record if none).
func (a *Acceptor) Read(q ReadRequest) (Reply, error) {
	if err := q.Validate(); err != nil {
		return Reply{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r, err := a.store.Load(q.Resource)
	if err != nil {
		return Reply{}, err
	}
	return Reply{OK: true, Record: r}, nil
}
