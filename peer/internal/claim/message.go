package claim

import (
	"bytes"
	"encoding/json"
	"fmt"
)

const (
	maxResourceLen = 256
	maxHolderLen   = 128
	// MaxMessageSize bounds every encoded message and record.
	MaxMessageSize = 4096
)

// validName accepts 1..max bytes of [A-Za-z0-9._:/@-].
func validName(what, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if len(s) > max {
		return fmt.Errorf("%w: %s is %d bytes long, the limit is %d", ErrInvalid, what, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '/', c == '@', c == '-':
		default:
			return fmt.Errorf("%w: %s %q has byte %q at %d; use letters, digits and . _ : / @ -", ErrInvalid, what, s, c, i)
		}
	}
	return nil
}

// ValidResource checks a resource name ("vm/1234", "vsd/ab12", "upgrade").
func ValidResource(s string) error { return validName("resource", s, maxResourceLen) }

// ValidHolder checks a holder (a node ID).
func ValidHolder(s string) error { return validName("holder", s, maxHolderLen) }

// Accepted is a value an acceptor accepted: holder at (epoch, ballot).
type Accepted struct {
	Epoch  uint64 `json:"epoch"`
	Ballot Ballot `json:"ballot"`
	Holder string `json:"holder"`
}

// Record is an acceptor's durable state for one resource. Epoch is the
// highest epoch the acceptor has promised or accepted; Promised is its
// promise within Epoch; Accepted is the last value it accepted, which may
// belong to a lower epoch (then it answers no request of that epoch again).
type Record struct {
	Epoch    uint64    `json:"epoch"`
	Promised Ballot    `json:"promised"`
	Accepted *Accepted `json:"accepted,omitempty"`
}

// Validate checks the record's internal invariants.
func (r Record) Validate() error {
	if err := r.Promised.validate(); err != nil {
		return err
	}
	if r.Epoch == 0 && (!r.Promised.IsZero() || r.Accepted != nil) {
		return fmt.Errorf("%w: record at epoch 0 has a promise or a value", ErrInvalid)
	}
	if r.Epoch > 0 && r.Promised.IsZero() {
		return fmt.Errorf("%w: record at epoch %d has no promise", ErrInvalid, r.Epoch)
	}
	if a := r.Accepted; a != nil {
		if a.Epoch == 0 || a.Epoch > r.Epoch {
			return fmt.Errorf("%w: accepted epoch %d outside 1..%d", ErrInvalid, a.Epoch, r.Epoch)
		}
		if a.Ballot.IsZero() {
			return fmt.Errorf("%w: accepted value without a ballot", ErrInvalid)
		}
		if err := a.Ballot.validate(); err != nil {
			return err
		}
		if err := ValidHolder(a.Holder); err != nil {
			return err
		}
		if a.Epoch == r.Epoch && r.Promised.Less(a.Ballot) {
			return fmt.Errorf("%w: accepted ballot %v above promise %v", ErrInvalid, a.Ballot, r.Promised)
		}
	}
	return nil
}

// PrepareRequest is Paxos phase 1a for (Resource, Epoch).
type PrepareRequest struct {
	Resource string `json:"resource"`
	Epoch    uint64 `json:"epoch"`
	Ballot   Ballot `json:"ballot"`
}

// Validate checks the request.
func (q PrepareRequest) Validate() error {
	if err := ValidResource(q.Resource); err != nil {
		return err
	}
	if q.Epoch == 0 {
		return fmt.Errorf("%w: epoch 0 (epochs start at 1)", ErrInvalid)
	}
	if q.Ballot.IsZero() {
		return fmt.Errorf("%w: zero ballot", ErrInvalid)
	}
	return q.Ballot.validate()
}

// AcceptRequest is Paxos phase 2a: accept Holder for (Resource, Epoch) at Ballot.
type AcceptRequest struct {
	Resource string `json:"resource"`
	Epoch    uint64 `json:"epoch"`
	Ballot   Ballot `json:"ballot"`
	Holder   string `json:"holder"`
}

// Validate checks the request.
func (q AcceptRequest) Validate() error {
	if err := (PrepareRequest{q.Resource, q.Epoch, q.Ballot}).Validate(); err != nil {
		return err
	}
	return ValidHolder(q.Holder)
}

// ReadRequest asks an acceptor for its record of Resource.
type ReadRequest struct {
	Resource string `json:"resource"`
}

// Validate checks the request.
func (q ReadRequest) Validate() error { return ValidResource(q.Resource) }

// Reply answers every request: whether the acceptor granted it and its
// record after handling it (so a refused proposer learns why: a higher
// epoch, a higher promise, or another holder accepted in this epoch).
type Reply struct {
	OK     bool   `json:"ok"`
	Record Record `json:"record"`
}

// Validate checks the reply.
func (p Reply) Validate() error { return p.Record.Validate() }

type validator interface{ Validate() error }

// Encode encodes a message or record as JSON (the wire and disk format).
func Encode(v validator) ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// decode parses JSON of at most MaxMessageSize bytes into T and validates it.
func decode[T validator](b []byte) (T, error) {
	var v T
	if len(b) > MaxMessageSize {
		return v, fmt.Errorf("%w: message of %d bytes, the limit is %d", ErrInvalid, len(b), MaxMessageSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&v); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: decode %T: %v", ErrInvalid, v, err)
	}
	if d.More() {
		var zero T
		return zero, fmt.Errorf("%w: trailing data after %T", ErrInvalid, v)
	}
	if err := v.Validate(); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// DecodePrepare parses and validates a PrepareRequest.
func DecodePrepare(b []byte) (PrepareRequest, error) { return decode[PrepareRequest](b) }

// DecodeAccept parses and validates an AcceptRequest.
func DecodeAccept(b []byte) (AcceptRequest, error) { return decode[AcceptRequest](b) }

// DecodeRead parses and validates a ReadRequest.
func DecodeRead(b []byte) (ReadRequest, error) { return decode[ReadRequest](b) }

// DecodeReply parses and validates a Reply.
func DecodeReply(b []byte) (Reply, error) { return decode[Reply](b) }

// DecodeRecord parses and validates a stored Record.
func DecodeRecord(b []byte) (Record, error) { return decode[Record](b) }
