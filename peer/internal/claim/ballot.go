package claim

import "fmt"

// Ballot orders the proposals within one (resource, epoch). Ballots are
// totally ordered by (Round, Node, Inc). A proposer never reuses a ballot:
// Round grows within one process and Inc is a random incarnation number
// drawn when the process starts, so a restarted proposer (which has lost
// its round counter) never issues a ballot it issued before.
type Ballot struct {
	Round uint64 `json:"round"`
	Node  string `json:"node"`
	Inc   uint64 `json:"inc"`
}

// IsZero reports the zero ballot, lower than any ballot a proposer issues.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// Compare returns -1, 0 or +1 as b is lower, equal or higher than o.
func (b Ballot) Compare(o Ballot) int {
	switch {
	case b.Round != o.Round:
		return cmpU(b.Round, o.Round)
	case b.Node != o.Node:
		if b.Node < o.Node {
			return -1
		}
		return 1
	default:
		return cmpU(b.Inc, o.Inc)
	}
}

// Less reports b < o.
func (b Ballot) Less(o Ballot) bool { return b.Compare(o) < 0 }

func (b Ballot) String() string { return fmt.Sprintf("%d.%s.%x", b.Round, b.Node, b.Inc) }

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (b Ballot) validate() error {
	if b.IsZero() {
		return nil
	}
	if b.Round == 0 {
		return fmt.Errorf("%w: ballot %v has round 0", ErrInvalid, b)
	}
	if err := validName("ballot node", b.Node, maxHolderLen); err != nil {
		return err
	}
	return nil
}
