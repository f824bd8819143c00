package peer

import (
	"slices"
	"time"
)

// missingMembers remembers since when each member heard on the backplane
// has been missing from this node's gossip, so that heal joins only the
// members gossip failed to bring in by itself. A node that has just been
// admitted is heard at once, but its arrival rumour needs a moment to
// reach every member; joining it at once would make every member
// exchange full state with each newcomer while a rack powers on: N
// push/pulls of the whole membership per arrival, which at hundreds of
// nodes costs more than the joins themselves (docs/peer.md "Scale").
// Not safe for concurrent use (heal runs on Run's loop).
type missingMembers struct {
	since map[string]time.Time // node ID: first seen missing
}

// due records which members of heard (node ID to gossip address) are not
// in alive at now and forgets the others, and returns the IDs of those
// missing for at least grace, sorted. Zero grace: every missing member.
func (m *missingMembers) due(now time.Time, grace time.Duration, heard map[string]string, alive map[string]bool) []string {
	if m.since == nil {
		m.since = map[string]time.Time{}
	}
	for id := range m.since {
		if _, ok := heard[id]; !ok || alive[id] {
			delete(m.since, id)
		}
	}
	var out []string
	for id := range heard {
		if alive[id] {
			continue
		}
		first, ok := m.since[id]
		if !ok {
			first = now
			m.since[id] = now
		}
		if now.Sub(first) >= grace {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
