package peer

import (
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// JoinGossip lets tests make a node contact gossip addresses directly.
func (p *Peer) JoinGossip(addrs []string) error {
	s := p.serfInstance()
	if s == nil {
		return ErrNotMember
	}
	_, err := s.Join(addrs, false)
	return err
}

// CallMember lets tests call another node's node API with this node's
// certificate.
var CallMember = (*Peer).callMember

// NewGossipTransport lets the benchmark run serf on the node's gossip
// transport (port 0: any free port).
func NewGossipTransport(bind string, port int) (memberlist.Transport, error) {
	return newGossipTransport(net.ParseIP(bind), port, nil, nil)
}

// JoinOne lets the benchmark join the way a node does.
var JoinOne = joinOne

// ResyncAfter and ResyncTargets let the benchmark re-sync after joining as
// a node does.
var (
	ResyncAfter   = resyncAfter
	ResyncTargets = resyncTargets
)

// GossipTags lets the benchmark announce the tags a node announces.
var GossipTags = gossipTags

// JoinPace and JoinDelay let the benchmark pace its joins exactly as a
// node's formation and auto-join do.
var (
	JoinPace  = joinPace
	JoinDelay = joinDelay
)

// AdmitJoinAddrs and SerfMembers let the benchmark hand each joiner the
// gossip addresses an admission reply lists.
var (
	AdmitJoinAddrs = admitJoinAddrs
	SerfMembers    = serfMembers
)

// MissingMembers lets the benchmark heal as a node's heal does.
type MissingMembers = missingMembers

// Due is missingMembers.due.
func (m *MissingMembers) Due(now time.Time, grace time.Duration, heard map[string]string, alive map[string]bool) []string {
	return m.due(now, grace, heard, alive)
}
