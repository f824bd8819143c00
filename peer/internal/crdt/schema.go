package crdt

import (
	"fmt"
	"slices"
)

// FieldSpec describes one field of a record type.
type FieldSpec struct {
	Name    string
	Kind    Kind
	Default []byte // a register's value when the record lacks the field
	Since   uint32 // schema version that added the field
}

// Schema describes a record type at one version. Rules for evolving it:
// only add fields (with a default) and bump Version; never change a
// field's kind or meaning; stop using a field rather than reusing its name.
// Records are never rewritten for a new version: readers apply defaults.
type Schema struct {
	Type    string
	Version uint32
	Fields  []FieldSpec
}

// Validate checks the schema.
func (s Schema) Validate() error {
	if err := ValidKey(s.Type + "/x"); err != nil {
		return fmt.Errorf("schema type %q: %w", s.Type, err)
	}
	if s.Version == 0 {
		return fmt.Errorf("%w: schema %q has version 0", ErrInvalid, s.Type)
	}
	seen := map[string]bool{}
	for _, f := range s.Fields {
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("%w: schema %q field %q empty or repeated", ErrInvalid, s.Type, f.Name)
		}
		if f.Kind < KindRegister || f.Kind > KindCounter || f.Since > s.Version {
			return fmt.Errorf("%w: schema %q field %q has bad kind or version", ErrInvalid, s.Type, f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// View is a record read through a schema: known fields only, defaults
// filled in.
type View struct {
	Schema   uint32              // highest schema version that wrote the record
	Values   map[string][]byte   // register fields
	Sets     map[string][]string // set fields, sorted
	Counters map[string]int64    // counter fields
	Unknown  []string            // fields the record has that this schema does not know (kept, ignored)
}

// View reads r (nil for an absent record) through s. Fields of another kind
// than the schema says read as their default.
func (s Schema) View(r *Record) View {
	v := View{Values: map[string][]byte{}, Sets: map[string][]string{}, Counters: map[string]int64{}}
	if r != nil {
		v.Schema = r.Schema
	}
	known := map[string]bool{}
	for _, f := range s.Fields {
		known[f.Name] = true
		switch f.Kind {
		case KindRegister:
			val := r.Value(f.Name)
			if r.field(f.Name, KindRegister) == nil {
				val = f.Default
			}
			v.Values[f.Name] = val
		case KindSet:
			v.Sets[f.Name] = r.Members(f.Name)
		case KindCounter:
			v.Counters[f.Name] = r.Count(f.Name)
		}
	}
	if r != nil {
		for n := range r.Fields {
			if !known[n] {
				v.Unknown = append(v.Unknown, n)
			}
		}
	}
	slices.Sort(v.Unknown)
	return v
}
