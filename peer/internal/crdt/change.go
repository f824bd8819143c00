package crdt

import "fmt"

// Change is one entry of an origin's change log: the delta that one local
// write merged into the record Key. Applying it is Merge(record, Delta).
type Change struct {
	Origin string  `json:"origin"`
	Seq    uint64  `json:"seq"`
	Key    string  `json:"key"`
	Delta  *Record `json:"delta"`
}

// Dot returns the change's identity.
func (c *Change) Dot() Dot { return Dot{Origin: c.Origin, Seq: c.Seq} }

// EncodeChange returns the canonical encoding of c.
func EncodeChange(c *Change) []byte {
	e := &enc{}
	e.byte(tagChange)
	e.byte(version1)
	e.change(c)
	return e.b
}

func (e *enc) change(c *Change) {
	e.str(c.Origin)
	e.uvarint(c.Seq)
	e.str(c.Key)
	e.record(c.Delta)
}

// DecodeChange decodes a canonical change encoding.
func DecodeChange(b []byte) (*Change, error) {
	d := &dec{b: b}
	d.header(tagChange)
	c := d.change()
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("decode change: %w", d.err)
	}
	return c, nil
}

func (d *dec) change() *Change {
	c := &Change{Origin: d.origin(), Seq: d.uvarint(), Key: d.str(MaxKeyLen, "key")}
	if d.err == nil && c.Seq == 0 {
		d.fail("change with seq 0")
	}
	if d.err == nil {
		if err := ValidKey(c.Key); err != nil {
			d.fail("%v", err)
		}
	}
	c.Delta = d.record()
	if d.err != nil {
		return nil
	}
	return c
}

// AppendChange appends the canonical encoding of c without the header, for
// framing inside larger messages; DecodeChanges reads a list of them.
func AppendChanges(b []byte, cs []*Change) []byte {
	e := &enc{b: b}
	e.uvarint(uint64(len(cs)))
	for _, c := range cs {
		e.change(c)
	}
	return e.b
}

// Entry is one record of a snapshot.
type Entry struct {
	Key    string  `json:"key"`
	Record *Record `json:"record"`
}

// SnapshotChunk is one bounded piece of a full-state transfer. The
// receiver merges Entries like any change and, on the last chunk (More
// false), raises its version vector to VV, which the sender took before
// reading the first chunk's entries. Chunks are requested in key order
// starting after After.
type SnapshotChunk struct {
	VV      VersionVector `json:"vv"`
	After   string        `json:"after,omitempty"`
	More    bool          `json:"more,omitempty"`
	Entries []Entry       `json:"entries,omitempty"`
}

// EncodeSnapshot returns the canonical encoding of s.
func EncodeSnapshot(s *SnapshotChunk) []byte {
	e := &enc{}
	e.byte(tagSnapshot)
	e.byte(version1)
	e.snapshot(s)
	return e.b
}

func (e *enc) snapshot(s *SnapshotChunk) {
	e.vv(s.VV)
	e.str(s.After)
	if s.More {
		e.byte(1)
	} else {
		e.byte(0)
	}
	e.uvarint(uint64(len(s.Entries)))
	for _, en := range s.Entries {
		e.str(en.Key)
		e.record(en.Record)
	}
}

// DecodeSnapshot decodes a canonical snapshot chunk encoding.
func DecodeSnapshot(b []byte) (*SnapshotChunk, error) {
	d := &dec{b: b}
	d.header(tagSnapshot)
	s := d.snapshot()
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", d.err)
	}
	return s, nil
}

func (d *dec) snapshot() *SnapshotChunk {
	s := &SnapshotChunk{VV: d.vv(), After: d.str(MaxKeyLen, "after")}
	switch d.byte() {
	case 0:
	case 1:
		s.More = true
	default:
		d.fail("bad more flag")
	}
	n := d.count(5)
	prev := s.After
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str(MaxKeyLen, "key")
		if d.err == nil {
			if err := ValidKey(k); err != nil {
				d.fail("%v", err)
			} else if k <= prev {
				d.fail("snapshot key %q out of order", k)
			}
		}
		prev = k
		r := d.record()
		if d.err == nil && r.Empty() {
			d.fail("snapshot record %q is empty", k)
		}
		s.Entries = append(s.Entries, Entry{Key: k, Record: r})
	}
	if d.err != nil {
		return nil
	}
	return s
}

// Encoder and Decoder give other packages (protocol messages) access to
// the canonical primitives.
type Encoder struct{ e enc }

// Bytes returns what was encoded so far.
func (e *Encoder) Bytes() []byte { return e.e.b }

// Header starts a message with a one-byte tag and version 1.
func (e *Encoder) Header(tag byte) { e.e.byte(tag); e.e.byte(version1) }

// Byte, Uvarint, String, VV, Changes and Snapshot append one value.
func (e *Encoder) Byte(c byte)               { e.e.byte(c) }
func (e *Encoder) Uvarint(v uint64)          { e.e.uvarint(v) }
func (e *Encoder) String(s string)           { e.e.str(s) }
func (e *Encoder) Raw(p []byte)              { e.e.bytes(p) }
func (e *Encoder) VV(v VersionVector)        { e.e.vv(v) }
func (e *Encoder) Changes(cs []*Change)      { e.e.b = AppendChanges(e.e.b, cs) }
func (e *Encoder) Snapshot(s *SnapshotChunk) { e.e.snapshot(s) }

// Decoder reads what Encoder wrote; the first error sticks and is
// returned by Err.
type Decoder struct{ d dec }

// NewDecoder reads b.
func NewDecoder(b []byte) *Decoder { return &Decoder{d: dec{b: b}} }

// Header reads a tag and version written by Encoder.Header.
func (d *Decoder) Header(tag byte) { d.d.header(tag) }

// Byte, Uvarint, String, VV, Changes and Snapshot read one value.
func (d *Decoder) Byte() byte               { return d.d.byte() }
func (d *Decoder) Uvarint() uint64          { return d.d.uvarint() }
func (d *Decoder) String(max int) string    { return d.d.str(max, "string") }
func (d *Decoder) Raw(max int) []byte       { return d.d.raw(max, "bytes") }
func (d *Decoder) VV() VersionVector        { return d.d.vv() }
func (d *Decoder) Snapshot() *SnapshotChunk { return d.d.snapshot() }
func (d *Decoder) Changes() []*Change {
	n := d.d.count(8)
	var cs []*Change
	for i := 0; i < n && d.d.err == nil; i++ {
		cs = append(cs, d.d.change())
	}
	if d.d.err != nil {
		return nil
	}
	return cs
}

// Fail records a decoding error found by the caller.
func (d *Decoder) Fail(format string, a ...any) { d.d.fail(format, a...) }

// Err returns the first error, including trailing bytes.
func (d *Decoder) Err() error { d.d.end(); return d.d.err }
