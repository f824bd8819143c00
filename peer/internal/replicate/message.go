package replicate

import (
	"crypto/sha256"
	"fmt"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

// PushMsg carries changes the sender has just applied.
type PushMsg struct {
	From    string         `json:"from"`   // sender's node ID
	Origin  string         `json:"origin"` // sender's current origin
	Changes []*crdt.Change `json:"changes"`
}

// PullRequest asks a peer for what the sender lacks. VV is also the
// sender's acknowledgement of what it has applied.
type PullRequest struct {
	From   string             `json:"from"`
	Origin string             `json:"origin"`
	VV     crdt.VersionVector `json:"vv,omitempty"`
	// VVHash, when set, replaces VV: a hash of the sender's version
	// vector (HashVV). A quiet cluster sends only that; a responder whose
	// vector differs answers NeedVV and the sender asks again with VV.
	VVHash []byte `json:"vv_hash,omitempty"`
	// Snapshot asks for a snapshot chunk after SnapshotAfter instead of
	// changes (to continue a transfer, or because the sender is resetting).
	Snapshot      bool   `json:"snapshot,omitempty"`
	SnapshotAfter string `json:"snapshot_after,omitempty"`
	// Resync lists the members the sender has expelled (silent past the
	// rejoin horizon): node ID → highest incarnation not to merge. Sent
	// with a full VV when the sender has any; the receiver adopts them.
	Resync crdt.VersionVector `json:"resync,omitempty"`
}

// PullResponse answers a PullRequest.
type PullResponse struct {
	From   string `json:"from"`
	Origin string `json:"origin"`
	// Same is set when the responder has applied exactly the requester's
	// VV: nothing else is sent, and VV is omitted.
	Same bool               `json:"same,omitempty"`
	VV   crdt.VersionVector `json:"vv,omitempty"`
	// Changes the requester lacks, in origin and seq order; More when
	// the size bound cut them short.
	Changes []*crdt.Change `json:"changes,omitempty"`
	More    bool           `json:"more,omitempty"`
	// Snapshot is set instead of Changes when the requester is behind the
	// compacted log or asked for one.
	Snapshot *crdt.SnapshotChunk `json:"snapshot,omitempty"`
	// NeedVV asks the requester to repeat its request with its full
	// version vector (it sent only VVHash, and the vectors differ).
	NeedVV bool `json:"need_vv,omitempty"`
	// Reset tells the requester it was away past the rejoin horizon: it
	// must reset its store and load the snapshot, not merge.
	Reset bool `json:"reset,omitempty"`
	// Resync, with Reset, lists the members the responder has expelled
	// (as in PullRequest): the resetting node adopts them, so that it
	// refuses the other nodes of the side it was on until they reset too.
	Resync crdt.VersionVector `json:"resync,omitempty"`
}

const (
	tagPush = 'P'
	tagPull = 'Q'
	tagResp = 'A'
)

const maxID = crdt.MaxOriginLen

// vvHashLen is the size of HashVV's result.
const vvHashLen = 16

// HashVV returns a short hash of the canonical encoding of v.
func HashVV(v crdt.VersionVector) []byte {
	h := sha256.Sum256(crdt.EncodeVV(v))
	return h[:vvHashLen]
}

func flags(bs ...bool) byte {
	var f byte
	for i, b := range bs {
		if b {
			f |= 1 << i
		}
	}
	return f
}

// Marshal returns the canonical encoding of m.
func (m *PushMsg) Marshal() []byte {
	e := &crdt.Encoder{}
	e.Header(tagPush)
	e.String(m.From)
	e.String(m.Origin)
	e.Changes(m.Changes)
	return e.Bytes()
}

// UnmarshalPush decodes a PushMsg.
func UnmarshalPush(b []byte) (*PushMsg, error) {
	d := crdt.NewDecoder(b)
	d.Header(tagPush)
	m := &PushMsg{From: d.String(maxID), Origin: d.String(maxID), Changes: d.Changes()}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%w: push: %w", ErrBadMessage, err)
	}
	return m, nil
}

// Marshal returns the canonical encoding of q.
func (q *PullRequest) Marshal() []byte {
	e := &crdt.Encoder{}
	e.Header(tagPull)
	e.String(q.From)
	e.String(q.Origin)
	e.Byte(flags(q.Snapshot, q.VVHash != nil, len(q.Resync) > 0))
	if q.VVHash != nil {
		e.Raw(q.VVHash)
	} else {
		e.VV(q.VV)
	}
	e.String(q.SnapshotAfter)
	if len(q.Resync) > 0 {
		e.VV(q.Resync)
	}
	return e.Bytes()
}

// UnmarshalPullRequest decodes a PullRequest.
func UnmarshalPullRequest(b []byte) (*PullRequest, error) {
	d := crdt.NewDecoder(b)
	d.Header(tagPull)
	q := &PullRequest{From: d.String(maxID), Origin: d.String(maxID)}
	f := d.Byte()
	if f&^7 != 0 {
		d.Fail("bad flags %#x", f)
	}
	q.Snapshot = f&1 != 0
	if f&2 != 0 {
		q.VVHash = d.Raw(vvHashLen)
		if len(q.VVHash) != vvHashLen {
			d.Fail("version vector hash of %d bytes", len(q.VVHash))
		}
		if len(q.VV) > 0 {
			d.Fail("both version vector and hash")
		}
	} else {
		q.VV = d.VV()
	}
	q.SnapshotAfter = d.String(crdt.MaxKeyLen)
	if f&4 != 0 {
		if q.Resync = d.VV(); len(q.Resync) == 0 {
			d.Fail("empty resync list")
		}
	}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%w: pull request: %w", ErrBadMessage, err)
	}
	return q, nil
}

// Marshal returns the canonical encoding of r.
func (r *PullResponse) Marshal() []byte {
	e := &crdt.Encoder{}
	e.Header(tagResp)
	e.String(r.From)
	e.String(r.Origin)
	e.Byte(flags(r.Same, r.More, r.Reset, r.Snapshot != nil, r.NeedVV, len(r.Resync) > 0))
	if !r.Same {
		e.VV(r.VV)
	}
	e.Changes(r.Changes)
	if r.Snapshot != nil {
		e.Snapshot(r.Snapshot)
	}
	if len(r.Resync) > 0 {
		e.VV(r.Resync)
	}
	return e.Bytes()
}

// UnmarshalPullResponse decodes a PullResponse.
func UnmarshalPullResponse(b []byte) (*PullResponse, error) {
	d := crdt.NewDecoder(b)
	d.Header(tagResp)
	r := &PullResponse{From: d.String(maxID), Origin: d.String(maxID)}
	f := d.Byte()
	if f&^63 != 0 {
		d.Fail("bad flags %#x", f)
	}
	r.Same, r.More, r.Reset, r.NeedVV = f&1 != 0, f&2 != 0, f&4 != 0, f&16 != 0
	if r.Same && f != 1 {
		d.Fail("same response with other flags")
	}
	if !r.Same {
		r.VV = d.VV()
	}
	r.Changes = d.Changes()
	if f&8 != 0 {
		r.Snapshot = d.Snapshot()
	}
	if f&32 != 0 {
		if r.Resync = d.VV(); len(r.Resync) == 0 {
			d.Fail("empty resync list")
		}
	}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%w: pull response: %w", ErrBadMessage, err)
	}
	return r, nil
}
