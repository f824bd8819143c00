package crdt

import (
	"fmt"
	"slices"
)

// Op is one field-level mutation of a record, turned into a delta by
// Delta. Exactly one of the kinds is set.
type Op struct {
	Field string `json:"field,omitempty"`
	// Set writes Value into a register (an empty Value clears it).
	Set   bool   `json:"set,omitempty"`
	Value []byte `json:"value,omitempty"`
	// Add and Remove add or remove Elem of a set field.
	Add    bool   `json:"add,omitempty"`
	Remove bool   `json:"remove,omitempty"`
	Elem   string `json:"elem,omitempty"`
	// Incr adds Delta (negative to decrement) to a counter field.
	Incr  bool  `json:"incr,omitempty"`
	Delta int64 `json:"delta,omitempty"`
	// Delete deletes the whole record.
	Delete bool `json:"delete,omitempty"`
}

// Validate checks the op's shape and sizes.
func (o Op) Validate() error {
	n := 0
	for _, b := range []bool{o.Set, o.Add, o.Remove, o.Incr, o.Delete} {
		if b {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: op must be exactly one of set, add, remove, incr, delete", ErrInvalid)
	}
	if o.Delete {
		return nil
	}
	if o.Field == "" || len(o.Field) > MaxNameLen {
		return fmt.Errorf("%w: field name of %d bytes, want 1 to %d", ErrInvalid, len(o.Field), MaxNameLen)
	}
	if len(o.Value) > MaxValueLen {
		return fmt.Errorf("%w: value of field %q is %d bytes, max %d", ErrInvalid, o.Field, len(o.Value), MaxValueLen)
	}
	if (o.Add || o.Remove) && (o.Elem == "" || len(o.Elem) > MaxElemLen) {
		return fmt.Errorf("%w: set element of %d bytes, want 1 to %d", ErrInvalid, len(o.Elem), MaxElemLen)
	}
	return nil
}

// Delta returns the delta record for ops applied to the current state cur
// (nil when absent) by the change dot, stamped st. Every op of one change
// shares the stamp. The schema version of the writer is recorded.
func Delta(cur *Record, schema uint32, st Stamp, dot Dot, ops []Op) (*Record, error) {
	d := &Record{Schema: schema, Fields: map[string]*Field{}}
	for _, o := range ops {
		if err := o.Validate(); err != nil {
			return nil, err
		}
		if o.Delete {
			d.Del = &Tombstone{Stamp: st, By: dot}
			continue
		}
		f := d.Fields[o.Field]
		switch {
		case o.Set:
			d.Fields[o.Field] = &Field{Kind: KindRegister, Reg: Register{Stamp: st, Value: slices.Clone(o.Value)}}
		case o.Add || o.Remove:
			if f == nil || f.Kind != KindSet {
				f = &Field{Kind: KindSet, Set: map[string]*Element{}}
				d.Fields[o.Field] = f
			}
			el := &Element{}
			if o.Add {
				el.Adds = []Stamp{st}
			} else {
				seen := map[Stamp]bool{}
				if cf := cur.field(o.Field, KindSet); cf != nil && cf.Set[o.Elem] != nil {
					for _, t := range cf.Set[o.Elem].Adds {
						seen[t] = true
					}
				}
				if old := f.Set[o.Elem]; old != nil {
					for _, t := range old.Adds {
						seen[t] = true
					}
				}
				for t := range seen {
					el.Removed = append(el.Removed, Removal{Tag: t, By: dot})
				}
				if len(el.Removed) == 0 {
					delete(f.Set, o.Elem)
					continue
				}
			}
			f.Set[o.Elem] = el
		case o.Incr:
			var e CounterEntry
			if cf := cur.field(o.Field, KindCounter); cf != nil {
				e = cf.Counter[st.Origin]
			}
			if f != nil && f.Kind == KindCounter {
				e = f.Counter[st.Origin]
			}
			if o.Delta >= 0 {
				e.P += uint64(o.Delta)
			} else {
				e.N += uint64(-o.Delta)
			}
			e.Stamp = st
			d.Fields[o.Field] = &Field{Kind: KindCounter, Counter: map[string]CounterEntry{st.Origin: e}}
		}
	}
	// Ops after a delete in the same change re-create the record: they
	// share the delete's stamp, so they must be above it.
	if d.Del != nil {
		for _, o := range ops {
			if !o.Delete {
				return nil, fmt.Errorf("%w: delete cannot be combined with other ops in one write", ErrInvalid)
			}
		}
	}
	d.Normalize()
	return d, nil
}
