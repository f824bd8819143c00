package crdt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

// Size limits enforced by the encoders' callers and by every decoder.
const (
	MaxKeyLen    = 512     // bytes of a record key
	MaxNameLen   = 256     // bytes of a field name
	MaxElemLen   = 1024    // bytes of an OR-set element
	MaxOriginLen = 128     // bytes of an origin
	MaxValueLen  = 1 << 20 // bytes of a register value
)

const (
	tagRecord   = 'R'
	tagChange   = 'C'
	tagSnapshot = 'S'
	tagVV       = 'V'
	version1    = 1
)

// enc appends canonical encodings.
type enc struct{ b []byte }

func (e *enc) byte(c byte)      { e.b = append(e.b, c) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) ts(t hlc.Timestamp) {
	e.b, _ = t.AppendBinary(e.b)
}
func (e *enc) stamp(s Stamp) { e.ts(s.TS); e.str(s.Origin) }
func (e *enc) dot(d Dot)     { e.str(d.Origin); e.uvarint(d.Seq) }

// dec reads canonical encodings; the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
	}
}

func (d *dec) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length of items each at least min bytes long.
func (d *dec) count(min int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail("count %d exceeds input", n)
		return 0
	}
	return int(n)
}

func (d *dec) raw(max int, what string) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) {
		d.fail("%s of %d bytes exceeds %d", what, n, max)
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated %s", what)
		return nil
	}
	// a copy: callers may decode from memory that is only valid briefly
	// (bbolt's mmap inside a transaction)
	p := bytes.Clone(d.b[:n])
	d.b = d.b[n:]
	return p
}

func (d *dec) str(max int, what string) string {
	p := d.raw(max, what)
	if d.err == nil && !utf8.Valid(p) {
		d.fail("%s is not UTF-8", what)
	}
	return string(p)
}

func (d *dec) ts() hlc.Timestamp {
	if d.err != nil {
		return hlc.Timestamp{}
	}
	t, err := hlc.Decode(d.b)
	if err != nil {
		d.fail("%v", err)
		return hlc.Timestamp{}
	}
	d.b = d.b[hlc.EncodedLen:]
	return t
}

func (d *dec) origin() string {
	o := d.str(MaxOriginLen, "origin")
	if d.err == nil && o == "" {
		d.fail("empty origin")
	}
	return o
}

func (d *dec) stamp() Stamp { return Stamp{TS: d.ts(), Origin: d.origin()} }

func (d *dec) dot() Dot {
	o := d.origin()
	s := d.uvarint()
	if d.err == nil && s == 0 {
		d.fail("dot with seq 0")
	}
	return Dot{Origin: o, Seq: s}
}

func (d *dec) header(tag byte) {
	if t := d.byte(); d.err == nil && t != tag {
		d.fail("tag %q, want %q", t, tag)
	}
	if v := d.byte(); d.err == nil && v != version1 {
		d.fail("version %d unknown", v)
	}
}

func (d *dec) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
}

// EncodeRecord returns the canonical encoding of the normalised record r.
func EncodeRecord(r *Record) []byte {
	e := &enc{}
	e.byte(tagRecord)
	e.byte(version1)
	e.record(r)
	return e.b
}

