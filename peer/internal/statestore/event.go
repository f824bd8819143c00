package statestore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
)

// EventPrefix is the key prefix of cluster events.
const EventPrefix = "event/"

// AddEvent stores a cluster event (a member joined, a disk failed…) as a
// record "event/<ms>.<logical>-<origin>" with fields kind, message, time
// and attr.<name> for each attribute. Events replicate like any record.
func (s *Store) AddEvent(kind, message string, attrs map[string]string) (string, error) {
	ts := s.cfg.Clock.Now()
	key := fmt.Sprintf("%s%013d.%010d-%s", EventPrefix, ts.Wall, ts.Logical, s.Origin())
	ops := []crdt.Op{
		{Field: "kind", Set: true, Value: []byte(kind)},
		{Field: "message", Set: true, Value: []byte(message)},
		{Field: "time", Set: true, Value: []byte(ts.Time().Format(time.RFC3339Nano))},
	}
	for k, v := range attrs {
		ops = append(ops, crdt.Op{Field: "attr." + k, Set: true, Value: []byte(v)})
	}
	if _, err := s.Write(key, ops...); err != nil {
		return "", fmt.Errorf("add event %q: %w", kind, err)
	}
	return key, nil
}

// PruneEvents deletes the oldest events beyond keep (when keep > 0) and
// those older than maxAge (when maxAge > 0). Every node may prune: deletes
// of the same event merge. It returns how many it deleted.
func (s *Store) PruneEvents(keep int, maxAge time.Duration) (int, error) {
	evs, _, err := s.List(EventPrefix)
	if err != nil {
		return 0, err
	}
	cutoff := s.cfg.Now().Add(-maxAge).UnixMilli()
	n := 0
	for i, e := range evs {
		old := keep > 0 && len(evs)-i > keep
		if maxAge > 0 && !old {
			ms, _, _ := strings.Cut(strings.TrimPrefix(e.Key, EventPrefix), ".")
			if t, err := strconv.ParseInt(ms, 10, 64); err == nil && t < cutoff {
				old = true
			}
		}
		if !old {
			continue
		}
		if _, err := s.Delete(e.Key); err != nil {
			return n, fmt.Errorf("prune events: %w", err)
		}
		n++
	}
	return n, nil
}
