package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Node states carried in beacons.
const (
	StateUnclaimed = "unclaimed" // not in a cluster yet
	StateMember    = "member"    // in the cluster named by ClusterID
)

// MaxBeacon is the largest beacon accepted, in bytes.
const MaxBeacon = 2048

// ErrBadBeacon is returned for bytes that are not a beacon.
var ErrBadBeacon = errors.New("bad discovery beacon")

// Beacon is what a node announces.
type Beacon struct {
	V         int      `json:"v"`
	NodeID    string   `json:"node_id"`
	ClusterID string   `json:"cluster_id,omitempty"` // empty while unclaimed
	State     string   `json:"state"`
	Gossip    string   `json:"gossip,omitempty"` // host:port of serf
	API       string   `json:"api,omitempty"`    // host:port of the HTTPS node API
	Addrs     []string `json:"addrs,omitempty"`  // addresses of the node
	Version   string   `json:"version,omitempty"`
	Hardware  string   `json:"hw,omitempty"` // hardware fingerprint
}

// Marshal encodes b.
func (b Beacon) Marshal() []byte {
	b.V = 1
	out, _ := json.Marshal(b)
	return out
}

// ParseBeacon decodes and checks a beacon.
func ParseBeacon(p []byte) (Beacon, error) {
	if len(p) > MaxBeacon {
		return Beacon{}, fmt.Errorf("%w: %d bytes", ErrBadBeacon, len(p))
	}
	var b Beacon
	if err := json.Unmarshal(p, &b); err != nil {
		return Beacon{}, fmt.Errorf("%w: %v", ErrBadBeacon, err)
	}
	if b.V != 1 || len(b.NodeID) != 32 || (b.State != StateUnclaimed && b.State != StateMember) {
		return Beacon{}, fmt.Errorf("%w: version %d, node %q, state %q", ErrBadBeacon, b.V, b.NodeID, b.State)
	}
	if (b.State == StateMember) != (b.ClusterID != "") {
		return Beacon{}, fmt.Errorf("%w: state %q with cluster %q", ErrBadBeacon, b.State, b.ClusterID)
	}
	return b, nil
}

// Seen is a beacon with when it was last heard.
type Seen struct {
	Beacon
	At time.Time
}
