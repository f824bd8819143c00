package crdt

import (
	"bytes"
	"maps"
	"slices"

	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

// Kind is the merge type of a field.
type Kind uint8

// Field kinds. When two replicas disagree on a field's kind (a schema bug),
// the higher kind wins everywhere, so they still converge.
const (
	KindRegister Kind = 1 // last-writer-wins bytes
	KindSet      Kind = 2 // observed-remove set of strings
	KindCounter  Kind = 3 // PN-counter
)

func (k Kind) String() string {
	switch k {
	case KindRegister:
		return "register"
	case KindSet:
		return "set"
	case KindCounter:
		return "counter"
	}
	return "unknown"
}

// Register is a last-writer-wins value. The write with the highest Stamp
// wins; an empty Value means the field was cleared.
type Register struct {
	Stamp Stamp  `json:"stamp"`
	Value []byte `json:"value,omitempty"`
}

// Removal is a remove tombstone for one add tag of an OR-set element,
// made by the change By.
type Removal struct {
	Tag Stamp `json:"tag"`
	By  Dot   `json:"by"`
}

// Element is one value of an OR-set: its live add tags and its removed
// ones, both sorted by tag, disjoint. It is present while Adds is not
// empty.
type Element struct {
	Adds    []Stamp   `json:"adds,omitempty"`
	Removed []Removal `json:"removed,omitempty"`
}

// CounterEntry is one origin's share of a PN-counter. Only that origin
// writes it, with increasing stamps; the newest entry wins.
type CounterEntry struct {
	Stamp Stamp  `json:"stamp"`
	P     uint64 `json:"p"`
	N     uint64 `json:"n"`
}

// Field is one named field of a record. Exactly the member matching Kind
// is meaningful.
type Field struct {
	Kind    Kind                    `json:"kind"`
	Reg     Register                `json:"reg,omitzero"`
	Set     map[string]*Element     `json:"set,omitempty"`
	Counter map[string]CounterEntry `json:"counter,omitempty"`
}

// Tombstone marks a record deleted at Stamp by the change By. Fields
// written at or before Stamp are gone; later writes re-create the record.
type Tombstone struct {
	Stamp Stamp `json:"stamp"`
	By    Dot   `json:"by"`
}

// Record is the state of one key: a map of fields, the highest schema
// version that wrote it and possibly a tombstone. A Record is normalised
// after Merge and Normalize; only normalised records encode.
type Record struct {
	Schema uint32            `json:"schema,omitempty"`
	Del    *Tombstone        `json:"del,omitempty"`
	Fields map[string]*Field `json:"fields,omitempty"`
}

// Live reports whether the record has any field: a record with none is
// absent to readers (deleted, or never written).
func (r *Record) Live() bool { return r != nil && len(r.Fields) > 0 }

// Value returns the register field name, or nil when absent or cleared.
func (r *Record) Value(name string) []byte {
	if f := r.field(name, KindRegister); f != nil {
		return f.Reg.Value
	}
	return nil
}

// Members returns the present elements of the set field name, sorted.
func (r *Record) Members(name string) []string {
	f := r.field(name, KindSet)
	if f == nil {
		return nil
	}
	var out []string
	for e, el := range f.Set {
		if len(el.Adds) > 0 {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// Count returns the value of the counter field name (0 when absent).
func (r *Record) Count(name string) int64 {
	f := r.field(name, KindCounter)
	if f == nil {
		return 0
	}
	var n int64
	for _, e := range f.Counter {
		n += int64(e.P) - int64(e.N)
	}
	return n
}

func (r *Record) field(name string, k Kind) *Field {
	if r == nil {
		return nil
	}
	if f := r.Fields[name]; f != nil && f.Kind == k {
		return f
	}
	return nil
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := &Record{Schema: r.Schema}
	if r.Del != nil {
		d := *r.Del
		c.Del = &d
	}
	if r.Fields != nil {
		c.Fields = make(map[string]*Field, len(r.Fields))
		for n, f := range r.Fields {
			c.Fields[n] = f.clone()
		}
	}
	return c
}

func (f *Field) clone() *Field {
	c := &Field{Kind: f.Kind, Reg: Register{Stamp: f.Reg.Stamp, Value: bytes.Clone(f.Reg.Value)}}
	if f.Set != nil {
		c.Set = make(map[string]*Element, len(f.Set))
		for e, el := range f.Set {
			c.Set[e] = &Element{Adds: slices.Clone(el.Adds), Removed: slices.Clone(el.Removed)}
		}
	}
	if f.Counter != nil {
		c.Counter = maps.Clone(f.Counter)
	}
	return c
}

// Merge returns the join of a and b (either may be nil), normalised. It
// does not modify or alias a or b.
func Merge(a, b *Record) *Record {
	if a == nil && b == nil {
		return nil
	}
	out := a.Clone()
	if out == nil {
		out = &Record{}
	}
	if b != nil {
		out.Schema = max(out.Schema, b.Schema)
		if b.Del != nil && (out.Del == nil || tombLess(*out.Del, *b.Del)) {
			d := *b.Del
			out.Del = &d
		}
		for n, bf := range b.Fields {
			if out.Fields == nil {
				out.Fields = map[string]*Field{}
			}
			af := out.Fields[n]
			switch {
			case af == nil || af.Kind < bf.Kind:
				out.Fields[n] = bf.clone()
			case af.Kind == bf.Kind:
				mergeField(af, bf)
			}
		}
	}
	out.Normalize()
	return out
}

// tombLess orders tombstones: later stamp wins, then the smaller dot.
func tombLess(a, b Tombstone) bool {
	if c := a.Stamp.Compare(b.Stamp); c != 0 {
		return c < 0
	}
	return b.By.Compare(a.By) < 0
}

func mergeField(a, b *Field) {
	switch a.Kind {
	case KindRegister:
		if c := a.Reg.Stamp.Compare(b.Reg.Stamp); c < 0 || (c == 0 && bytes.Compare(a.Reg.Value, b.Reg.Value) < 0) {
			a.Reg = Register{Stamp: b.Reg.Stamp, Value: bytes.Clone(b.Reg.Value)}
		}
	case KindSet:
		if a.Set == nil {
			a.Set = map[string]*Element{}
		}
		for e, bel := range b.Set {
			ael := a.Set[e]
			if ael == nil {
				ael = &Element{}
				a.Set[e] = ael
			}
			mergeElement(ael, bel)
		}
	case KindCounter:
		if a.Counter == nil {
			a.Counter = map[string]CounterEntry{}
		}
		for o, be := range b.Counter {
			ae, ok := a.Counter[o]
			if !ok || counterLess(ae, be) {
				a.Counter[o] = be
			}
		}
	}
}

func counterLess(a, b CounterEntry) bool {
	if c := a.Stamp.Compare(b.Stamp); c != 0 {
		return c < 0
	}
	if a.P != b.P {
		return a.P < b.P
	}
	return a.N < b.N
}

// mergeElement joins b into a: tags are unioned; a removed tag stays
// removed, by the smaller dot when two removes saw it.
func mergeElement(a, b *Element) {
	rem := map[Stamp]Dot{}
	for _, r := range a.Removed {
		rem[r.Tag] = r.By
	}
	for _, r := range b.Removed {
		if d, ok := rem[r.Tag]; !ok || r.By.Compare(d) < 0 {
			rem[r.Tag] = r.By
		}
	}
	adds := map[Stamp]bool{}
	for _, t := range a.Adds {
		adds[t] = true
	}
	for _, t := range b.Adds {
		adds[t] = true
	}
	a.Adds = a.Adds[:0]
	for t := range adds {
		if _, ok := rem[t]; !ok {
			a.Adds = append(a.Adds, t)
		}
	}
	slices.SortFunc(a.Adds, Stamp.Compare)
	a.Removed = a.Removed[:0]
	for t, d := range rem {
		a.Removed = append(a.Removed, Removal{Tag: t, By: d})
	}
	slices.SortFunc(a.Removed, func(x, y Removal) int { return x.Tag.Compare(y.Tag) })
}

// Normalize drops everything the tombstone covers and every empty part,
// and sorts tags. Merge and the decoders return normalised records.
func (r *Record) Normalize() {
	for n, f := range r.Fields {
		if !f.normalize(r.Del) {
			delete(r.Fields, n)
		}
	}
	if len(r.Fields) == 0 {
		r.Fields = nil
	}
}

func covered(s Stamp, d *Tombstone) bool { return d != nil && s.Compare(d.Stamp) <= 0 }

// normalize reports whether the field still holds anything.
func (f *Field) normalize(d *Tombstone) bool {
	switch f.Kind {
	case KindRegister:
		f.Set, f.Counter = nil, nil
		return !covered(f.Reg.Stamp, d)
	case KindSet:
		f.Reg, f.Counter = Register{}, nil
		for e, el := range f.Set {
			el.Adds = slices.DeleteFunc(el.Adds, func(s Stamp) bool { return covered(s, d) })
			el.Removed = slices.DeleteFunc(el.Removed, func(x Removal) bool { return covered(x.Tag, d) })
			if len(el.Adds) == 0 && len(el.Removed) == 0 {
				delete(f.Set, e)
				continue
			}
			if len(el.Adds) == 0 {
				el.Adds = nil
			}
			if len(el.Removed) == 0 {
				el.Removed = nil
			}
			slices.SortFunc(el.Adds, Stamp.Compare)
			slices.SortFunc(el.Removed, func(x, y Removal) int { return x.Tag.Compare(y.Tag) })
		}
		return len(f.Set) > 0
	case KindCounter:
		f.Reg, f.Set = Register{}, nil
		maps.DeleteFunc(f.Counter, func(_ string, e CounterEntry) bool { return covered(e.Stamp, d) })
		return len(f.Counter) > 0
	}
	return false
}

// CollectTombstones drops the tombstones whose dot stable reports as
// causally stable (seen by every member, see the statestore). It reports
// whether anything changed. The record may end up empty (Live false, Del
// nil): the caller then removes the key.
func (r *Record) CollectTombstones(stable func(Dot) bool) bool {
	changed := false
	if r.Del != nil && stable(r.Del.By) {
		r.Del = nil
		changed = true
	}
	for n, f := range r.Fields {
		if f.Kind != KindSet {
			continue
		}
		for e, el := range f.Set {
			k := len(el.Removed)
			el.Removed = slices.DeleteFunc(el.Removed, func(x Removal) bool { return stable(x.By) })
			if len(el.Removed) != k {
				changed = true
			}
			if len(el.Removed) == 0 {
				el.Removed = nil
			}
			if len(el.Adds) == 0 && len(el.Removed) == 0 {
				delete(f.Set, e)
			}
		}
		if len(f.Set) == 0 {
			delete(r.Fields, n)
		}
	}
	if len(r.Fields) == 0 {
		r.Fields = nil
	}
	return changed
}

// HasTombstones reports whether r holds a record or remove tombstone.
func (r *Record) HasTombstones() bool {
	if r.Del != nil {
		return true
	}
	for _, f := range r.Fields {
		for _, el := range f.Set {
			if len(el.Removed) > 0 {
				return true
			}
		}
	}
	return false
}

// Empty reports whether r holds nothing at all (no field, no tombstone):
// such a record is not stored.
func (r *Record) Empty() bool { return r == nil || (r.Del == nil && len(r.Fields) == 0) }

// Visible returns what readers see: r without tombstones, or nil when the
// record is not live. Digests hash this view, so replicas that collected
// tombstones at different times still agree.
func (r *Record) Visible() *Record {
	if !r.Live() {
		return nil
	}
	c := r.Clone()
	c.Del = nil
	for n, f := range c.Fields {
		if f.Kind != KindSet {
			continue
		}
		for e, el := range f.Set {
			el.Removed = nil
			if len(el.Adds) == 0 {
				delete(f.Set, e)
			}
		}
		if len(f.Set) == 0 {
			delete(c.Fields, n)
		}
	}
	if len(c.Fields) == 0 {
		return nil
	}
	return c
}

// MaxStamp returns the latest timestamp anywhere in r, for the clock
// offset check on data received from peers.
func (r *Record) MaxStamp() hlc.Timestamp {
	var m hlc.Timestamp
	see := func(s Stamp) {
		if s.TS.Compare(m) > 0 {
			m = s.TS
		}
	}
	if r == nil {
		return m
	}
	if r.Del != nil {
		see(r.Del.Stamp)
	}
	for _, f := range r.Fields {
		see(f.Reg.Stamp)
		for _, el := range f.Set {
			for _, s := range el.Adds {
				see(s)
			}
			for _, x := range el.Removed {
				see(x.Tag)
			}
		}
		for _, c := range f.Counter {
			see(c.Stamp)
		}
	}
	return m
}
