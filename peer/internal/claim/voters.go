package claim

import (
	"fmt"
	"slices"
)

// VoterSet is the set of nodes whose acceptors count towards a majority:
// the cluster's admitted members that are not removed (witnesses included).
// The caller (peer's membership) supplies it; see docs/claims.md for the
// rules (one change at a time, the witness rule for two nodes).
type VoterSet struct {
	ids []string // sorted, unique
}

// NewVoterSet builds a voter set from node IDs. Duplicates are merged.
func NewVoterSet(ids ...string) (VoterSet, error) {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if err := ValidHolder(id); err != nil {
			return VoterSet{}, fmt.Errorf("voter: %w", err)
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return VoterSet{ids: slices.Compact(out)}, nil
}

// IDs returns the voters, sorted. The slice must not be modified.
func (v VoterSet) IDs() []string { return v.ids }

// Len is the number of voters.
func (v VoterSet) Len() int { return len(v.ids) }

// Majority is the smallest number of voters that is more than half.
func (v VoterSet) Majority() int { return len(v.ids)/2 + 1 }

// Contains reports whether id votes.
func (v VoterSet) Contains(id string) bool {
	_, ok := slices.BinarySearch(v.ids, id)
	return ok
}
