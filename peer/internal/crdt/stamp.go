package crdt

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

// Stamp orders writes: hybrid logical time first, then the origin that
// wrote it as the tiebreak.
type Stamp struct {
	TS     hlc.Timestamp `json:"ts"`
	Origin string        `json:"origin"`
}

// Compare returns -1, 0 or +1 as s is before, equal to or after t.
func (s Stamp) Compare(t Stamp) int {
	if c := s.TS.Compare(t.TS); c != 0 {
		return c
	}
	return strings.Compare(s.Origin, t.Origin)
}

func (s Stamp) String() string { return fmt.Sprintf("%s@%s", s.TS, s.Origin) }

// Dot names one change: the origin that made it and its sequence number in
// that origin's change log (from 1).
type Dot struct {
	Origin string `json:"origin"`
	Seq    uint64 `json:"seq"`
}

// Compare orders dots by origin, then seq.
func (d Dot) Compare(e Dot) int {
	if c := strings.Compare(d.Origin, e.Origin); c != 0 {
		return c
	}
	return cmp.Compare(d.Seq, e.Seq)
}

func (d Dot) String() string { return fmt.Sprintf("%s:%d", d.Origin, d.Seq) }

// VersionVector maps an origin to the highest sequence number of its
// changes applied, all lower ones included. A missing origin means 0.
type VersionVector map[string]uint64

// Covers reports whether the change d is included in v.
func (v VersionVector) Covers(d Dot) bool { return v[d.Origin] >= d.Seq }

// Dominates reports whether v includes every change w includes.
func (v VersionVector) Dominates(w VersionVector) bool {
	for o, s := range w {
		if v[o] < s {
			return false
		}
	}
	return true
}

// Merge raises v to include w.
func (v VersionVector) Merge(w VersionVector) {
	for o, s := range w {
		if s > v[o] {
			v[o] = s
		}
	}
}

// Clone returns a copy of v (never nil).
func (v VersionVector) Clone() VersionVector {
	c := make(VersionVector, len(v))
	maps.Copy(c, v)
	return c
}

// Equal reports whether v and w include the same changes.
func (v VersionVector) Equal(w VersionVector) bool {
	return v.Dominates(w) && w.Dominates(v)
}

// Origins returns the origins of v, sorted.
func (v VersionVector) Origins() []string { return slices.Sorted(maps.Keys(v)) }

// Min returns the pointwise minimum of vs (nil for none): the changes
// every one of them includes.
func Min(vs ...VersionVector) VersionVector {
	if len(vs) == 0 {
		return nil
	}
	m := vs[0].Clone()
	for _, v := range vs[1:] {
		for o, s := range m {
			if v[o] < s {
				m[o] = v[o]
			}
		}
	}
	for o, s := range m {
		if s == 0 {
			delete(m, o)
		}
	}
	return m
}