func (e *enc) record(r *Record) {
	e.uvarint(uint64(r.Schema))
	if r.Del == nil {
		e.byte(0)
	} else {
		e.byte(1)
		e.stamp(r.Del.Stamp)
		e.dot(r.Del.By)
	}
	names := sortedKeys(r.Fields)
	e.uvarint(uint64(len(names)))
	for _, n := range names {
		f := r.Fields[n]
		e.str(n)
		e.byte(byte(f.Kind))
		switch f.Kind {
		case KindRegister:
			e.stamp(f.Reg.Stamp)
			e.bytes(f.Reg.Value)
		case KindSet:
			elems := sortedKeys(f.Set)
			e.uvarint(uint64(len(elems)))
			for _, x := range elems {
				el := f.Set[x]
				e.str(x)
				e.uvarint(uint64(len(el.Adds)))
				for _, s := range el.Adds {
					e.stamp(s)
				}
				e.uvarint(uint64(len(el.Removed)))
				for _, r := range el.Removed {
					e.stamp(r.Tag)
					e.dot(r.By)
				}
			}
		case KindCounter:
			origins := sortedKeys(f.Counter)
			e.uvarint(uint64(len(origins)))
			for _, o := range origins {
				c := f.Counter[o]
				e.stamp(c.Stamp)
				e.uvarint(c.P)
				e.uvarint(c.N)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// DecodeRecord decodes a canonical record encoding.
func DecodeRecord(b []byte) (*Record, error) {
	d := &dec{b: b}
	d.header(tagRecord)
	r := d.record()
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("decode record: %w", d.err)
	}
	return r, nil
}

// minimum encoded sizes, for bounding counts before allocating
const (
	minStamp = hlc.EncodedLen + 2
	minField = 2 + minStamp + 1
)

func (d *dec) record() *Record {
	r := &Record{}
	s := d.uvarint()
	if s > 1<<32-1 {
		d.fail("schema version %d out of range", s)
	}
	r.Schema = uint32(s)
	switch d.byte() {
	case 0:
	case 1:
		r.Del = &Tombstone{Stamp: d.stamp(), By: d.dot()}
	default:
		d.fail("bad tombstone flag")
	}
	n := d.count(minField)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		name := d.str(MaxNameLen, "field name")
		if d.err == nil && (name == "" || (i > 0 && name <= prev)) {
			d.fail("field %q empty or out of order", name)
		}
		prev = name
		f := &Field{Kind: Kind(d.byte())}
		switch f.Kind {
		case KindRegister:
			f.Reg.Stamp = d.stamp()
			f.Reg.Value = d.raw(MaxValueLen, "value")
			if len(f.Reg.Value) == 0 {
				f.Reg.Value = nil
			}
		case KindSet:
			f.Set = d.set()
		case KindCounter:
			f.Counter = d.counter()
		default:
			d.fail("field %q has unknown kind %d", name, f.Kind)
		}
		if d.err == nil && f.coveredBy(r.Del) {
			d.fail("field %q holds data covered by the tombstone", name)
		}
		if d.err == nil && ((f.Kind == KindSet && len(f.Set) == 0) || (f.Kind == KindCounter && len(f.Counter) == 0)) {
			d.fail("field %q is empty", name)
		}
		if r.Fields == nil {
			r.Fields = map[string]*Field{}
		}
		r.Fields[name] = f
	}
	if d.err != nil {
		return nil
	}
	return r
}

func (d *dec) set() map[string]*Element {
	n := d.count(3)
	m := make(map[string]*Element, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		x := d.str(MaxElemLen, "element")
		if d.err == nil && i > 0 && x <= prev {
			d.fail("element %q out of order", x)
		}
		prev = x
		el := &Element{}
		na := d.count(minStamp)
		for j := 0; j < na && d.err == nil; j++ {
			s := d.stamp()
			if j > 0 && s.Compare(el.Adds[j-1]) <= 0 {
				d.fail("add tags out of order")
			}
			el.Adds = append(el.Adds, s)
		}
		nr := d.count(minStamp + 3)
		for j := 0; j < nr && d.err == nil; j++ {
			rm := Removal{Tag: d.stamp(), By: d.dot()}
			if j > 0 && rm.Tag.Compare(el.Removed[j-1].Tag) <= 0 {
				d.fail("removed tags out of order")
			}
			el.Removed = append(el.Removed, rm)
		}
		if d.err == nil && na+nr == 0 {
			d.fail("element %q has no tags", x)
		}
		if d.err == nil {
			for _, rm := range el.Removed {
				if _, ok := slices.BinarySearchFunc(el.Adds, rm.Tag, Stamp.Compare); ok {
					d.fail("tag both added and removed")
				}
			}
		}
		m[x] = el
	}
	return m
}

func (d *dec) counter() map[string]CounterEntry {
	n := d.count(minStamp + 2)
	m := make(map[string]CounterEntry, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		c := CounterEntry{Stamp: d.stamp(), P: d.uvarint(), N: d.uvarint()}
		if d.err == nil && i > 0 && c.Stamp.Origin <= prev {
			d.fail("counter entries out of order")
		}
		prev = c.Stamp.Origin
		m[c.Stamp.Origin] = c
	}
	return m
}

// coveredBy reports whether any part of f is stamped at or before d.
func (f *Field) coveredBy(d *Tombstone) bool {
	if d == nil {
		return false
	}
	switch f.Kind {
	case KindRegister:
		return covered(f.Reg.Stamp, d)
	case KindSet:
		for _, el := range f.Set {
			for _, s := range el.Adds {
				if covered(s, d) {
					return true
				}
			}
			for _, r := range el.Removed {
				if covered(r.Tag, d) {
					return true
				}
			}
		}
	case KindCounter:
		for _, c := range f.Counter {
			if covered(c.Stamp, d) {
				return true
			}
		}
	}
	return false
}

// EncodeVV returns the canonical encoding of v.
func EncodeVV(v VersionVector) []byte {
	e := &enc{}
	e.byte(tagVV)
	e.byte(version1)
	e.vv(v)
	return e.b
}

func (e *enc) vv(v VersionVector) {
	var os []string
	for _, o := range v.Origins() {
		if v[o] > 0 {
			os = append(os, o)
		}
	}
	e.uvarint(uint64(len(os)))
	for _, o := range os {
		e.str(o)
		e.uvarint(v[o])
	}
}

// DecodeVV decodes a canonical version vector encoding.
func DecodeVV(b []byte) (VersionVector, error) {
	d := &dec{b: b}
	d.header(tagVV)
	v := d.vv()
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("decode version vector: %w", d.err)
	}
	return v, nil
}

func (d *dec) vv() VersionVector {
	n := d.count(3)
	v := make(VersionVector, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		o := d.origin()
		s := d.uvarint()
		if d.err == nil && ((i > 0 && o <= prev) || s == 0) {
			d.fail("version vector entry %q out of order or zero", o)
		}
		prev = o
		v[o] = s
	}
	return v
}

// ValidKey checks a record key: "type/id", 1 to MaxKeyLen bytes of UTF-8
// without control characters, the type a non-empty run of [a-z0-9-].
func ValidKey(k string) error {
	if len(k) == 0 || len(k) > MaxKeyLen {
		return fmt.Errorf("%w: key of %d bytes, want 1 to %d", ErrInvalid, len(k), MaxKeyLen)
	}
	if !utf8.ValidString(k) || strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: key %q has invalid characters", ErrInvalid, k)
	}
	typ, id, ok := strings.Cut(k, "/")
	if !ok || typ == "" || id == "" || strings.ContainsFunc(typ, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}) {
		return fmt.Errorf("%w: key %q is not type/id (type in [a-z0-9-])", ErrInvalid, k)
	}
	return nil
}

// Type returns the type part of a key ("vm" for "vm/web1").
func Type(key string) string {
	t, _, _ := strings.Cut(key, "/")
	return t
}

// Equal reports whether two records encode identically.
func Equal(a, b *Record) bool {
	if a.Empty() || b.Empty() {
		return a.Empty() && b.Empty()
	}
	return bytes.Equal(EncodeRecord(a), EncodeRecord(b))
}
